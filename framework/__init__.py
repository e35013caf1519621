"""An RLHF framework: the InstructGPT pipeline as Hydra recipes over pluggable stages."""

__version__ = "0.1.0"
