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
