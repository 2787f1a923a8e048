"""HTML retrieval report: `python -m keras_instance.report --workdir=runs/demo --split=test`.

Writes `<workdir>/report/index.html` (thumbnails and plots beside it; opens from disk) and prints
its path. Uses the workdir's saved config, like evaluate; the evaluation flags (--protocol,
--test_flip_sum, --test_shift_sum, --eval_batch_size) and --seed (which queries are sampled) may
override it, so the training flagfile can be passed as it is.
"""
import dataclasses
import os
import sys

from absl import app, flags

from keras_instance import cli_flags

flags.DEFINE_string("split", "test", "Which split to show: test or val.")
flags.DEFINE_integer("stage", None, "Show this stage's model (default: the latest finished).")
flags.DEFINE_integer("num_queries", 10, "Sampled caption queries and image queries (each).")
flags.DEFINE_string("report_dir", None, "Output folder (default: <workdir>/report).")
FLAGS = flags.FLAGS
_EVAL_FLAGS = ("protocol", "test_flip_sum", "test_shift_sum", "eval_batch_size")


def main(argv):
    del argv
    try:
        run()
    except cli_flags.user_errors() as err:
        sys.exit(f"error: {err}")


def run():
    from keras_instance import report_html, text, training
    from keras_instance.config import Config
    if FLAGS.num_queries < 1:
        raise ValueError(f"--num_queries must be positive, got {FLAGS.num_queries}")
    config = Config.load(FLAGS.workdir)
    overrides = {name: getattr(FLAGS, name) for name in _EVAL_FLAGS if FLAGS[name].present}
    config = dataclasses.replace(config, **overrides)
    seed = FLAGS.seed if FLAGS["seed"].present else config.seed
    stage, weights = training.latest_weights(config.workdir, FLAGS.stage)
    dual = training.build_for_workdir(config, backbone_weights=None)
    dual.full_model().load_weights(weights)
    vocab = text.Vocabulary.load(text.vocab_path(config.workdir))
    records = training.load_records(config)
    path = report_html.write_report(
        config, dual, vocab, records, FLAGS.split, FLAGS.report_dir, FLAGS.num_queries, seed,
        title=f"Stage {stage} model ({weights})")
    print(f"report: {os.path.abspath(path)}")


if __name__ == "__main__":
    app.run(main)
