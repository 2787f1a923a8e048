"""Train one stage: `python -m keras_instance.train --flagfile=configs/demo.flags --stage=1`.

Rerun the same command after an interruption: it resumes from the last finished epoch. A
finished stage is left as it is (`--overwrite` trains it again); settings that contradict the run
folder are refused before anything in it is written.
"""
import sys

from absl import app, flags

from keras_instance import cli_flags

flags.DEFINE_integer("stage", 1, "1: instance loss, backbone frozen; 2: + ranking loss, all layers.")
flags.DEFINE_boolean("overwrite", False,
                     "Train the stage again from its start, with this command's settings (the "
                     "old stage folder is kept aside until the new one finishes; retraining "
                     "stage 1 also retires the stage 2 trained from it).")


def main(argv):
    del argv
    from keras_instance import distribute  # noqa: logical devices must precede any TF op
    distribute.use_cpu_replicas(cli_flags.FLAGS.num_cpu_replicas)
    from keras_instance import training
    try:
        config = cli_flags.config_from_flags()
        strategy = distribute.make_strategy(cli_flags.FLAGS.strategy,
                                            cli_flags.FLAGS.num_cpu_replicas)
        training.train(config, cli_flags.FLAGS.stage, strategy,
                       overwrite=cli_flags.FLAGS.overwrite)
    except cli_flags.user_errors() as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    app.run(main)
