"""The run folder (`--workdir`): every file name in it, and the rules that keep it consistent.

    config.json            the run's settings (architecture, data, test time); rewritten only
                           after a stage finishes, so it always describes loadable weights
    vocab.txt              the vocabulary; word_vectors.npy its word2vec rows (written first)
    meta.json              classes, vocabulary size, training-set size, data fingerprint
    stage1/ stage2/        config.json (the settings the stage trains with), backup/ (per-epoch
                           state, resumed on a rerun), logs/, log.csv, summary.json,
                           final.weights.h5 (the finished stage)
    stageN.replaced/       a stage being retrained with --overwrite: the old one, kept until the
                           new one finishes
    eval_<split>.json, kmeans_labels.*, model.keras, report/, explain*.html

Nothing here trains: programs that load a run (`load_trained`) and the trainer both use it, and
loading a run imports no training code.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import sys

from keras_instance.config import RUN_FIELDS, Config, differences, flag_text, stage_fields

CONFIG = "config.json"
VOCAB = "vocab.txt"
WORD_VECTORS = "word_vectors.npy"
META = "meta.json"
FINAL_WEIGHTS = "final.weights.h5"
REPLACED = ".replaced"
KMEANS_LABELS = "kmeans_labels.npy"
KMEANS_INFO = "kmeans_labels.json"
IMAGE_ENCODER = "image_encoder.keras"
TEXT_ENCODER = "text_encoder.keras"
TRAINING_MODEL = "model.keras"
LOG_CSV = "log.csv"            # in each stage folder: the training curve
SUMMARY = "summary.json"       # in each stage folder: epochs, wall time, final metrics
LOCK = ".lock"                 # held by the one command writing the run folder (`exclusive`)
REPORT = "report"              # reports.html's default folder
EXPLAIN = "explain.html"       # cli.explain's default snippet (explain_top_<split>.html: --split)


class RunConflict(ValueError):
    """The command asks for settings that contradict what the run folder already holds."""


class RunBusy(RuntimeError):
    """Another command is writing the run folder."""


def path(workdir: str, name: str) -> str:
    return os.path.join(workdir, name)


def stage_dir(workdir: str, stage: int) -> str:
    return os.path.join(workdir, f"stage{stage}")


def final_weights_path(workdir: str, stage: int) -> str:
    return os.path.join(stage_dir(workdir, stage), FINAL_WEIGHTS)


def stage_config_path(workdir: str, stage: int) -> str:
    return os.path.join(stage_dir(workdir, stage), CONFIG)


def backup_dir(workdir: str, stage: int) -> str:
    return os.path.join(stage_dir(workdir, stage), "backup")


def logs_dir(workdir: str, stage: int) -> str:
    """TensorBoard's folder of a stage."""
    return os.path.join(stage_dir(workdir, stage), "logs")


def stage_file(workdir: str, stage: int, name: str) -> str:
    """A file of a stage folder (LOG_CSV, SUMMARY, FINAL_WEIGHTS, CONFIG)."""
    return os.path.join(stage_dir(workdir, stage), name)


def eval_path(workdir: str, name: str) -> str:
    return os.path.join(workdir, f"eval_{name}.json")


def latest_weights(workdir: str, stage: int | None = None) -> tuple[int, str]:
    """(stage, path) of the most advanced finished stage in `workdir`, or of `stage` if given."""
    for candidate in ((stage,) if stage else (2, 1)):
        weights = final_weights_path(workdir, candidate)
        if os.path.exists(weights):
            return candidate, weights
    wanted = f"stage {stage}" if stage else "training stage"
    raise FileNotFoundError(f"no finished {wanted} in {workdir!r} (looked for "
                            f"{final_weights_path(workdir, stage or 1)}); run "
                            "keras_instance.cli.train first")


