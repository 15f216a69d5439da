"""Errors a user can fix (bad path, bad file, bad option), reported as one line instead of a traceback."""


class UserError(Exception):
    """A problem with the user's input; scripts print it as a single line and exit with status 2."""

    exit_code = 2


class DataNotFoundError(UserError):
    """Required data is absent and could not be downloaded; `run_all.py` reports the script as skipped."""

    exit_code = 3


class TrainingDiverged(UserError):
    """The loss became nan or infinite; the message says where, and the last good checkpoint is kept."""
