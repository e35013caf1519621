"""Wrapping TRL: a stage's `args` as a TRL config (args.py), training with resume and guards
(training.py), and the template every TRL stage subclasses (stage.py)."""
