"""One writer per run folder, and a start that fails writes nothing (issue 19, items 2 and 3)."""
import os
import signal
import socket
import subprocess
import sys
import time

import conftest
import pytest

from keras_instance import run_folder
from keras_instance.training import stages

HOLD = """
import sys, time
from keras_instance import run_folder
with run_folder.exclusive(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """A process holding the lock of tmp_path/run, as a training command would."""
    workdir = str(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, workdir], cwd=conftest.ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield workdir, proc
    proc.kill()
    proc.wait()


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_ones_lock_is_taken_over(
        holder, demo_data):
    workdir, proc = holder
    config = conftest.tiny_config(demo_data, workdir)
    with pytest.raises(run_folder.RunBusy) as refused:
        stages.train(config, 1, verbose=0)
    message = str(refused.value)
    assert f"PID {proc.pid} on {socket.gethostname()} since " in message, message
    assert "\n" not in message
    assert os.listdir(workdir) == [run_folder.LOCK]  # the refused command wrote nothing

    os.kill(proc.pid, signal.SIGKILL)  # killed -9: its lock goes with it
    proc.wait()
    lines = []
    summary = stages.train(config, 1, verbose=0, log=lines.append)
    assert os.path.exists(summary["weights"])
    assert any(f"taking over the lock of PID {proc.pid}" in line for line in lines), lines
    with run_folder.exclusive(workdir):  # released at the end of the command
        pass


def test_the_train_program_refuses_a_busy_run_folder_in_one_line(holder, demo_data):
    workdir, proc = holder
    start = time.time()
    out = conftest.run_program("keras_instance.cli.train", *conftest.TINY_FLAGS,
                               f"--data_dir={demo_data}", f"--workdir={workdir}", "--stage=1",
                               check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"PID {proc.pid}" in last, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert time.time() - start < 120


def test_a_start_that_fails_writes_nothing(demo_data, tmp_path):
    bad_weights = tmp_path / "README.md"
    bad_weights.write_text("# not a weights file\n")
    workdir = tmp_path / "run"
    config = conftest.tiny_config(demo_data, str(workdir), backbone_weights=str(bad_weights))
    with pytest.raises(ValueError):
        stages.train(config, 1, verbose=0)
    assert not workdir.exists()  # no config.json, meta.json, vocabulary, vectors, stage config

    existing = tmp_path / "existing"  # a folder the user made: it keeps only the (free) lock
    existing.mkdir()
    config = config.replace(workdir=str(existing))
    with pytest.raises(ValueError):
        stages.train(config, 1, verbose=0)
    assert os.listdir(existing) == [run_folder.LOCK]
    assert os.path.getsize(existing / run_folder.LOCK) == 0