def epochs_done(workdir: str, stage: int) -> int:
    """Epochs a stage's per-epoch backup holds (0 without one)."""
    metadata = os.path.join(backup_dir(workdir, stage), "training_metadata.json")
    if not os.path.exists(metadata):
        return 0
    with open(metadata) as f:
        return int(json.load(f).get("epoch", 0))


def write_json(target: str, value) -> str:
    """JSON written to a temporary sibling, then renamed: never half a file."""
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, target)
    return target


def read_json(target: str) -> dict:
    with open(target) as f:
        return json.load(f)


def check_workdir(workdir: str) -> None:
    """A workdir that is a file is refused before any work (not after the vocabulary)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise FileExistsError(f"--workdir={workdir} is a file, not a folder: pass a folder "
                              "path for the run (it is created if missing)")


def data_fingerprint(records) -> str:
    """Hash of the training records (ids, captions, labels): a changed manifest is noticed."""
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r.image_id, list(r.captions), r.label]).encode() + b"\n")
    return h.hexdigest()[:16]


def _flags(diffs, which: int) -> str:
    return ", ".join(flag_text(name, d[which]) for d in diffs for name in [d[0]])


def check_run(workdir: str, config: Config) -> Config | None:
    """The run's saved config, after checking `config` keeps its architecture and data.

    None for a new run folder. A conflict is refused in one line that names the flags.
    """
    saved_path = path(workdir, CONFIG)
    if not os.path.exists(saved_path):
        return None
    saved = Config.load_from(saved_path)
    diffs = differences(saved, config, RUN_FIELDS)
    if diffs:
        raise RunConflict(
            f"{_flags(diffs, 2)} conflicts with the run in {workdir}, trained with "
            f"{_flags(diffs, 1)}: architecture and data flags are fixed for a run folder; "
            "train into a new --workdir (or drop the flag)")
    return saved


def check_data(workdir: str, fingerprint: str, num_train: int) -> None:
    """The training records must be the ones the run was trained on (meta.json)."""
    meta_path = path(workdir, META)
    if not os.path.exists(meta_path):
        return
    meta = read_json(meta_path)
    before = meta.get("data_fingerprint")
    if before is not None and before != fingerprint:
        raise RunConflict(
            f"the training data differ from the data the run in {workdir} was trained on "
            f"({meta.get('num_train_images')} images then, {num_train} now; fingerprint "
            f"{before} vs {fingerprint}): train into a new --workdir, or restore the data")


def stage_state(workdir: str, config: Config, stage: int, epochs: int) -> str:
    """'new', 'resume' or 'finished' for this stage; refuses changed settings of a started one."""
    stage_config = stage_config_path(workdir, stage)
    finished = os.path.exists(final_weights_path(workdir, stage))
    done = epochs_done(workdir, stage)
    if not finished and not done:
        return "new"
    if os.path.exists(stage_config):
        diffs = differences(Config.load_from(stage_config), config, stage_fields(stage))
        if diffs:
            what = "trained" if finished else f"started ({done} of its epochs done)"
            raise RunConflict(
                f"stage {stage} in {workdir} was {what} with {_flags(diffs, 1)}; this command "
                f"asks for {_flags(diffs, 2)}. Pass --overwrite to train stage {stage} again "
                "with the new settings (the old one is kept until the new one finishes), or "
                "use a new --workdir")
    return "finished" if finished else "resume"


@contextlib.contextmanager
def exclusive(workdir: str, log=print):
    """Hold the run folder's lock while a command writes it: a second one is refused in one line
    naming the holder (host, PID, since when).

    An OS file lock (flock), so a process killed with -9 releases it with its last breath: the
    next command takes over the lock it left (and says so), never waits for a dead one.
    """
    os.makedirs(workdir, exist_ok=True)
    lock_path = path(workdir, LOCK)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            raise RunBusy(f"{workdir} is being written by {holder}: one command at a time per "
                          "run folder; wait for it to finish (or stop it), or use another "
                          "--workdir") from None
        stale = _lock_holder(fd, default="")
        if stale:
            log(f"{workdir}: taking over the lock of {stale}, which is no longer running")
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                  "since": since, "command": " ".join(sys.argv)}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no holder to report
    finally:
        os.close(fd)  # releases the flock


def _lock_holder(fd: int, default: str = "another process") -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return default
    if not info:
        return default
    return (f"PID {info.get('pid')} on {info.get('host')} since {info.get('since')} "
            f"({info.get('command') or 'unknown command'})")


def set_aside(workdir: str, stage: int, log=print) -> list[str]:
    """--overwrite: move stage N (and a Stage II trained from a replaced Stage I) aside."""
    moved = []
    for s in ((1, 2) if stage == 1 else (2,)):
        folder = stage_dir(workdir, s)
        if os.path.isdir(folder):
            target = folder + REPLACED
            shutil.rmtree(target, ignore_errors=True)
            os.replace(folder, target)
            log(f"--overwrite: {folder} moved to {target} until stage {stage} finishes"
                + (" (it was trained from the Stage I being replaced)" if s != stage else ""))
            moved.append(target)
    return moved


def drop_replaced(workdir: str, stage: int) -> None:
    """The retrained stage finished: what --overwrite set aside goes."""
    for s in ((1, 2) if stage == 1 else (2,)):
        shutil.rmtree(stage_dir(workdir, s) + REPLACED, ignore_errors=True)


# --- a finished run loaded back ---------------------------------------------------------------

@dataclasses.dataclass
class TrainedRun:
    config: Config
    dual: object    # model.dual_path.DualPath
    vocab: object   # text.tokenizer.Vocabulary
    stage: int
    weights: str
    requested_stage: int | None = None

    def describe(self) -> str:
        """One line naming the weights; says so when Stage I stands in for an unfinished II."""
        text = f"Stage {self.stage} model ({self.weights})"
        workdir = self.config.workdir
        if (self.stage == 1 and self.requested_stage is None
                and not os.path.exists(final_weights_path(workdir, 2))):
            done = epochs_done(workdir, 2)
            why = (f"Stage II stopped after {done} epoch(s), unfinished" if done
                   else "Stage II has not been trained")
            text += f"; {why}, so this is Stage I (--stage=1 to ask for it)"
        return text


def build_model(config: Config, backbone_weights="config"):
    """The run's model as `meta.json` sized it (weights come from a checkpoint afterwards)."""
    from keras_instance.model.dual_path import build_dual_path
    meta = read_json(path(config.workdir, META))
    return build_dual_path(config, meta["num_classes"], meta["vocab_size"], backbone_weights)


