"""The one-line error of a program, and the switch that shows its traceback."""
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_instance.cli import errors


def _library_error():
    from keras_instance.export import ivf
    ivf.quantize(np.zeros((2, 4), np.float32), "int4")  # raised by our own code


def _numpy_error():
    np.zeros((2, 3)) @ np.zeros((4, 5))  # raised inside NumPy: names no file of ours


def test_a_library_message_is_one_line_without_hint(monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        errors.run_reporting_user_errors(_library_error)
    assert stop.value.code == "error: storage 'int4': choose from float32, float16, int8"


def test_a_message_from_inside_numpy_says_how_to_see_where(monkeypatch):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as stop:
        errors.run_reporting_user_errors(_numpy_error)
    message = stop.value.code
    assert message.startswith("error: matmul: ") and "\n" not in message
    assert message.endswith(f"({errors.DEBUG_ENV}=1 shows the traceback)")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_the_debug_switch_raises_with_the_traceback(monkeypatch, value):
    monkeypatch.setenv(errors.DEBUG_ENV, value)
    with pytest.raises(ValueError, match="matmul"):
        errors.run_reporting_user_errors(_numpy_error)


def test_a_program_shows_the_traceback_under_the_switch(tmp_path):
    """Through a real program (an unreadable --workdir; its plain one line is tested in
    tests/test_programs.py and tests/test_run_folder.py)."""
    command = [sys.executable, "-m", "keras_instance.cli.evaluate",
               f"--workdir={tmp_path / 'missing'}", "--split=test"]
    debug = subprocess.run(command, capture_output=True, text=True, timeout=300,
                           env={**os.environ, errors.DEBUG_ENV: "1"})
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr, debug.stderr[-2000:]
