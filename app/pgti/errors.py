"""User-facing errors and the process exit statuses of the `pgti` command.

A `UserError` is a mistake the user can fix (bad file, bad key, bad value): the CLI prints its
one-line message and exits with `EXIT_USAGE`, never a traceback. Anything else is a bug or a
system failure and exits with `EXIT_FAILURE`.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# "Checkpointed, resubmit me": a signal or the walltime stopped training after a checkpoint.
# 75 is EX_TEMPFAIL (sysexits.h); job scripts requeue on it and only on it.
EXIT_RESUBMIT = 75


class UserError(Exception):
    """A mistake in the user's input. The message names the file, the field and the fix."""


def file_error(path, field: str, problem: str, fix: str) -> UserError:
    """Build the standard one-line message: `FILE: FIELD: problem; fix`."""
    where = f"{path}: {field}" if field else f"{path}"
    return UserError(f"{where}: {problem}; {fix}")
