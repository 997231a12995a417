"""Known failures: one line for the user, no traceback."""


class UserError(Exception):
    """A failure the user can fix: the message names the value and the fix.

    The task layer prints the message alone and exits with status 1; any other
    exception keeps its traceback because it is a bug.
    """
