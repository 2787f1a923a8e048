"""Export a trained workdir for TF Serving: `python -m keras_instance.export --workdir=runs/demo
--export_dir=exports/ [--version=N]`.

Writes `exports/image_encoder/<N>/` and `exports/text_encoder/<N>/` (raw-input SavedModels, see
`keras_instance/serving_export.py`), `exports/models.config` (base paths under --base_path, the
folder where `exports/` is mounted inside the tensorflow/serving container, /models by default)
and, in the run folder, `image_encoder.keras` / `text_encoder.keras` (Keras models that give the
served embeddings; see `keras_instance/encoders.py`) and `model.keras` (the whole dual-path
training model: logits and post-ReLU features). N defaults to one more than the largest existing
version.
Uses the workdir's saved config; --test_flip_sum / --test_shift_sum / --test_feature may override
it.
"""

from absl import app, flags

from keras_instance import cli_flags

flags.DEFINE_string("export_dir", "exports", "TF Serving model base folder to write into.")
flags.DEFINE_integer("version", None, "Version number to write; default: 1 + largest existing.")
flags.DEFINE_string("base_path", "/models",
                    "Where export_dir is mounted in the tensorflow/serving container "
                    "(models.config base paths).")
flags.DEFINE_boolean("save_keras", True,
                     "Also write <workdir>/image_encoder.keras, text_encoder.keras (the served "
                     "embeddings as Keras models) and model.keras (the training model).")
FLAGS = flags.FLAGS
_EVAL_FLAGS = cli_flags.TEST_TIME_FLAGS


def main(argv):
    del argv
    cli_flags.run_reporting_user_errors(run)


def run():
    from keras_instance import serving_export
    run = cli_flags.load_run(_EVAL_FLAGS)
    config, dual, vocab = run.config, run.dual, run.vocab
    result = serving_export.export(config, dual, vocab, FLAGS.export_dir, FLAGS.version,
                                   FLAGS.base_path)
    print(f"{run.describe()} exported as version {result['version']}:")
    for key in (serving_export.IMAGE_MODEL, serving_export.TEXT_MODEL, "models_config"):
        print(f"  {result[key]}")
    if FLAGS.save_keras:
        from keras_instance import encoders
        for path in encoders.save_encoders(config, dual, vocab, config.workdir):
            print(f"  {path}")
        print(f"  {serving_export.save_keras_model(dual, config.workdir)}")


if __name__ == "__main__":
    app.run(main)
