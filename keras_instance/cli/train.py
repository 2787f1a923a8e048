"""Train one stage: `python -m keras_instance.cli.train --flagfile=configs/demo.flags --stage=1`.

Rerun the same command after an interruption: it resumes from the last finished epoch. A
finished stage is left as it is (`--overwrite` trains it again); settings that contradict the run
folder are refused before anything in it is written.
"""
from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, config_from_flags, define_config_flags

define_config_flags()
flags.DEFINE_integer("stage", 1,
                     "1: instance loss, backbone frozen; 2: + ranking loss, all layers.")
flags.DEFINE_boolean("overwrite", False,
                     "Train the stage again from its start, with this command's settings (the "
                     "old stage folder is kept aside until the new one finishes; retraining "
                     "stage 1 also retires the stage 2 trained from it).")


def main(argv):
    del argv
    import keras_instance
    keras_instance.load_library()  # TensorFlow, quietly, once the flags are parsed
    from keras_instance.training import distribute

    def run():
        config = config_from_flags()  # plain Python: no TF op has run yet
        distribute.use_cpu_replicas(config.optim.num_cpu_replicas)  # before any TF op
        from keras_instance.training import stages
        strategy = distribute.make_strategy(config.optim.strategy, config.optim.num_cpu_replicas)
        stages.train(config, FLAGS.stage, strategy, overwrite=FLAGS.overwrite)

    errors.run_reporting_user_errors(run)


if __name__ == "__main__":
    app.run(main)
