"""A cache array built in chunks that survives kill -9: both frozen-backbone caches use it.

The build writes `<name>.partial.npy` (a memory-mapped array of the final shape) beside
`<name>.partial.json`, which counts the rows finished and flushed; a killed build resumes at
that row and gives the same file as an uninterrupted one (the rows' inputs depend only on their
position: `feature_cache.view_batches`). The finished file is renamed into place, so a
half-built cache is never mistaken for a whole one.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Iterable

import numpy as np

CHUNK_ROWS = 256  # rows between two saves of progress


def build(path: str, shape: tuple, dtype, batches: Callable[[int], Iterable[np.ndarray]],
          what: str, describe: str, log=print, report=None,
          on_chunk: Callable[[int], None] | None = None, chunk_rows: int | None = None) -> None:
    """Fill `path` (.npy of `shape`, `dtype`) from `batches(start)`, which yields consecutive row
    blocks from row `start` on; resumes an interrupted build of the same shape."""
    chunk = chunk_rows or CHUNK_ROWS
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial, progress = path[:-4] + ".partial.npy", path[:-4] + ".partial.json"
    done = _resumable(partial, progress, shape)
    if done:
        rows = np.lib.format.open_memmap(partial, mode="r+")
        log(f"{what}: resuming at image {done} of {shape[0]} → {path}")
    else:
        rows = np.lib.format.open_memmap(partial, mode="w+", dtype=dtype, shape=shape)
        log(f"{what}: {describe} ({rows.nbytes / 2**30:.2f} GiB) → {path}")
    report = report(done) if report else (lambda n: None)
    row = done
    for block in batches(done):
        n = len(block)
        rows[row:row + n] = block
        row += n
        report(n)
        if row // chunk != (row - n) // chunk or row == shape[0]:
            rows.flush()
            _write_progress(progress, row, shape)
            if on_chunk:
                on_chunk(row)
    if row != shape[0]:
        raise RuntimeError(f"{what}: the inputs gave {row} of {shape[0]} rows")
    rows.flush()
    del rows
    os.replace(partial, path)
    os.remove(progress)


def _resumable(partial: str, progress: str, shape: tuple) -> int:
    """Rows already done by an interrupted build of this very cache (0: start afresh)."""
    if not (os.path.exists(partial) and os.path.exists(progress)):
        return 0
    with open(progress) as f:
        state = json.load(f)
    return int(state["done"]) if tuple(state.get("shape", ())) == tuple(shape) else 0


def _write_progress(progress: str, done: int, shape: tuple) -> None:
    tmp = progress + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"done": done, "shape": list(shape)}, f)
    os.replace(tmp, progress)
