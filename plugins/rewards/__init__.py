"""First-party reward sources."""
