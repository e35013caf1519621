"""The embedded default data set (see README.md), its simulated labeler and its generator."""
