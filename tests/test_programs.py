"""The absl programs end to end, as a user runs them: demo data → train I, II → evaluate.

Training runs on 2 logical CPU replicas (`--num_cpu_replicas=2`), the MirroredStrategy path
that multi-GPU machines take.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--backbone=tiny_cnn", "--backbone_weights=none", "--test_geometry=squash", "--image_size=32",
        "--image_head_units=16", "--word_dim=8", "--text_widths=8,16,16,32",
        "--text_blocks=1,1,1,1", "--embed_dim=16", "--dropout=0.1", "--batch_size=16",
        "--negatives=hardest_in_batch", "--norandom_flip", "--notest_flip_sum",
        "--stage1_lr_schedule=0.1:1", "--stage2_lr_schedule=0.1:1"]


def run(module, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_demo_workflow_with_two_cpu_replicas(tmp_path):
    data, work = str(tmp_path / "data"), str(tmp_path / "run")
    run("keras_instance.demo_data", f"--out={data}", "--num_train=32", "--num_val=2",
        "--num_test=8", "--image_size=32")
    common = ["--dataset=demo", f"--data_dir={data}", f"--workdir={work}", *TINY]
    out = run("keras_instance.train", *common, "--stage=1", "--num_cpu_replicas=2")
    assert "2 replica(s)" in out.stdout
    quiet(out)
    quiet(run("keras_instance.train", *common, "--stage=2", "--num_cpu_replicas=2"))
    out = run("keras_instance.evaluate", f"--workdir={work}", "--split=test")
    assert "image→text" in out.stdout and "text→image" in out.stdout
    quiet(out)
    # flags a trained run cannot honour are refused, not silently ignored
    for flag in (f"--data_dir={tmp_path}", "--backbone=resnet50", "--embed_dim=32"):
        bad = run("keras_instance.evaluate", f"--workdir={work}", flag, check=False)
        assert bad.returncode != 0 and "would ignore the flag" in bad.stderr, bad.stderr[-500:]
        assert flag.split("=")[0] in bad.stderr.strip().splitlines()[-1]
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
    proc = run("keras_instance.train", "--dataset=demo", f"--data_dir={tmp_path}",
               f"--workdir={tmp_path / 'run'}", flag, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


def test_missing_dataset_is_named(tmp_path):
    proc = run("keras_instance.train", "--dataset=flickr8k", f"--data_dir={tmp_path / 'nowhere'}",
               f"--workdir={tmp_path / 'run'}", *TINY, check=False)
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr + proc.stdout


def test_evaluate_without_training_says_what_to_do(tmp_path):
    proc = run("keras_instance.evaluate", f"--workdir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "train a model into this workdir first" in proc.stderr + proc.stdout
