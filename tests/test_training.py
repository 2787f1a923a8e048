"""Two-stage training on tiny generated data: files written, evaluation, a kill before the first
backup, and the run-folder rules (a resume after a kill: tests/test_resume.py)."""
import csv
import json
import os

import conftest
import keras
import numpy as np
import pytest

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.data import readers
from keras_instance.retrieval import results
from keras_instance.text import tokenizer
from keras_instance.training import stages


def tiny_config(data_dir, workdir, **overrides):
    """conftest's tiny model, two Stage I epochs and a two-piece Stage II schedule."""
    return conftest.tiny_config(data_dir, workdir, **{
        "stage1_lr_schedule": "0.1:2", "stage2_lr_schedule": "0.1:1,0.01:1",
        "test_flip_sum": False, **overrides})


def _epochs_logged(workdir, stage):
    with open(os.path.join(workdir, f"stage{stage}", "log.csv")) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_two_stages_then_evaluate(demo_data, tmp_path):
    # The paper's negatives: hardest of a pool of random training captions (8 here).
    config = tiny_config(demo_data, str(tmp_path / "run"), feature_cache=str(tmp_path / "cache"),
                         negatives="hardest_of_pool", negative_pool=8)
    s1 = stages.train(config, 1, verbose=0)
    assert os.path.exists(s1["weights"]) and s1["epochs"] == 2
    assert os.listdir(tmp_path / "cache"), "Stage I with a frozen backbone fills the cache"
    s2 = stages.train(config, 2, verbose=0)
    assert s2["epochs"] == 2 and "rank_loss" in s2["final"] and s2["final"]["rank_loss"] > 0
    again = stages.train(config, 2, verbose=0)
    assert again["skipped"]

    loaded = Config.load(config.workdir)
    assert loaded == config
    stage, weights = run_folder.latest_weights(config.workdir)
    assert stage == 2
    dual = run_folder.build_model(loaded, backbone_weights=None)
    dual.full_model().load_weights(weights)
    vocab = tokenizer.Vocabulary.load(run_folder.path(config.workdir, run_folder.VOCAB))
    result = results.evaluate_split(loaded, dual, vocab, readers.load(loaded.data), "test")
    assert result["num_images"] == 12 and result["num_captions"] == 60
    for direction in ("i2t", "t2i"):
        assert set(result[direction]) == {"r1", "r5", "r10", "medr", "meanr"}
        r = result[direction]
        assert 0 <= r["r1"] <= r["r5"] <= r["r10"] <= 100
    path = results.write_result(result, config.workdir, "test")
    with open(path) as f:
        assert json.load(f)["protocol"] == "1k"


def test_stage2_needs_stage1(demo_data, tmp_path):
    with pytest.raises(FileNotFoundError, match="run --stage=1 first"):
        stages.train(tiny_config(demo_data, str(tmp_path / "run")), 2, verbose=0)


def test_a_moved_run_folder_loads_from_where_it_is(copy_run, trained_run):
    """config.json records the workdir it was trained in; loading must follow the folder."""
    assert Config.load(copy_run).workdir == trained_run["config"].workdir
    run = run_folder.load_trained(copy_run)
    assert run.config.workdir == copy_run
    assert run.weights.startswith(copy_run)


def test_steps_per_execution_trains_the_same_steps(demo_data, tmp_path):
    """Chunks of 2 steps per compiled call over 4-step epochs: the same optimizer steps and
    weights as one step per call. Over 3-step epochs a chunk would run into the next epoch
    (one input stream serves all epochs, so a resumed run sees the same batches), so the
    trainer takes the largest count that divides the epoch, and says so."""
    weights = []
    for spe in (1, 2):
        config = tiny_config(demo_data, str(tmp_path / f"spe{spe}"), dropout=0.0,
                             steps_per_execution=spe, batch_size=12)
        lines = []
        summary = stages.train(config, 1, verbose=0, log=lines.append)
        assert not any("--steps_per_execution=" in line for line in lines), lines
        dual = run_folder.build_model(config, backbone_weights=None)
        dual.full_model().load_weights(summary["weights"])
        weights.append([w.numpy() for w in dual.full_model().weights])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    lines, compiled = [], []
    with pytest.raises(KeyboardInterrupt):  # the count is chosen when the trainer is compiled
        stages.train(tiny_config(demo_data, str(tmp_path / "odd"), steps_per_execution=2),
                       1, verbose=0, log=lines.append, callbacks=[KillAtStart(compiled)])
    assert any("--steps_per_execution=2 runs as 1" in line for line in lines), lines
    assert compiled == [1]
    with pytest.raises(ValueError, match="steps_per_execution must be positive"):
        tiny_config(demo_data, str(tmp_path / "bad"), steps_per_execution=0).validate()


