"""The absl programs end to end, as a user runs them: demo data → train I, II → evaluate.

Training runs on 2 logical CPU replicas (`--num_cpu_replicas=2`), the MirroredStrategy path
that multi-GPU machines take.
"""
import json
import os

import pytest
from conftest import TINY_FLAGS as TINY
from conftest import run_program as run


@pytest.mark.slow
def test_demo_workflow_with_two_cpu_replicas(tmp_path):
    data, work = str(tmp_path / "data"), str(tmp_path / "run")
    run("keras_instance.cli.demo_data", f"--out={data}", "--num_train=32", "--num_val=2",
        "--num_test=8", "--image_size=32")
    common = ["--dataset=demo", f"--data_dir={data}", f"--workdir={work}", *TINY]
    out = run("keras_instance.cli.train", *common, "--stage=1", "--num_cpu_replicas=2")
    assert "2 replica(s)" in out.stdout
    quiet(out)
    quiet(run("keras_instance.cli.train", *common, "--stage=2", "--num_cpu_replicas=2"))
    out = run("keras_instance.cli.evaluate", f"--workdir={work}", "--split=test")
    assert "image→text" in out.stdout and "text→image" in out.stdout
    quiet(out)
    # a program defines only the flags it uses: one it would ignore is an unknown flag
    bad = run("keras_instance.cli.evaluate", f"--workdir={work}", f"--data_dir={tmp_path}",
              check=False)
    assert bad.returncode != 0 and "Unknown command line flag 'data_dir'" in bad.stderr, \
        bad.stderr[-500:]
    with open(os.path.join(work, "eval_test.json")) as f:
        result = json.load(f)
    assert {"i2t", "t2i", "rsum", "protocol", "num_images", "num_captions"} <= set(result)
    assert result["num_images"] == 8 and result["num_captions"] == 40 and result["stage"] == 2


def quiet(proc):
    """No TensorFlow start-up noise (the cuInit E-line on a GPU-less machine, absl's warning),
    and no progress-bar escapes in a redirected log."""
    for noise in ("cuInit", "absl::InitializeLog", "E0000", "cpu_feature_guard", "\x1b["):
        assert noise not in proc.stderr + proc.stdout, (noise, proc.stderr[-1500:])


@pytest.mark.parametrize("flag, message", [
    ("--lr_multipliers=wrong=1", "expected group=value"),
    ("--stage1_lr_schedule=0.1", "bad learning-rate schedule"),
])
def test_bad_flags_get_clear_errors(tmp_path, flag, message):
    proc = run("keras_instance.cli.train", "--dataset=demo", f"--data_dir={tmp_path}",
               f"--workdir={tmp_path / 'run'}", flag, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


def test_missing_dataset_is_named(tmp_path):
    proc = run("keras_instance.cli.train", *TINY, "--dataset=flickr8k",
               f"--data_dir={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'run'}", check=False)
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr + proc.stdout


def test_evaluate_without_training_says_what_to_do(tmp_path):
    proc = run("keras_instance.cli.evaluate", f"--workdir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "train a model into this workdir first" in proc.stderr + proc.stdout
