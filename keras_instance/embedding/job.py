"""What both embedding jobs share: the shard folder's header (checked before any work) and one
chunk of work. The single-machine job (`local_job`) and the Beam pipeline (`beam_job`) call the
same `embed_chunk`, so they write the same chunk files.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

from keras_instance.embedding.encoder import Encoder, EncoderSpec
from keras_instance.embedding.items import ItemSource, Loaded
from keras_instance.retrieval import embedding_shards as shards

DEFAULT_CHUNK_SIZE = 4096
DEFAULT_BATCH_SIZE = 64


@dataclasses.dataclass
class Plan:
    """A shard folder to fill: its header and the chunks still missing."""
    out: str
    header: dict
    missing: list[int]

    @property
    def chunk_size(self) -> int:
        return self.header["chunk_size"]


def _differences(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new))
                for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


def _short(description: dict) -> str:
    if description.get("source") == "export":
        return f"export {description.get('saved_model')}"
    return f"run {description.get('workdir')} (stage {description.get('stage')})"


def plan(out: str, source: ItemSource, spec: EncoderSpec, chunk_size: int | None = None,
         command: str = "", dim_feature=None) -> Plan:
    """The header `out` has or gets, and its missing chunks. An existing folder must hold the
    same items embedded by the same encoder (one-line ValueError saying what differs);
    `dim_feature` () -> (dim, feature) is called (it loads the model) only for a new folder."""
    description, fingerprint = spec.describe()
    encoder = {"fingerprint": fingerprint, "description": description}
    if os.path.exists(os.path.join(out, shards.HEADER_FILE)):
        header = shards.read_header(out)
        wrong = []
        if header["kind"] != source.kind:
            wrong.append(f"kind {header['kind']} -> {source.kind}")
        old = header["encoder"]["description"]
        if old.get("source") != description["source"]:
            wrong.append(f"encoder {_short(old)} -> {_short(description)}")
        elif header["encoder"]["fingerprint"] != fingerprint:
            wrong += (_differences(old, description, "encoder.")
                      or [f"encoder weights (fingerprint {header['encoder']['fingerprint']} -> "
                          f"{fingerprint})"])
        if header["source"]["fingerprint"] != source.description["fingerprint"]:
            wrong.append(f"items: {header['source']['spec']} with {header['source']['items']} "
                         f"then, {source.description['spec']} with {len(source)} now, ids, "
                         "paths, captions or tags differ")
        if chunk_size and chunk_size != header["chunk_size"]:
            wrong.append(f"chunk_size {header['chunk_size']} -> {chunk_size}")
        if wrong:
            raise ValueError(f"{out} holds embeddings of other settings ({'; '.join(wrong)}): "
                             "rerun with the settings it was started with, or write to a new "
                             "--out")
    else:
        dim, feature = dim_feature()
        header = shards.make_header(source.kind, dim, feature, encoder, source.description,
                                    len(source), chunk_size or DEFAULT_CHUNK_SIZE,
                                    command=command)
        shards.write_header(out, header)
    for name in os.listdir(out):  # left by a job killed while writing (one job per folder)
        if ".npz.tmp-" in name:
            os.remove(os.path.join(out, name))
    return Plan(out, header, shards.missing_chunks(out, header))


def _reason(err: tf.errors.OpError) -> str:
    """A check/decode failure in one line, without TF's node names: "empty (zero bytes)"."""
    found = re.search(r"assertion failed: \[(.*?)\]\s*(\n|$)", err.message)
    lines = [line for line in err.message.splitlines()
             if line.strip() and "{{" not in line and "execution error" not in line]
    text = found.group(1) if found else (lines[0] if lines else type(err).__name__)
    return re.sub(r"^images\[\d+\]:? ?(is )?|\s*\[Op:.*$", "", text.strip())


def embed_items(encoder: Encoder, loaded: list[Loaded], batch_size: int,
                on_batch=None) -> np.ndarray:
    """Embeddings [n, D] of the items without an error. A batch that fails is retried item by
    item, so a bad image only sets its own `error` (InvalidArgumentError: checks, decoding).
    `on_batch(n)` is told the items of each batch done (progress)."""
    rows = []
    for start in range(0, len(loaded), batch_size):
        if on_batch and start:
            on_batch(batch_size)
        batch = [item for item in loaded[start:start + batch_size] if not item.error]
        if not batch:
            continue
        try:
            rows.append(encoder.embed([item.data for item in batch]))
            continue
        except tf.errors.InvalidArgumentError:
            pass
        for item in batch:
            try:
                rows.append(encoder.embed([item.data]))
            except tf.errors.InvalidArgumentError as err:
                item.error = _reason(err)
    return (np.concatenate(rows) if rows else np.zeros([0, encoder.dim], np.float32))


def embed_chunk(plan_: Plan, index: int, source: ItemSource, encoder: Encoder,
                batch_size: int = DEFAULT_BATCH_SIZE, log=print, on_batch=None
                ) -> tuple[int, int]:
    """Embed chunk `index` and write its file (atomically); (rows, skipped). Skipped items are
    logged one line each, with their path, and listed in the chunk."""
    start = index * plan_.chunk_size
    loaded = source.load(start, min(start + plan_.chunk_size, len(source)))
    embeddings = embed_items(encoder, loaded, batch_size, on_batch)
    good = [x.item for x in loaded if not x.error]
    skipped = [dict(id=x.item.id, path=x.item.path, error=x.error) for x in loaded if x.error]
    for s in skipped:
        log(f"skipped {s['path'] or s['id']}: {s['error']}")
    shards.write_chunk(plan_.out, index, embeddings, [i.id for i in good],
                       [i.path for i in good], [i.caption for i in good],
                       [list(i.tags) for i in good], skipped)
    return len(good), len(skipped)
