"""A resumed stage continues the interrupted run: killed after epoch 2 and rerun, both stages
keep the epochs done, run only the rest (from the optimizer step where they stopped), and give the
per-epoch losses and the final weights of a run that was never interrupted.

Everything a resume could restart is switched on: the Stage I feature cache (several views, so
the view drawn per epoch matters), dropout, augmentation, Position Shift, the authors'
hardest-of-pool negatives (a random caption pool per batch) and a two-piece Stage II schedule.
"""
import csv
import os

import conftest
import keras
import numpy as np
import pytest

from keras_instance import run_folder
from keras_instance.config import Config
from keras_instance.training import stages

EPOCHS = 4


def _config(data_dir, workdir, cache):
    return conftest.tiny_config(
        data_dir, workdir, feature_cache=cache, cache_views=3, random_flip=True,
        negatives="hardest_of_pool", negative_pool=8, dropout=0.3,
        stage1_lr_schedule=f"0.1:{EPOCHS}", stage2_lr_schedule=f"0.1:2,0.01:{EPOCHS - 2}",
        test_flip_sum=False)


def _losses(workdir, stage):
    with open(run_folder.stage_file(workdir, stage, run_folder.LOG_CSV)) as f:
        rows = list(csv.DictReader(f))
    return [int(r["epoch"]) for r in rows], np.array(
        [[float(r[k]) for k in ("loss", "image_loss", "text_loss", "rank_loss")] for r in rows])


def _weights(workdir, stage):
    config = Config.load(workdir).replace(workdir=workdir)
    dual = run_folder.build_model(config, backbone_weights=None)
    dual.full_model().load_weights(run_folder.final_weights_path(workdir, stage))
    return [w.numpy() for w in dual.full_model().weights]


class RecordStart(keras.callbacks.Callback):
    """The optimizer's step count when fit starts, then each epoch fit runs."""

    def __init__(self, seen):
        super().__init__()
        self.seen = seen

    def on_train_begin(self, logs=None):
        self.seen["iterations_at_start"] = int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.setdefault("epochs_run", []).append(epoch)


@pytest.fixture(scope="module")
def runs(demo_data, tmp_path_factory):
    """(uninterrupted workdir, resumed workdir, what each stage's kill and rerun left and did):
    the second killed after epoch 2 of each stage."""
    root = tmp_path_factory.mktemp("resume")
    cache = str(root / "cache")
    whole = _config(demo_data, str(root / "whole"), cache)
    for stage in (1, 2):
        stages.train(whole, stage, verbose=0)
    resumed = _config(demo_data, str(root / "resumed"), cache)
    seen = {}
    for stage in (1, 2):
        with pytest.raises(KeyboardInterrupt):
            stages.train(resumed, stage, verbose=0, callbacks=[conftest.KillAfterEpoch(1)])
        seen[stage] = {"logged_after_kill": _losses(resumed.workdir, stage)[0],
                       "finished_after_kill": os.path.exists(
                           run_folder.final_weights_path(resumed.workdir, stage))}
        lines = []
        stages.train(resumed, stage, verbose=0, log=lines.append,
                     callbacks=[RecordStart(seen[stage])])
        seen[stage]["lines"] = lines
    return whole.workdir, resumed.workdir, seen


@pytest.mark.parametrize("stage", [1, 2])
def test_a_killed_stage_keeps_its_epochs_and_the_rerun_runs_only_the_rest(runs, stage):
    seen = runs[2][stage]
    assert seen["logged_after_kill"] == [0, 1] and not seen["finished_after_kill"]
    assert f"resuming stage {stage} at epoch 3 of {EPOCHS}" in seen["lines"], seen["lines"]
    # the rerun ran epochs 2 and 3 only, from the optimizer step the kill left (2 epochs × 3)
    assert seen["epochs_run"] == [2, 3] and seen["iterations_at_start"] == 2 * 3, seen


@pytest.mark.parametrize("stage", [1, 2])
def test_a_resumed_stage_logs_the_losses_of_the_uninterrupted_run(runs, stage):
    whole, resumed, _ = runs
    epochs_whole, losses_whole = _losses(whole, stage)
    epochs_resumed, losses_resumed = _losses(resumed, stage)
    assert epochs_whole == epochs_resumed == list(range(EPOCHS))  # each epoch logged once
    np.testing.assert_allclose(losses_resumed, losses_whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("stage", [1, 2])
def test_a_resumed_stage_ends_with_the_weights_of_the_uninterrupted_run(runs, stage):
    whole, resumed, _ = runs
    for a, b in zip(_weights(whole, stage), _weights(resumed, stage), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
