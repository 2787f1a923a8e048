"""HTML retrieval report: `python -m keras_instance.report --workdir=runs/demo --split=test`.

Writes `<workdir>/report/index.html`, one self-contained file (thumbnails and plots
embedded; the plots also beside it as PNGs), and prints
its path. Uses the workdir's saved config, like evaluate; the evaluation flags (--protocol,
--test_flip_sum, --test_shift_sum, --test_feature, --eval_batch_size) and --seed (which queries
are sampled) may override it, so the training flagfile can be passed as it is.
"""
import os

from absl import app, flags

from keras_instance import cli_flags

flags.DEFINE_string("split", "test", "Which split to show: test or val.")
flags.DEFINE_integer("stage", None, "Show this stage's model (default: the latest finished).")
flags.DEFINE_integer("num_queries", 10, "Sampled caption queries and image queries (each).")
flags.DEFINE_string("report_dir", None, "Output folder (default: <workdir>/report).")
FLAGS = flags.FLAGS
_EVAL_FLAGS = ("protocol", *cli_flags.TEST_TIME_FLAGS, "eval_batch_size")


def main(argv):
    del argv
    cli_flags.run_reporting_user_errors(run)


def run():
    from keras_instance import report_html, training
    if FLAGS.num_queries < 1:
        raise ValueError(f"--num_queries must be positive, got {FLAGS.num_queries}")
    run = cli_flags.load_run(_EVAL_FLAGS, FLAGS.stage)
    config = run.config
    seed = FLAGS.seed if FLAGS["seed"].present else config.seed
    records = training.load_records(config)
    path = report_html.write_report(
        config, run.dual, run.vocab, records, FLAGS.split, FLAGS.report_dir, FLAGS.num_queries,
        seed, title=run.describe())
    print(f"report: {os.path.abspath(path)}")


if __name__ == "__main__":
    app.run(main)
