"""An example third-party plugin for rlhf-framework."""
