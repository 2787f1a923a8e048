"""Build retrieval indexes for TF Serving: `python -m keras_instance.cli.index --workdir=runs/demo
--export_dir=exports/ --gallery=split:test [--k=10] [--version=N] [--caption_split=test]`.

Writes `exports/text_to_image/<N>/` (sentences → top-k gallery image ids + scores) and
`exports/image_to_text/<N>/` (image bytes → top-k caption ids, caption text + scores), see
`keras_instance/export/modules.py`, and refreshes `exports/models.config` to list every model
there. --gallery is `split:<train|val|test>` (the workdir's dataset) or `folder:<path>` (every
image below it; ids are relative paths). image_to_text's captions come from --caption_split,
by default the gallery's split (a folder gallery needs it, or --models=text_to_image).
N defaults to one more than the largest existing index version. Uses the workdir's saved config
and latest finished stage; the test-time flags (--test_feature, --test_geometry, …) may
override it.
"""

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_run_flags, load_run

define_run_flags()
flags.DEFINE_string("export_dir", "exports", "TF Serving model base folder to write into.")
flags.DEFINE_string("gallery", None, "split:<train|val|test> or folder:<path of images>.")
flags.DEFINE_integer("k", 10, "Results per query (at most the gallery size).", lower_bound=1)
flags.DEFINE_integer("version", None, "Version number to write; default: 1 + largest existing.")
flags.DEFINE_string("caption_split", None,
                    "Split whose captions form image_to_text's gallery (default: the gallery's).")
flags.DEFINE_list("models", ["text_to_image", "image_to_text"], "Index models to build.")
flags.DEFINE_string("base_path", "/models",
                    "Where export_dir is mounted in the tensorflow/serving container "
                    "(models.config base paths).")
flags.mark_flag_as_required("gallery")


def main(argv):
    del argv
    errors.run_reporting_user_errors(run)


def run():
    from keras_instance.data import readers
    from keras_instance.export import publish
    from keras_instance.export.galleries import GallerySpec
    from keras_instance.export.modules import IMAGE_TO_TEXT
    spec = GallerySpec.parse(FLAGS.gallery)  # fail fast, before loading a model
    run = load_run()
    config, dual, vocab = run.config, run.dual, run.vocab
    needs_records = spec.kind == "split" or IMAGE_TO_TEXT in FLAGS.models
    records = readers.load(config.data) if needs_records else None
    result = publish.build_index(config, dual, vocab, FLAGS.export_dir, spec, records,
                                 k=FLAGS.k, version=FLAGS.version,
                                 caption_split=FLAGS.caption_split, models=FLAGS.models,
                                 base_path=FLAGS.base_path)
    print(f"{run.describe()} indexed as version {result['version']}:")
    for key in (*publish.INDEX_MODELS, "models_config"):
        if key in result:
            print(f"  {result[key]}")


if __name__ == "__main__":
    app.run(main)