class KillAtStart(keras.callbacks.Callback):
    """A kill after the vocabulary and word vectors exist but before the first backup (as
    during the cache build, k-means or the first XLA compile); notes the compiled trainer's
    steps per execution in `seen`."""

    def __init__(self, seen=None):
        super().__init__()
        self.seen = [] if seen is None else seen

    def on_train_begin(self, logs=None):
        self.seen.append(int(self.model.steps_per_execution))
        raise KeyboardInterrupt("simulated kill before the first backup")


class WordLayerAtStart(keras.callbacks.Callback):
    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def on_train_begin(self, logs=None):
        layer = self.model.dual.text_encoder.get_layer("word_embedding")
        self.seen.append(layer.embeddings.numpy().copy())


def test_a_rerun_after_a_kill_before_the_first_backup_starts_from_word2vec(demo_data, tmp_path):
    config = tiny_config(demo_data, str(tmp_path / "run"))
    seen = []
    with pytest.raises(KeyboardInterrupt):
        stages.train(config, 1, verbose=0, callbacks=[WordLayerAtStart(seen), KillAtStart()])
    assert os.path.exists(run_folder.path(config.workdir, run_folder.VOCAB))
    assert not os.path.exists(os.path.join(config.workdir, "stage1", "backup"))
    with pytest.raises(KeyboardInterrupt):  # the rerun's start is what is checked
        stages.train(config, 1, verbose=0, callbacks=[WordLayerAtStart(seen), KillAtStart()])
    first, rerun = seen
    assert np.abs(first).max() > 0.2  # word2vec rows, not the 0.1-std random init
    np.testing.assert_array_equal(first, rerun)


def _messages():
    lines = []
    return lines, lines.append


def test_a_finished_stage_is_kept_and_overwrite_trains_it_again(copy_run):
    """On a copy of the session's run (Stage I and II finished, one epoch each)."""
    config = Config.load(copy_run).replace(workdir=copy_run)
    assert config.schedule_for(1) == config.schedule_for(2) == [(0.1, 1)]
    stage1 = run_folder.final_weights_path(config.workdir, 1)
    before = os.path.getmtime(stage1)
    lines, log = _messages()
    again = stages.train(config, 1, verbose=0, log=log)
    assert again["skipped"] and os.path.getmtime(stage1) == before
    assert any("already finished" in line and "--overwrite" in line for line in lines), lines

    lines, log = _messages()
    redone = stages.train(config, 1, verbose=0, log=log, overwrite=True)
    assert not redone.get("skipped") and redone["epochs"] == 1
    assert os.path.getmtime(stage1) != before
    assert _epochs_logged(config.workdir, 1) == [0]  # a new stage, not a restored one
    # the Stage II trained from the replaced Stage I was set aside, then dropped
    assert any("stage2" in line and "moved" in line for line in lines), lines
    assert not os.path.exists(os.path.join(config.workdir, "stage2"))
    assert not [n for n in os.listdir(config.workdir) if n.endswith(".replaced")]


def test_conflicting_flags_and_other_data_are_refused_and_leave_the_run_loadable(
        demo_data, tmp_path):
    import shutil
    data = str(tmp_path / "data")
    shutil.copytree(demo_data, data)
    config = tiny_config(data, str(tmp_path / "run"), stage1_lr_schedule="0.1:1")
    stages.train(config, 1, verbose=0)
    saved = open(os.path.join(config.workdir, "config.json")).read()
    with pytest.raises(ValueError, match=r"--embed_dim=32 conflicts .* --embed_dim=16"):
        stages.train(config.replace(embed_dim=32), 2, verbose=0)
    assert open(os.path.join(config.workdir, "config.json")).read() == saved
    assert not os.path.exists(os.path.join(config.workdir, "stage2"))
    run = run_folder.load_trained(config.workdir, stage=1)
    assert run.config.model.embed_dim == 16

    with pytest.raises(ValueError, match=r"asks for --stage1_lr_schedule=0.1:2\. Pass --overwrite"):
        stages.train(config.replace(stage1_lr_schedule="0.1:2"), 1, verbose=0)
    manifest = os.path.join(data, "manifest.jsonl")
    lines = open(manifest).read().splitlines()
    row = json.loads(lines[0])
    row["captions"][0] = "a caption nobody trained on"
    lines[0] = json.dumps(row)
    open(manifest, "w").write("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="training data differ"):
        stages.train(config, 1, verbose=0)
    assert open(os.path.join(config.workdir, "config.json")).read() == saved


def test_a_workdir_that_is_a_file_and_an_oversized_batch_fail_first(demo_data, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("")
    with pytest.raises(FileExistsError, match="is a file"):
        stages.train(tiny_config(demo_data, str(target)), 1, verbose=0)
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="batch size 64 is larger than the 48"):
        stages.train(tiny_config(demo_data, str(workdir), batch_size=64), 1, verbose=0)
    assert not workdir.exists()  # refused before the vocabulary or word2vec ran
