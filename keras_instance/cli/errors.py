"""How a program ends on a mistake the user can fix: one line, no traceback."""
from __future__ import annotations

import sys

from absl import flags


def user_errors() -> tuple:
    """Errors a user can fix from the message alone (bad data, paths, settings)."""
    from keras_instance.data.records import DatasetError
    return (DatasetError, FileNotFoundError, FileExistsError, ValueError, flags.ValidationError)


def run_reporting_user_errors(run) -> None:
    """Call `run()`; a user error ends the program with its one-line message, no traceback."""
    try:
        run()
    except user_errors() as err:
        sys.exit(f"error: {err}")
