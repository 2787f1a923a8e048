"""Build retrieval indexes for TF Serving: `python -m keras_instance.cli.index --workdir=runs/demo
--export_dir=exports/ (--shards=DIR[,DIR…] | --gallery=split:test) [--k=10] [--max_k=100]
[--index=auto|exact|ivf] [--storage=float32|float16|int8] [--nlist=N] [--nprobe=N]`, or a new
version of existing ones: `--add_shards=DIR[,DIR…]` and/or `--remove_ids=FILE|a,b,…`.

Writes `exports/text_to_image/<N>/` (sentences → top-k gallery image ids + scores) and
`exports/image_to_text/<N>/` (image bytes → top-k caption ids, caption text + scores), with the
signatures search, search_by_embedding, embedding_of and index_info besides serving_default (see
`keras_instance/export/served_indexes.py`), and refreshes `exports/models.config`.

--shards: embedding shard folders (`keras_instance.cli.embed`): image shards become
text_to_image's gallery, caption shards image_to_text's; nothing is encoded. --gallery is
`split:<train|val|test>` (the workdir's dataset) or `folder:<path>` (every image below it; ids
are relative paths), embedded in memory; image_to_text's captions come from --caption_split, by
default the gallery's split.
--add_shards / --remove_ids write version N+1 of each index they touch from its latest version
N (N's rows are read back from N; only the added shards' rows are new; k and index options are
N's unless given). N defaults to one more than the largest existing index version. Uses the
workdir's saved config and latest finished stage (for the query encoder).
"""
import os

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_run_flags, load_run

define_run_flags()
flags.DEFINE_string("export_dir", "exports", "TF Serving model base folder to write into.")
flags.DEFINE_list("shards", [], "Embedding shard folders to index (image and/or caption shards).")
flags.DEFINE_string("gallery", None, "split:<train|val|test> or folder:<path of images>, "
                    "embedded in memory (instead of --shards).")
flags.DEFINE_list("add_shards", [], "Shard folders whose rows version N+1 adds to version N.")
flags.DEFINE_string("remove_ids", None, "Ids version N+1 drops from version N: a file (one id "
                    "per line) or a comma-separated list.")
flags.DEFINE_integer("k", None, "Results per query of serving_default (default 10, or version "
                     "N's; at most the gallery size).", lower_bound=1)
flags.DEFINE_integer("max_k", None, "Largest k a search request may ask for (default 100).",
                     lower_bound=1)
flags.DEFINE_enum("index", None, ["auto", "exact", "ivf"],
                  "Search: exact, ivf (inverted file), or auto (default: ivf from 50,000 rows).")
flags.DEFINE_enum("storage", None, ["float32", "float16", "int8"],
                  "How gallery rows are stored (default float32).")
flags.DEFINE_integer("nlist", None, "IVF lists (default 4 sqrt(rows)).", lower_bound=1)
flags.DEFINE_integer("nprobe", None, "IVF lists scanned per query (default: the fewest whose "
                     "recall@10 reaches --target_recall).", lower_bound=1)
flags.DEFINE_float("target_recall", None, "Recall@10 against exact search that an IVF index's "
                   "nprobe is chosen for (default 0.95), measured at build time on the other "
                   "modality's embeddings when both indexes are built together, else on gallery "
                   "rows; float16 and int8 rows as stored.", lower_bound=0.0, upper_bound=1.0)
flags.register_validator("target_recall", lambda v: v is None or v > 0,
                         "--target_recall must be above 0 (and at most 1)")
flags.DEFINE_integer("version", None, "Version number to write; default: 1 + largest existing.")
flags.DEFINE_string("caption_split", None,
                    "Split whose captions form image_to_text's gallery (default: the gallery's).")
flags.DEFINE_list("models", ["text_to_image", "image_to_text"], "Index models to build.")
flags.DEFINE_string("base_path", "/models",
                    "Where export_dir is mounted in the tensorflow/serving container "
                    "(models.config base paths).")


def main(argv):
    del argv
    errors.run_reporting_user_errors(run)


def removal_ids(value: str | None) -> list[str]:
    """--remove_ids: a file of ids (one per line) if such a file exists, else a comma list."""
    if not value:
        return []
    if os.path.isfile(value):
        with open(value) as f:
            return [line.strip() for line in f if line.strip()]
    return [v.strip() for v in value.split(",") if v.strip()]


def run():
    from keras_instance.export import publish
    from keras_instance.export.galleries import GallerySpec
    from keras_instance.export.served_model import IMAGE_TO_TEXT
    updating = bool(FLAGS.add_shards or FLAGS.remove_ids)
    sources = [bool(FLAGS.shards), FLAGS.gallery is not None, updating]
    if sum(sources) != 1:
        raise ValueError("give one of --shards (index embedding shards), --gallery (embed a "
                         "split or folder) or --add_shards/--remove_ids (a new version)")
    spec = GallerySpec.parse(FLAGS.gallery) if FLAGS.gallery else None  # fail before loading
    removed = removal_ids(FLAGS.remove_ids)
    trained = load_run()
    config, dual, vocab = trained.config, trained.dual, trained.vocab
    options = dict(index=FLAGS.index, storage=FLAGS.storage, nlist=FLAGS.nlist,
                   nprobe=FLAGS.nprobe, target_recall=FLAGS.target_recall, max_k=FLAGS.max_k)
    common = dict(version=FLAGS.version, models=FLAGS.models, base_path=FLAGS.base_path)
    if updating:
        result = publish.update_index(config, dual, vocab, FLAGS.export_dir, FLAGS.add_shards,
                                      removed, k=FLAGS.k, **common, **options)
    else:
        records = None
        if spec is not None and (spec.kind == "split" or IMAGE_TO_TEXT in FLAGS.models):
            from keras_instance.data import readers
            records = readers.load(config.data)
        result = publish.build_index(config, dual, vocab, FLAGS.export_dir, spec, records,
                                     k=FLAGS.k or 10, caption_split=FLAGS.caption_split,
                                     shards=FLAGS.shards, **common, **options)
    print(f"{trained.describe()} indexed as version {result['version']}:")
    for key in (*publish.INDEX_MODELS, "models_config"):
        if key in result:
            print(f"  {result[key]}")


if __name__ == "__main__":
    app.run(main)
