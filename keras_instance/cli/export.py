"""Export a trained run for TF Serving: `python -m keras_instance.cli.export --workdir=runs/demo
--export_dir=exports/ [--version=N]`.

Writes `exports/image_encoder/<N>/` and `exports/text_encoder/<N>/` (raw-input SavedModels, see
`keras_instance/export/served_encoders.py`), `exports/models.config` (base paths under
--base_path, the folder where `exports/` is mounted inside the tensorflow/serving container,
/models by default) and, in the run folder, `image_encoder.keras` / `text_encoder.keras` (Keras
models that give the served embeddings; see `keras_instance/export/encoders.py`) and
`model.keras` (the whole dual-path training model: logits and post-ReLU features). N defaults to
one more than the largest existing version.
Uses the run's saved config; the test-time flags (--test_feature, --test_geometry, …) may
override it.
"""

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_run_flags, load_run

define_run_flags()
flags.DEFINE_string("export_dir", "exports", "TF Serving model base folder to write into.")
flags.DEFINE_integer("version", None, "Version number to write; default: 1 + largest existing.")
flags.DEFINE_string("base_path", "/models",
                    "Where export_dir is mounted in the tensorflow/serving container "
                    "(models.config base paths).")
flags.DEFINE_boolean("save_keras", True,
                     "Also write <workdir>/image_encoder.keras, text_encoder.keras (the served "
                     "embeddings as Keras models) and model.keras (the training model).")


def main(argv):
    del argv
    errors.run_reporting_user_errors(run)


def run():
    from keras_instance.export import encoders, publish
    from keras_instance.export.served_model import IMAGE_MODEL, TEXT_MODEL
    trained = load_run()
    config, dual, vocab = trained.config, trained.dual, trained.vocab
    result = publish.export_encoders(config, dual, vocab, FLAGS.export_dir, FLAGS.version,
                                     FLAGS.base_path)
    print(f"{trained.describe()} exported as version {result['version']}:")
    for key in (IMAGE_MODEL, TEXT_MODEL, "models_config"):
        print(f"  {result[key]}")
    if FLAGS.save_keras:
        for path in encoders.save_encoders(config, dual, vocab, config.workdir):
            print(f"  {path}")
        print(f"  {encoders.save_keras_model(dual, config.workdir)}")


if __name__ == "__main__":
    app.run(main)
