"""The one base class of every error a user can cause: the CLI turns it into one line and exit code 2."""
from __future__ import annotations


class NasdenError(Exception):
    """A bad input (recipe, data, image, run folder, file): the message names it and says what was expected."""


class RunError(NasdenError):
    """A run folder or checkpoint that cannot be used as asked (unreadable, locked, not a run)."""


class WriteError(NasdenError):
    """A file that cannot be written where it was asked for (read-only folder, disk full, size limit)."""


class RecipeError(NasdenError, ValueError):
    """A recipe, option or flag that cannot run, described in one line."""


class UsageError(NasdenError, ValueError):
    """A command-line flag or an argument of the Python API that cannot mean what was asked."""


class StageFailed(RuntimeError):
    """A stage that cannot go on (its loss became NaN, its network diverged); the message says what is kept
    and how to continue. Not a bad input, so the CLI gives it exit code 1."""
