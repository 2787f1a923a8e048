"""The report's plots: Recall@K curves and training curves, as PNG files (matplotlib, Agg)."""
from __future__ import annotations

import numpy as np

RECALL_Y_TOP = 103  # headroom: a curve at 100 % stays visible under the plot's top border


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_recall_curves(curves: dict[str, np.ndarray], path: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, RECALL_Y_TOP)
    ax.set_yticks(range(0, 101, 20))
    ax.set_xlim(1, max(len(c) for c in curves.values()))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path

def _number(value) -> float | None:
    """A CSVLogger cell as a float; None for 'NA' (metrics a stage did not log) and blanks."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def plot_training_curves(logs: list[tuple[int, list[dict]]], path: str) -> str:
    """Every loss term per epoch, stages one after another (loss weights change between stages,
    so each stage is its own line segment; a dashed line marks where a stage begins)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    series: dict[str, list[list[tuple[int, float]]]] = {}
    offset, starts = 0, []
    for stage, rows in logs:
        starts.append((offset, stage))
        epochs = [_number(row.get("epoch")) for row in rows]
        epochs = [int(e) if e is not None else i for i, e in enumerate(epochs)]
        segment: dict[str, list[tuple[int, float]]] = {}
        for epoch, row in zip(epochs, rows):
            for key, value in row.items():
                value = _number(value)
                if key and "loss" in key and value is not None:
                    segment.setdefault(key, []).append((offset + epoch + 1, value))
        for key, points in segment.items():
            series.setdefault(key, []).append(points)
        offset += max(epochs) + 1
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (key, segments) in enumerate(sorted(series.items())):
        for j, points in enumerate(segments):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", markersize=3, color=colours[i % len(colours)],
                    label=key if j == 0 else None)
    for x, stage in starts:
        ax.axvline(x + 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.annotate(f"stage {stage}", (x + 0.6, 1.0), xycoords=("data", "axes fraction"),
                    va="bottom", fontsize=8, color="grey")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch (all stages)")
    ax.set_ylabel("loss (epoch mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


