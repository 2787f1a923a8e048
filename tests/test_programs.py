"""The absl programs' command lines: errors a user can act on, flags they do not take.

The whole workflow (demo data → train I, II on 2 logical CPU replicas → evaluate → export →
index → serve → query) runs in tests/test_own_data.py, from README's own commands.
"""
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT
from conftest import TINY_FLAGS as TINY
from conftest import run_program as run

from keras_instance import run_folder


def test_a_program_refuses_a_flag_it_would_ignore(tmp_path):
    """evaluate uses the run's data and architecture: it defines no --data_dir or --backbone,
    so they are unknown flags, refused before anything runs."""
    for flag in (f"--data_dir={tmp_path}", "--backbone=resnet50"):
        bad = run("keras_instance.cli.evaluate", f"--workdir={tmp_path}", flag, check=False)
        name = flag.split("=")[0][2:]
        assert bad.returncode != 0, bad.stdout
        assert f"Unknown command line flag '{name}'" in bad.stderr, bad.stderr[-500:]


@pytest.mark.parametrize("flag, message", [
    ("--lr_multipliers=wrong=1", "expected group=value"),
    ("--stage1_lr_schedule=0.1", "bad learning-rate schedule"),
])
def test_bad_flags_get_clear_errors(tmp_path, flag, message):
    proc = run("keras_instance.cli.train", "--dataset=demo", f"--data_dir={tmp_path}",
               f"--workdir={tmp_path / 'run'}", flag, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


def test_index_refuses_a_zero_recall_target(tmp_path):
    """0 would silently fall back to the default nprobe rule; refused before anything runs."""
    proc = run("keras_instance.cli.index", f"--workdir={tmp_path}", "--target_recall=0",
               check=False)
    assert proc.returncode != 0
    assert "--target_recall must be above 0" in proc.stderr + proc.stdout


def test_missing_dataset_is_named(tmp_path):
    proc = run("keras_instance.cli.train", *TINY, "--dataset=flickr8k",
               f"--data_dir={tmp_path / 'nowhere'}", f"--workdir={tmp_path / 'run'}", check=False)
    assert proc.returncode != 0
    assert "nowhere" in proc.stderr + proc.stdout


def test_evaluate_without_training_says_what_to_do(tmp_path):
    proc = run("keras_instance.cli.evaluate", f"--workdir={tmp_path}", check=False)
    assert proc.returncode != 0
    assert "train a model into this workdir first" in proc.stderr + proc.stdout


@pytest.mark.parametrize("program", ["train", "evaluate", "export", "index", "embed"])
def test_a_bad_flag_is_answered_before_tensorflow_loads(program):
    """Flags are parsed first (keras_instance.load_library comes after): a typo costs no
    TensorFlow start-up."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m",
                          f"keras_instance.cli.{program}", "--no_such_flag=1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "no_such_flag" in out.stderr, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "keras_instance.config" in imported  # the listing is real
    assert not {"tensorflow", "keras"} & imported, sorted(imported)


def test_evaluate_says_when_stage_one_stands_in_for_stage_two(copy_run):
    shutil.rmtree(run_folder.stage_dir(copy_run, 2))
    out = run("keras_instance.cli.evaluate", f"--workdir={copy_run}", "--split=test")
    assert "Stage II has not been trained, so this is Stage I" in out.stdout, out.stdout
    out = run("keras_instance.cli.evaluate", f"--workdir={copy_run}", "--split=test",
              "--stage=1")
    assert "so this is Stage I" not in out.stdout, out.stdout


def test_the_training_program_declares_only_its_own_flags():
    """Every setting is a Config field (config.py, declared once; flags generated from it): the
    train program itself adds only --stage and --overwrite (--strategy and --num_cpu_replicas
    were its own flags, outside Config, so no run folder recorded them)."""
    script = ("import keras_instance.cli.train\n"
              "from absl import flags\n"
              "print(sorted(f.name for f in flags.FLAGS.flags_by_module_dict()"
              "['keras_instance.cli.train']))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=True)
    assert proc.stdout.strip() == "['overwrite', 'stage']", proc.stdout
    from keras_instance.config import Config
    assert Config().optim.strategy == "mirrored" and Config().optim.num_cpu_replicas == 0
