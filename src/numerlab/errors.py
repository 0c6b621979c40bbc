"""The one exception type users see: a single line naming the problem."""


class NumerlabError(Exception):
    """Bad input or configuration. `run.py` prints `error: <message>` and exits non-zero.

    The message must fit on one line and name the offending file, column, key or value.
    """


def message_line(exc: BaseException, last: bool = False) -> str:
    """One non-empty line of `exc`'s message (the first, or the `last`: libraries that wrap
    a cause, such as Hydra's instantiate, LightGBM and XGBoost, put the real complaint last);
    the exception's type name when it has no message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if last else lines[0]
