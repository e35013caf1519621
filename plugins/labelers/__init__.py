"""First-party labelers: `simulated` (the built-in deterministic labeler, so the loop runs
unattended) and `scorer` (any reward source ranks by its scores: an LLM judge makes it RLAIF)."""
