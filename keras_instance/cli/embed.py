"""Embed a gallery into embedding shards: `python -m keras_instance.cli.embed --workdir=runs/demo
--images=folder:PATH|manifest:PATH|shards:PATH|split:test --out=DIR [--kind=image|caption]
[--chunk_size=N] [--tags=a,b] [--export_dir=exports --version=N] [--engine=local|beam ...]`.

Writes DIR/embedding_shards.json and DIR/chunk-*.npz (`keras_instance/retrieval/
embedding_shards.py`), embedded by the served models' own code: the run folder's (with its
test-time settings; the test-time flags may override them) or, with --export_dir, the exported
SavedModels (`image_encoder`/`text_encoder` version --version, default the latest). Killed?
Run the same command again: it finishes the missing chunks. A corrupt image is skipped and
named in the log and in its chunk. --kind=caption embeds captions (manifest: or split:) with
the text encoder.

--engine=beam runs the same chunks as an Apache Beam pipeline (`pip install -e '.[beam]'`):
every flag this program does not know is a Beam pipeline option, e.g. --runner=DirectRunner
--direct_num_workers=4 --direct_running_mode=multi_processing, or another runner's options.
"""
import shlex
import sys

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_run_flags, present_overrides

define_run_flags()
flags.DEFINE_string("images", None, "What to embed: folder:PATH, manifest:PATH (JSON Lines), "
                    "shards:PATH (keras_instance.cli.prepare's output) or split:<train|val|test>.")
flags.DEFINE_string("out", None, "Embedding shard folder to write (or to finish).")
flags.DEFINE_enum("kind", "image", ["image", "caption"],
                  "image: the images, by the image encoder; caption: their captions, by the "
                  "text encoder (manifest: or split: only).")
flags.DEFINE_integer("chunk_size", None, "Items per chunk file (default 4096; a folder being "
                     "finished keeps its own).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Items per encoder call.", lower_bound=1)
flags.DEFINE_list("tags", [], "Metadata tags given to every item (a manifest line's own "
                  "\"tags\" list is added).")
flags.DEFINE_string("export_dir", None, "Use the exported SavedModels in this folder instead of "
                    "the run folder's weights.")
flags.DEFINE_integer("version", None, "Export version with --export_dir (default: the latest).")
flags.DEFINE_integer("stage", None, "Run-folder stage to use (default: the latest finished).")
flags.DEFINE_enum("engine", "local", ["local", "beam"],
                  "local: this process; beam: an Apache Beam pipeline (unknown flags are "
                  "passed to Beam as pipeline options).")


def parse(argv):
    """absl's flags, and the rest: Beam pipeline options with --engine=beam, else an error
    (before TensorFlow loads, like every program's flag mistakes)."""
    try:
        rest = FLAGS(argv, known_only=True)
    except flags.Error as err:
        sys.exit(f"error: {err}\nSee --help.")
    if rest[1:] and FLAGS.engine != "beam":
        sys.exit(f"error: unknown flag(s) {' '.join(rest[1:])} (Beam pipeline options need "
                 "--engine=beam)\nSee --help.")
    missing = [f"--{name}" for name in ("images", "out") if not FLAGS[name].value]
    if missing:
        sys.exit(f"error: {' and '.join(missing)} must be given\nSee --help.")
    return rest


def main(argv):
    errors.run_reporting_user_errors(lambda: run(argv[1:]))


def run(beam_args):
    from keras_instance.embedding import items
    from keras_instance.embedding.encoder import EncoderSpec
    kind, _ = items.parse_spec(FLAGS.images)  # fail fast, before a model loads
    records = None
    if kind == "split":
        from keras_instance.config import Config
        from keras_instance.data import readers
        records = readers.load(Config.load(FLAGS.workdir).data)
    source = items.open_source(FLAGS.images, FLAGS.kind, FLAGS.tags, records)
    spec = EncoderSpec(FLAGS.kind, None if FLAGS.export_dir else FLAGS.workdir,
                       tuple(sorted(present_overrides().items())), FLAGS.stage,
                       FLAGS.export_dir, FLAGS.version)
    command = shlex.join(["python", "-m", "keras_instance.cli.embed", *sys.argv[1:]])
    if FLAGS.engine == "beam":
        from keras_instance.embedding import beam_job
        beam_job.run(FLAGS.out, source, spec, FLAGS.chunk_size, FLAGS.batch_size, command,
                     beam_args)
        return
    from keras_instance.embedding import local_job
    local_job.run(FLAGS.out, source, spec, FLAGS.chunk_size, FLAGS.batch_size, command)


if __name__ == "__main__":
    app.run(main, flags_parser=parse)
