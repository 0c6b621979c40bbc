"""The one exception type users see: a single line naming the problem."""


class NumerlabError(Exception):
    """Bad input or configuration. `run.py` prints `error: <message>` and exits non-zero.

    The message must fit on one line and name the offending file, column, key or value.
    """