def load_trained(workdir: str, overrides: dict | None = None, stage: int | None = None
                 ) -> TrainedRun:
    """Rebuild the model of `workdir` with the weights of its latest finished stage (or
    `stage`); `overrides` (flat names) replace config fields, e.g. test-time settings."""
    from keras_instance.text import tokenizer
    # the folder given, not the one saved in config.json: a moved or copied run still loads
    config = Config.load(workdir).replace(workdir=workdir, **(overrides or {}))
    stage_asked = stage
    stage, weights = latest_weights(workdir, stage)
    dual = build_model(config, backbone_weights=None)
    dual.full_model().load_weights(weights)
    vocab = tokenizer.Vocabulary.load(path(workdir, VOCAB))
    return TrainedRun(config, dual, vocab, stage, weights, requested_stage=stage_asked)


def read_training_logs(workdir: str) -> list[tuple[int, list[dict]]]:
    """[(stage, rows of stage<N>/log.csv)] for every stage that logged an epoch, in stage order."""
    out = []
    for path in glob.glob(os.path.join(workdir, "stage*", LOG_CSV)):
        match = re.fullmatch(r"stage(\d+)", os.path.basename(os.path.dirname(path)))
        if not match:
            continue
        with open(path, newline="") as f:
            rows = [row for row in csv.DictReader(f)]
        if rows:
            out.append((int(match.group(1)), rows))
    return sorted(out, key=lambda item: item[0])

