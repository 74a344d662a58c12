"""Errors meant for the person at the command line.

A :class:`UserError` carries a one-line message that tells the user what went wrong and
what is allowed; the entry points print it and exit with status 2, before any file is
written.
"""


class UserError(Exception):
    """Bad input from the user (flag, config value, missing file, unknown name)."""

    exit_code = 2


class DatasetUnavailable(UserError):
    """A data set is not on disk; the message says where we looked and how to get it."""

    def __init__(self, name: str, path: str, how: str):
        self.name, self.path, self.how = name, path, how
        super().__init__(f"data set '{name}' not found at {path}. {how}")


class CheckpointMismatch(UserError):
    """A checkpoint's tensors do not fit the model it is loaded into."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
