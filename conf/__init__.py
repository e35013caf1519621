"""Hydra config groups of the framework (model, data, ...). Installed as `framework_conf`."""
