"""Evaluate a trained run: `python -m keras_instance.cli.evaluate --workdir=runs/demo --split=test`.

Uses the run's saved config (architecture, vocabulary, dataset); the test-time flags
(--protocol, --test_geometry, --test_flip_sum, --test_shift_sum, --test_feature, …) may override
it.
Prints the recall table and writes <workdir>/eval_<split>.json.
"""

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_run_flags, load_run

define_run_flags()
flags.DEFINE_string("split", "test", "Which split to evaluate: test or val.")
flags.DEFINE_integer("stage", None, "Evaluate this stage's weights (default: the latest finished).")


def main(argv):
    del argv
    errors.run_reporting_user_errors(run)


def run():
    from keras_instance.data import readers
    from keras_instance.retrieval import metrics, results
    run = load_run(FLAGS.stage)
    config, stage = run.config, run.stage
    result = results.evaluate_split(config, run.dual, run.vocab, readers.load(config.data),
                                    FLAGS.split)
    result["stage"] = stage
    print(f"\n{config.data.dataset} {FLAGS.split} split, {run.describe()}")
    print(metrics.format_table(result))
    name = FLAGS.split if FLAGS.stage is None else f"{FLAGS.split}_stage{stage}"
    print(f"written: {results.write_result(result, config.workdir, name)}")


if __name__ == "__main__":
    app.run(main)
