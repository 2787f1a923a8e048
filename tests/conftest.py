"""Shared fixtures: the tiny config, generated demo data, ONE trained tiny run per session, and
one way to run a program.

`trained_run` (Stage I + II of the tiny model on its own copy of the demo data, exported as version
1) is shared by
every test that only reads a trained run (export, index, serving, bad inputs, explain, report,
encoders), and by both pytest workers (the first to need it trains it, the other waits and loads
it); a test that changes a run folder trains its own or copies this one (`copy_run`).
Markers (pytest.ini): `slow` (tens of seconds: several processes or many steps), `server` (starts
the stand-in server). `make test` runs everything.

Order: `make test` gives each of two workers one file at a time, so a long file taken last runs
alone at the end. Files are collected heaviest first, by tests/file_durations.json (seconds per
file, written by `pytest --record-file-durations`; a file missing from it goes first).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict

import keras
import pytest

from keras_instance.config import Config, flag_text
from keras_instance.data.demo import generate_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(dataset="demo", backbone="tiny_cnn", backbone_weights=None, test_geometry="squash",
            image_size=32, image_head_units=(16,), word_dim=8, text_widths=(8, 16, 16, 32),
            text_blocks=(1, 1, 1, 1), embed_dim=16, dropout=0.1, batch_size=16,
            negatives="hardest_in_batch", random_flip=False, stage1_lr_schedule="0.1:1",
            stage2_lr_schedule="0.1:1", test_flip_sum=True, test_shift_sum=True)
# The same tiny model as command-line flags, for the programs.
TINY_FLAGS = [flag_text(k, v) for k, v in TINY.items() if k != "backbone_weights"] + [
    "--backbone_weights=none"]


# A tiny dual path for tests that drive InstanceTrainer directly on 16-px images and 8 tokens.
STEP_CONFIG = Config.flat(backbone="tiny_cnn", test_geometry="squash", backbone_weights=None,
                          image_size=16, image_head_units=(16,), text_widths=(8, 16, 16, 32),
                          text_blocks=(1, 1, 1, 1), embed_dim=16, word_dim=8, max_length=8,
                          dropout=0.0)


def tiny_config(data_dir: str, workdir: str, **overrides) -> Config:
    """The tiny model on `data_dir`, training into `workdir` (flat-named overrides)."""
    return Config.flat(**{**TINY, "data_dir": data_dir, "workdir": workdir, **overrides})


def run_program(module: str, *args, check: bool = True, timeout: int = 600,
                env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` from the repository root, as a user runs it."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def quiet(proc: subprocess.CompletedProcess) -> None:
    """No TensorFlow start-up noise (the cuInit E-line on a GPU-less machine, absl's warning),
    and no progress-bar escapes in a redirected log."""
    for noise in ("cuInit", "absl::InitializeLog", "E0000", "cpu_feature_guard", "\x1b["):
        assert noise not in proc.stderr + proc.stdout, (noise, proc.stderr[-1500:])


class KillAfterEpoch(keras.callbacks.Callback):
    """Stops a run right after the per-epoch backup of `epoch` (0-based) was written (the
    trainer's own callbacks run first): a kill between two epochs."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")


def make_demo(folder, num_train=48, num_val=4, num_test=12, image_size=32, seed=3) -> str:
    generate_demo(str(folder), num_train=num_train, num_val=num_val, num_test=num_test,
                  image_size=image_size, seed=seed)
    return str(folder)


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> str:
    """48 training, 4 val, 12 test generated pictures (32 px) with five captions each."""
    return make_demo(tmp_path_factory.mktemp("demo_data"))


@contextlib.contextmanager
def shared_between_workers(tmp_path_factory, name: str):
    """(folder, done) for work the pytest workers share: one holds the lock and builds `folder`
    while the other waits; `done` says it was built (by this worker or an earlier one)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the folder all workers' temp folders live in
    folder = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder, (folder / "done").exists()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> dict:
    """The tiny model trained through Stage I and II once per test run (shared by the workers),
    loaded, and exported as the export program exports it (version 1, the .keras files). Read
    only: `copy_run` for a folder a test may change."""
    from keras_instance import run_folder
    from keras_instance.data import readers
    from keras_instance.data.records import split_records
    with shared_between_workers(tmp_path_factory, "trained_run") as (root, done):
        workdir, exports = str(root / "run"), str(root / "exports")
        if not done:
            from keras_instance.training import stages
            config = tiny_config(make_demo(root / "data"), workdir,
                                 feature_cache=str(root / "cache"))
            stages.train(config, 1, verbose=0)
            stages.train(config, 2, verbose=0)
            # what `python -m keras_instance.cli.export` writes (the program itself runs in
            # tests/test_own_data.py), without another TensorFlow start-up
            from keras_instance.export import encoders, publish
            run = run_folder.load_trained(workdir)
            result = publish.export_encoders(run.config, run.dual, run.vocab, exports)
            assert result["version"] == 1, result
            encoders.save_encoders(run.config, run.dual, run.vocab, workdir)
            encoders.save_keras_model(run.dual, workdir)
            (root / "done").write_text("")
    run = run_folder.load_trained(workdir)
    return dict(config=run.config, dual=run.dual, vocab=run.vocab, exports=exports, root=root,
                records=readers.load(run.config.data),
                test=split_records(readers.load(run.config.data), "test"))


@pytest.fixture
def copy_run(trained_run, tmp_path):
    """A copy of the session's trained run folder that the test may change."""
    target = tmp_path / "run"
    shutil.copytree(trained_run["config"].workdir, target)
    return str(target)


DURATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "file_durations.json")


def pytest_addoption(parser):
    parser.addoption("--record-file-durations", action="store_true",
                     help="write the seconds each test file took to tests/file_durations.json "
                          "(`make test` runs the heaviest files first)")


def pytest_collection_modifyitems(config, items):
    """Heaviest files first; within a file, the order it is written in. The second file is the
    heaviest one that needs no `trained_run`, so the second worker does not start by waiting
    for the first to train it."""
    try:
        with open(DURATIONS) as f:
            seconds = json.load(f)
    except FileNotFoundError:
        return
    first = float("inf")  # a file not measured yet may be long: do not leave it for last
    items.sort(key=lambda item: -seconds.get(_test_file(item.nodeid), first))
    files = list(dict.fromkeys(_test_file(item.nodeid) for item in items))
    needs = {f for f in files if any("trained_run" in item.fixturenames
                                     for item in items if _test_file(item.nodeid) == f)}
    free = [f for f in files[1:] if f not in needs]
    if len(files) > 2 and files[0] in needs and files[1] in needs and free:
        files.remove(free[0])
        files.insert(1, free[0])
        rank = {f: n for n, f in enumerate(files)}
        items.sort(key=lambda item: rank[_test_file(item.nodeid)])


_file_seconds: dict = defaultdict(float)


def _test_file(nodeid: str) -> str:
    return nodeid.split("::")[0]


def pytest_runtest_logreport(report):
    _file_seconds[_test_file(report.nodeid)] += report.duration


def pytest_sessionfinish(session):
    config = session.config
    if config.getoption("record_file_durations") and not hasattr(config, "workerinput"):
        with open(DURATIONS, "w") as f:  # the controller (or a run without workers) writes
            json.dump({k: round(v, 1) for k, v in sorted(_file_seconds.items())}, f, indent=1)
            f.write("\n")
