"""Word importance: which words make an image and a sentence match.

  python -m keras_instance.cli.explain --workdir=runs/demo --image=IMG.png --sentence="a red circle"
      the matching score (cosine of the evaluation embeddings) and, per word, the drop in score
      when that word is removed; a table, and an HTML snippet (--html_out, default
      <workdir>/explain.html) with the words shaded by importance.
  python -m keras_instance.cli.explain --workdir=runs/demo --split=test --top=20
      the words whose removal lowers the score most on average over the split's matching
      (image, caption) pairs (words seen at least --min_count times; up to --max_pairs pairs).

Uses the run's saved config, like evaluate.
"""
import os

from absl import app, flags

from keras_instance.cli import errors
from keras_instance.cli.flags import FLAGS, define_config_flags, define_run_flags, load_run

define_run_flags()
define_config_flags(("seed",))
flags.DEFINE_string("image", None, "Image file to score against --sentence.")
flags.DEFINE_string("sentence", None, "Sentence to explain.")
flags.DEFINE_string("html_out", None,
                    "HTML snippet (default: <workdir>/explain.html, or explain_top_<split>.html).")
flags.DEFINE_string("split", None, "Without --sentence: rank words over this split (test/val).")
flags.DEFINE_integer("top", 20, "How many words --split lists.")
flags.DEFINE_integer("min_count", 5, "--split: only words that occur at least this often.")
flags.DEFINE_integer("max_pairs", 1000, "--split: sample at most this many pairs (0: all).")
flags.DEFINE_integer("stage", None, "Use this stage's model (default: the latest finished).")


def main(argv):
    del argv
    errors.run_reporting_user_errors(run)


def run():
    if FLAGS.sentence is None and FLAGS.split is None:
        raise ValueError("give --image and --sentence, or --split (with --top) for the split's "
                         "most important words")
    if FLAGS.sentence is not None and not FLAGS.image:
        raise ValueError("--sentence needs --image")
    if FLAGS.image and not os.path.exists(FLAGS.image):
        raise FileNotFoundError(f"--image {FLAGS.image!r} does not exist")
    from keras_instance import run_folder
    from keras_instance.data import readers
    from keras_instance.reports import word_importance as explain_words
    run = load_run(FLAGS.stage)
    config, dual, vocab = run.config, run.dual, run.vocab
    print(run.describe())
    if FLAGS.sentence is not None:
        expl = explain_words.explain(config, dual, vocab, FLAGS.image, FLAGS.sentence)
        print(explain_words.format_table(expl))
        snippet = explain_words.explanation_html(expl)
        out = FLAGS.html_out or run_folder.path(config.workdir, run_folder.EXPLAIN)
    else:
        seed = FLAGS.seed if FLAGS["seed"].present else config.seed
        drops = explain_words.split_word_drops(config, dual, vocab, readers.load(config.data),
                                               FLAGS.split, FLAGS.max_pairs, seed)
        rows = explain_words.top_words(drops, FLAGS.top, FLAGS.min_count)
        if not rows:
            print(f"no word occurs {FLAGS.min_count} times or more: lower --min_count")
        print(explain_words.format_top_table(rows, FLAGS.split,
                                             f", {FLAGS.max_pairs or 'all'} pairs at most"))
        snippet = explain_words.top_words_html(rows, FLAGS.split)
        out = FLAGS.html_out or run_folder.path(config.workdir,
                                                run_folder.EXPLAIN.replace(".html",
                                                                           f"_top_{FLAGS.split}.html"))
    with open(out, "w", encoding="utf-8") as f:
        f.write(snippet)
    print(f"written: {out}")


if __name__ == "__main__":
    app.run(main)
