"""How a program ends on a mistake the user can fix: one line, no traceback.

`KERAS_INSTANCE_DEBUG=1` in the environment shows the traceback instead (for a message that comes
from inside TensorFlow, Keras or NumPy, where one line cannot say where it was raised)."""
from __future__ import annotations

import os
import sys
import traceback

from absl import flags

DEBUG_ENV = "KERAS_INSTANCE_DEBUG"
_LIBRARY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_errors() -> tuple:
    """Errors a user can fix from the message alone (bad data, paths, settings)."""
    from keras_instance.data.records import DatasetError
    from keras_instance.run_folder import RunBusy
    return (DatasetError, RunBusy, FileNotFoundError, FileExistsError, ValueError,
            flags.ValidationError)


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def raised_outside_library(err: BaseException) -> bool:
    """True when the innermost frame is not keras_instance's own code (TensorFlow, Keras, NumPy):
    such a message names no file of ours, so the one line says how to see the traceback."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and not os.path.abspath(frames[-1].filename).startswith(_LIBRARY + os.sep)


def one_line(err: BaseException) -> str:
    message = f"error: {err}"
    if raised_outside_library(err):
        message += f" ({DEBUG_ENV}=1 shows the traceback)"
    return message


def run_reporting_user_errors(run) -> None:
    """Load TensorFlow and the library (after the flags were parsed), then call `run()`; a user
    error ends the program with its one-line message, no traceback (unless debugging)."""
    import keras_instance
    keras_instance.load_library()
    try:
        run()
    except user_errors() as err:
        if debugging():
            raise
        sys.exit(one_line(err))
