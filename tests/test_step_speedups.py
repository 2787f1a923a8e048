"""The training-step benchmark and what issue 23 item 8 changed around the step.

benchmarks/train_step.py starts TensorFlow as the programs do (keras_instance/_startup.py):
without it, its output opened with TensorFlow's start-up noise.
"""
import os
import subprocess
import sys

from conftest import quiet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_step_benchmark_starts_quietly():
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_INSTANCE_TF_LOGS",
                                                             "TF_CPP_MIN_LOG_LEVEL")}
    proc = subprocess.run([sys.executable, os.path.join("benchmarks", "train_step.py"), "--help"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "--steps" in proc.stdout
    quiet(proc)
