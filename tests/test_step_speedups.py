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


def test_programs_pool_host_memory_in_tensorflows_bfc_allocator():
    """_startup turns on the BFC allocator for host memory before TensorFlow loads. TensorFlow
    itself does so only where its oneDNN kernels are on (VNNI CPUs and up); on an AVX2-only
    CPU every big tensor was a fresh, page-faulted mmap (the feature cache ran 1.7× slower).
    Only a BFC allocator keeps statistics: get_memory_info raises for the plain one."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    code = ("from keras_instance import load_library; load_library(); import tensorflow as tf; "
            "x = tf.ones([256, 256]) @ tf.ones([256, 256]); "
            "print(tf.config.experimental.get_memory_info('CPU:0')['peak'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert int(proc.stdout.split()[-1]) >= 256 * 256 * 4


def test_an_allocator_chosen_in_the_environment_is_kept(monkeypatch):
    from keras_instance import _startup

    monkeypatch.setenv("TF_CPU_ALLOCATOR_USE_BFC", "false")
    _startup.use_bfc_cpu_allocator()
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "false"
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC")
    _startup.use_bfc_cpu_allocator()
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "true"
