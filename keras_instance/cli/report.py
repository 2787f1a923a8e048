"""HTML retrieval report: `python -m keras_instance.cli.report --workdir=runs/demo --split=test`.

Writes `<workdir>/report/index.html`, one self-contained file (thumbnails and plots
embedded; the plots also beside it as PNGs), and prints
its path. Uses the run's saved config, like evaluate; the test-time flags and --seed (which
queries are sampled) may override it.
"""
import os

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_config_flags, define_run_flags, load_run

define_run_flags()
define_config_flags(("seed",))
flags.DEFINE_string("split", "test", "Which split to show: test or val.")
flags.DEFINE_integer("stage", None, "Show this stage's model (default: the latest finished).")
flags.DEFINE_integer("num_queries", 10, "Sampled caption queries and image queries (each).")
flags.DEFINE_string("report_dir", None, "Output folder (default: <workdir>/report).")


def main(argv):
    del argv
    errors.run_reporting_user_errors(run)


def run():
    from keras_instance.data import readers
    from keras_instance.reports import html
    if FLAGS.num_queries < 1:
        raise ValueError(f"--num_queries must be positive, got {FLAGS.num_queries}")
    run = load_run(FLAGS.stage)
    config = run.config
    seed = FLAGS.seed if FLAGS["seed"].present else config.seed
    records = readers.load(config.data)
    path = html.write_report(
        config, run.dual, run.vocab, records, FLAGS.split, FLAGS.report_dir, FLAGS.num_queries,
        seed, title=run.describe())
    print(f"report: {os.path.abspath(path)}")


if __name__ == "__main__":
    app.run(main)
