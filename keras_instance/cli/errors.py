"""How a program ends on a mistake the user can fix: one line, no traceback."""
from __future__ import annotations

import sys

from absl import flags


def user_errors() -> tuple:
    """Errors a user can fix from the message alone (bad data, paths, settings)."""
    from keras_instance.data.records import DatasetError
    from keras_instance.run_folder import RunBusy
    return (DatasetError, RunBusy, FileNotFoundError, FileExistsError, ValueError,
            flags.ValidationError)


def run_reporting_user_errors(run) -> None:
    """Load TensorFlow and the library (after the flags were parsed), then call `run()`; a user
    error ends the program with its one-line message, no traceback."""
    import keras_instance
    keras_instance.load_library()
    try:
        run()
    except user_errors() as err:
        sys.exit(f"error: {err}")
