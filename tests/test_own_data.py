"""README's "Train on your own images" commands, run as written on a generated manifest.

The commands are read from README.md itself, so the documentation cannot drift from what works:
only the paths (data/mine, runs/mine, exports/mine, the port) are replaced, and the train
commands get a tiny model appended after the flagfile (later flags win) and run on 2 logical
CPU replicas (`--num_cpu_replicas=2`): the MirroredStrategy path multi-GPU machines take. The
manifest comes from the demo-data program; every program's output is checked quiet (no
TensorFlow start-up noise, no progress-bar escapes).
"""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import quiet, run_program

from serving.standin_process import StandinProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--backbone=tiny_cnn", "--backbone_weights=none", "--test_geometry=squash",
        "--image_size=32", "--image_head_units=16", "--embed_dim=16", "--word_dim=8",
        "--text_widths=8,16,16,32", "--batch_size=16", "--cache_views=1",
        "--stage1_lr_schedule=0.1:1", "--stage2_lr_schedule=0.1:1"]


def readme_commands() -> list[str]:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text.split("## Train on your own images", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(python -m keras_instance\.cli\.train.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.server
def test_readme_own_data_commands_run_on_a_generated_manifest(tmp_path):
    data = tmp_path / "mine"
    run_program("keras_instance.cli.demo_data", f"--out={data}", "--num_train=32",
                "--num_val=2", "--num_test=8", "--image_size=32", "--seed=5")
    manifest = str(data / "manifest.jsonl")
    paths = {"data/mine/manifest.jsonl": manifest, "runs/mine": str(tmp_path / "run"),
             "exports/mine": str(tmp_path / "exports")}
    commands = readme_commands()
    assert [c.split()[2] for c in commands] == [
        "keras_instance.cli.train", "keras_instance.cli.train", "keras_instance.cli.evaluate",
        "keras_instance.cli.export", "keras_instance.cli.index", "serving.standin",
        "serving.client"]
    server = None
    try:
        for command in commands:
            for old, new in paths.items():
                command = command.replace(old, new)
            args = shlex.split(command.rstrip(" &"))
            if args[2] == "keras_instance.cli.train":
                args += TINY + [f"--feature_cache={tmp_path / 'cache'}", "--num_cpu_replicas=2"]
            if args[2] == "serving.standin":
                server = StandinProcess([a for a in args[3:] if not a.startswith("--port")],
                                        str(tmp_path / "server.log"))
                continue
            if args[2] == "serving.client":
                args = [a if not a.startswith("--server=") else f"--server={server.address}"
                        for a in args]
            proc = subprocess.run([sys.executable, *args[1:]], cwd=ROOT, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
            if args[2].startswith("keras_instance"):
                quiet(proc)
            if args[2] == "keras_instance.cli.train":
                assert "2 replica(s)" in proc.stdout, proc.stdout[-1000:]
        # the client printed the top test images for the query
        assert re.search(r"test_\d{5}", proc.stdout), proc.stdout[-2000:]
    finally:
        if server:
            server.stop()
    with open(os.path.join(paths["runs/mine"], "eval_test.json")) as f:
        result = json.load(f)
    assert {"i2t", "t2i", "rsum", "protocol", "num_images", "num_captions"} <= set(result)
    assert result["num_images"] == 8 and result["num_captions"] == 40 and result["stage"] == 2
    assert os.path.exists(os.path.join(paths["runs/mine"], "text_encoder.keras"))
