"""Evaluate a trained workdir: `python -m keras_instance.evaluate --workdir=runs/demo --split=test`.

Uses the workdir's saved config (architecture, vocabulary, dataset); the evaluation flags
(--protocol, --test_flip_sum, --test_shift_sum, --eval_batch_size) may override it.
Prints the recall table and writes <workdir>/eval_<split>.json.
"""
import dataclasses
import sys

from absl import app, flags

from keras_instance import cli_flags

flags.DEFINE_string("split", "test", "Which split to evaluate: test or val.")
flags.DEFINE_integer("stage", None, "Evaluate this stage's weights (default: the latest finished).")
FLAGS = flags.FLAGS
_EVAL_FLAGS = ("protocol", "test_flip_sum", "test_shift_sum", "eval_batch_size")


def main(argv):
    del argv
    try:
        run()
    except cli_flags.user_errors() as err:
        sys.exit(f"error: {err}")


def run():
    from keras_instance import evaluation, retrieval, text, training
    from keras_instance.config import Config
    config = Config.load(FLAGS.workdir)
    overrides = {name: getattr(FLAGS, name) for name in _EVAL_FLAGS if FLAGS[name].present}
    config = dataclasses.replace(config, **overrides)
    stage, weights = training.latest_weights(config.workdir, FLAGS.stage)
    dual = training.build_for_workdir(config, backbone_weights=None)
    dual.full_model().load_weights(weights)
    vocab = text.Vocabulary.load(text.vocab_path(config.workdir))
    records = training.load_records(config)
    result = evaluation.evaluate_split(config, dual, vocab, records, FLAGS.split)
    result["stage"] = stage
    print(f"\n{config.dataset} {FLAGS.split} split, Stage {stage} model ({weights})")
    print(retrieval.format_table(result))
    name = FLAGS.split if FLAGS.stage is None else f"{FLAGS.split}_stage{stage}"
    print(f"written: {evaluation.write_result(result, config.workdir, name)}")


if __name__ == "__main__":
    app.run(main)
