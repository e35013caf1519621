"""Errors the framework raises for bad input. Each one names the place and the fix."""


class FrameworkError(Exception):
    """Base class: something the user can fix (config, data, plugin)."""


class ConfigError(FrameworkError):
    """A recipe or config node is wrong. Raised before any weights load."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems in the config:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(message)


class PluginError(FrameworkError):
    """A plugin name is unknown, or an installed plugin is broken."""


class DataError(FrameworkError):
    """A data set or one of its rows is malformed."""


class TrainingDiverged(FrameworkError):
    """Training produced a non-finite loss, gradient, reward or KL, or broke a configured bound.

    The stage stops before the bad state reaches a checkpoint: the last checkpoint on disk is
    the last good one. `step` is the training step that diverged, `quantity` what was bad."""

    def __init__(self, message: str, *, step: int | None = None, quantity: str | None = None,
                 checkpoint: str | None = None):
        self.step, self.quantity, self.checkpoint = step, quantity, checkpoint
        super().__init__(message)


class TrainingInterrupted(FrameworkError):
    """SIGINT or SIGTERM stopped a stage cleanly, after saving a checkpoint (when one could be
    saved); running the same command again resumes from it."""

    def __init__(self, message: str, *, signal_name: str = "SIGTERM", step: int | None = None,
                 checkpoint: str | None = None):
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        super().__init__(message)


class CheckpointError(FrameworkError):
    """A checkpoint to resume from does not load safely: damaged or altered."""

    def __init__(self, message: str, *, checkpoint: str | None = None):
        self.checkpoint = checkpoint
        super().__init__(message)


class WaitingForLabels(FrameworkError):
    """A label stage published its tasks to people and not enough are labeled yet: the run
    stops cleanly (exit status 3) and the same command continues it once they are."""

    EXIT_STATUS = 3

    def __init__(self, message: str, *, stage: str, accept_command: str):
        # accept_command: what makes the next run go on with the labels there are
        self.stage, self.accept_command = stage, accept_command
        super().__init__(message)
