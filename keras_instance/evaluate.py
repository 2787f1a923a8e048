"""Evaluate a trained workdir: `python -m keras_instance.evaluate --workdir=runs/demo --split=test`.

Uses the workdir's saved config (architecture, vocabulary, dataset); the evaluation flags
(--protocol, --test_flip_sum, --test_shift_sum, --test_feature, --eval_batch_size) may override
it.
Prints the recall table and writes <workdir>/eval_<split>.json.
"""

from absl import app, flags

from keras_instance import cli_flags

flags.DEFINE_string("split", "test", "Which split to evaluate: test or val.")
flags.DEFINE_integer("stage", None, "Evaluate this stage's weights (default: the latest finished).")
FLAGS = flags.FLAGS
_EVAL_FLAGS = ("protocol", *cli_flags.TEST_TIME_FLAGS, "eval_batch_size")


def main(argv):
    del argv
    cli_flags.run_reporting_user_errors(run)


def run():
    from keras_instance import evaluation, retrieval, training
    run = cli_flags.load_run(_EVAL_FLAGS, FLAGS.stage)
    config, stage = run.config, run.stage
    records = training.load_records(config)
    result = evaluation.evaluate_split(config, run.dual, run.vocab, records, FLAGS.split)
    result["stage"] = stage
    print(f"\n{config.dataset} {FLAGS.split} split, {run.describe()}")
    print(retrieval.format_table(result))
    name = FLAGS.split if FLAGS.stage is None else f"{FLAGS.split}_stage{stage}"
    print(f"written: {evaluation.write_result(result, config.workdir, name)}")


if __name__ == "__main__":
    app.run(main)
