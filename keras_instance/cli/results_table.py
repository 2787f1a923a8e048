"""Markdown results table from evaluated runs: `python -m keras_instance.cli.results_table`.

    python -m keras_instance.cli.results_table --split=test \
        --row="Stage I, instance loss=runs/flickr8k:1" --row="Stage I + II=runs/flickr8k"

Each --row is `label=workdir[:stage]`; it reads `<workdir>/eval_<split>[_stage<N>].json` (written
by keras_instance.cli.evaluate) and, when present, `<workdir>/wall_seconds_stage<N>` or
`<workdir>/wall_seconds` (written by the Makefile's timed targets) for the wall-clock column.
"""
import os

from absl import app, flags

flags.DEFINE_multi_string("row", [], "label=workdir[:stage]")
flags.DEFINE_string("split", "test", "Evaluated split.")
FLAGS = flags.FLAGS


def row_cells(label: str, spec: str, split: str) -> list[str]:
    from keras_instance.retrieval.results import read_result
    workdir, _, stage = spec.partition(":")
    result = read_result(workdir, split, stage)
    wall = "—"
    wall_path = os.path.join(workdir, f"wall_seconds_stage{stage}")
    if not stage or not os.path.exists(wall_path):
        wall_path = os.path.join(workdir, "wall_seconds")
    if os.path.exists(wall_path):
        with open(wall_path) as f:
            wall = f"{float(f.read().strip()) / 60:.1f} min"
    recalls = [f"{result[d][k]:.1f}" for d in ("i2t", "t2i") for k in ("r1", "r5", "r10")]
    return [label, *recalls, f"{result['rsum']:.1f}", wall]


def main(argv):
    del argv
    header = ["model", "i2t R@1", "R@5", "R@10", "t2i R@1", "R@5", "R@10", "rsum", "wall"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    try:
        for item in FLAGS.row:
            label, sep, spec = item.rpartition("=")
            if not sep:
                raise ValueError(f"--row {item!r}: expected label=workdir[:stage]")
            lines.append("| " + " | ".join(row_cells(label, spec, FLAGS.split)) + " |")
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}")
    print("\n".join(lines))


if __name__ == "__main__":
    app.run(main)
