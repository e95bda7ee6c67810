"""How every command-line module ends: bad input gives one ``error:`` line and exit code 1.

A model file's and a checkpoint's errors are ValueErrors, so ``ValueError`` and
``FileNotFoundError`` cover what a user can get wrong; anything else is a bug and keeps its
traceback.
"""

import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, FileNotFoundError)


def run(main: Callable[[], object], prefix: str = "error",
        keep_traceback: Callable[[], bool] = lambda: False) -> None:
    """Run ``main`` (its return value is for callers in Python, not an exit code); a user's
    error ends on one line ``prefix: message`` (exit code 1) unless ``keep_traceback()`` says
    otherwise."""
    try:
        main()
    except USER_ERRORS as e:
        if keep_traceback():
            raise
        sys.exit(f"{prefix}: {e}")
