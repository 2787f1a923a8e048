"""A release publishes its models together (issue 19, item 5): versions are written first, then
models.config pins all of them in one rename; a release killed at any point serves what was
served before, the next one cleans what it left, and one models.config never mixes runs."""
import os
import subprocess
import sys

import conftest
import pytest
import tensorflow as tf

from keras_instance.export import layout

MODELS = ("image_encoder", "text_encoder")

# A release of two tiny models by a process that is killed (SIGKILL) at the point named.
KILLED_RELEASE = """
import os, signal, sys
import tensorflow as tf
from keras_instance.export import layout
sys.path.insert(0, {tests!r})
from test_release import TinyModule
export_dir, where = sys.argv[1], sys.argv[2]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if where == "while_saving_the_second":
    real = tf.saved_model.save
    def save(module, path, **kw):
        real(module, path, **kw)
        if module.model_name == "text_encoder":
            die()  # its .tmp- folder is on disk, not renamed
    tf.saved_model.save = save
if where == "before_the_config":
    layout.write_models_config = lambda *a, **k: die()
with layout.release(export_dir, ["image_encoder", "text_encoder"], run_id="run-a",
                    log=lambda line: None) as r:
    r.save(TinyModule("image_encoder", 2.0))
    if where == "after_the_first":
        die()
    r.save(TinyModule("text_encoder", 2.0))
"""


class TinyModule(tf.Module):
    """A served model of the smallest kind: sentences → their length times `scale`."""

    input_name = "sentences"

    def __init__(self, model_name, scale):
        super().__init__(name=model_name)
        self.model_name = model_name
        self.scale = tf.Variable(scale)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        return {"value": tf.cast(tf.strings.length(sentences), tf.float32) * self.scale}

    def signatures(self):
        return {layout.SIGNATURE: self.serve}

    def warmup_batches(self):
        return [[b"warm"]]


def _release(export_dir, models=MODELS, run_id="run-a", **kwargs):
    lines = []
    with layout.release(str(export_dir), models, run_id=run_id, log=lines.append,
                        **kwargs) as r:
        for m in models:
            r.save(TinyModule(m, 1.0))
    return r, lines


def _tree(export_dir):
    return sorted(os.path.relpath(os.path.join(root, d), export_dir)
                  for root, dirs, _ in os.walk(export_dir) for d in dirs
                  if root == str(export_dir) or os.path.dirname(root) == str(export_dir))


@pytest.mark.parametrize("where", ["after_the_first", "while_saving_the_second",
                                   "before_the_config"])
def test_a_killed_release_serves_the_previous_one_and_the_next_cleans_up(tmp_path, where):
    exports = tmp_path / "exports"
    first, _ = _release(exports)
    assert first.version == 1
    config_before = (exports / layout.MODELS_CONFIG).read_text()
    proc = subprocess.run([sys.executable, "-c", KILLED_RELEASE.format(
        tests=os.path.dirname(__file__)), str(exports), where], cwd=conftest.ROOT,
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    # what a server reads is unchanged: both models pinned to version 1
    assert (exports / layout.MODELS_CONFIG).read_text() == config_before
    assert layout.pinned_versions(str(exports)) == {m: 1 for m in MODELS}
    left = [p for p in _tree(exports) if ".tmp-" in p or p.endswith("/2")]
    assert left, "the kill left something for the next release to clean"

    second, lines = _release(exports)
    assert second.version == 2
    assert layout.pinned_versions(str(exports)) == {m: 2 for m in MODELS}
    assert not [p for p in _tree(exports) if ".tmp-" in p], _tree(exports)
    assert any("removed" in line for line in lines), lines
    assert not (exports / layout.PENDING).exists()


def test_models_config_pins_each_model_and_a_failed_release_changes_nothing(tmp_path):
    exports = tmp_path / "exports"
    _release(exports)
    text = (exports / layout.MODELS_CONFIG).read_text()
    assert text.count("specific") == 2 and "versions: 1" in text
    with pytest.raises(RuntimeError, match="encoder failed"):
        with layout.release(str(exports), MODELS, run_id="run-a", log=lambda _: None) as r:
            r.save(TinyModule("image_encoder", 1.0))
            raise RuntimeError("encoder failed")
    assert (exports / layout.MODELS_CONFIG).read_text() == text
    assert not (exports / "image_encoder" / "2").exists()
    with pytest.raises(ValueError, match="wrote no text_encoder"):
        with layout.release(str(exports), MODELS, run_id="run-a", log=lambda _: None) as r:
            r.save(TinyModule("image_encoder", 1.0))
    assert (exports / layout.MODELS_CONFIG).read_text() == text


def test_models_of_two_runs_are_never_pinned_together(tmp_path):
    exports = tmp_path / "exports"
    _release(exports, run_id="run-a")
    _release(exports, models=("text_to_image",), run_id="run-a")
    with pytest.raises(ValueError, match="from another run") as refused:
        _release(exports, models=("image_to_text",), run_id="run-b")
    assert "image_encoder 1" in str(refused.value) and "text_to_image 1" in str(refused.value)
    assert not (exports / "image_to_text").exists() or not os.listdir(exports / "image_to_text")
    # new encoders supersede the run: the other run's index leaves models.config, said aloud
    _, lines = _release(exports, run_id="run-b", supersede=True)
    assert layout.pinned_versions(str(exports)) == {m: 2 for m in MODELS}
    assert any("text_to_image 1 left out of models.config" in line for line in lines), lines
