"""Embedding shards: a gallery's embeddings on disk, in chunks, so it is embedded once and indexed
many times, and a job killed part-way (or spread over many machines) loses at most one chunk.

    <folder>/embedding_shards.json   header: format, kind, dim, feature, encoder, source,
                                     total_items, chunk_size, num_chunks (written first)
    <folder>/chunk-00000.npz …        chunk i: items [i*C, (i+1)*C) of the source's fixed order

A chunk holds `embeddings` float32 [n, D] (L2-normalised), `ids`, `paths`, `captions`, `tags`
(one comma-joined string per item) and the items it skipped (`skipped_ids`, `skipped_paths`,
`skipped_errors`: unreadable images), all as plain numpy arrays: `np.load(allow_pickle=False)`
reads them. Each chunk is written under a temporary name and renamed, so a chunk file that exists
is whole; the same chunk index always holds the same items, whoever writes it.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import uuid
from typing import Sequence

import numpy as np

FORMAT = "keras_instance.embedding_shards"
FORMAT_VERSION = 1
HEADER_FILE = "embedding_shards.json"
KINDS = ("image", "caption")
_CHECKED = ("kind", "dim", "feature", "encoder")  # what folders read together must share
_SHOW = 5  # offenders named in one message


@dataclasses.dataclass
class EmbeddingTable:
    embeddings: np.ndarray   # [N, D] float32, L2-normalised rows (the served embedding)
    ids: list[str]           # unique item ids
    paths: list[str]         # image path or URL per item ("" for caption items)
    captions: list[str]      # caption text per item ("" if none)
    tags: list[list[str]]    # metadata tags per item (possibly empty lists)
    kind: str                # "image" | "caption"
    header: dict             # dim, feature, kind, encoder description/fingerprint, source
    skipped: list[dict] = dataclasses.field(default_factory=list)  # {id, path, error}


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}.npz"


def num_chunks(total_items: int, chunk_size: int) -> int:
    return -(-int(total_items) // int(chunk_size))


def _atomic_write(path: str, write) -> str:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the name appears, even across a crash
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def make_header(kind: str, dim: int, feature: str, encoder: dict, source: dict,
                total_items: int, chunk_size: int, **extra) -> dict:
    """The header of a folder; `encoder` holds "fingerprint" and "description", `source` what
    was embedded; `extra` e.g. "command" (how to finish the folder, quoted by `read_shards`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "dim": int(dim),
            "feature": feature, "encoder": encoder, "source": source,
            "total_items": int(total_items), "chunk_size": int(chunk_size),
            "num_chunks": num_chunks(total_items, chunk_size), **extra}


def write_header(folder: str, header: dict) -> str:
    os.makedirs(folder, exist_ok=True)
    body = (json.dumps(header, indent=1, sort_keys=True) + "\n").encode()
    return _atomic_write(os.path.join(folder, HEADER_FILE), lambda f: f.write(body))


def read_header(folder: str) -> dict:
    path = os.path.join(folder, HEADER_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {folder!r} is not an embedding shard folder "
                                "(write one with python -m keras_instance.cli.embed --out=…)")
    with open(path) as f:
        header = json.load(f)
    if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not {FORMAT} version {FORMAT_VERSION} (found "
                         f"{header.get('format')!r} {header.get('format_version')!r})")
    return header


def write_chunk(folder: str, index: int, embeddings: np.ndarray, ids: Sequence[str],
                paths: Sequence[str], captions: Sequence[str], tags: Sequence[Sequence[str]],
                skipped: Sequence[dict] = ()) -> str:
    """Write chunk `index` atomically: a chunk file that exists is always whole."""
    embeddings = np.asarray(embeddings, np.float32).reshape(len(ids), -1)
    if not len(ids) == len(paths) == len(captions) == len(tags):
        raise ValueError(f"chunk {index}: {len(ids)} ids, {len(paths)} paths, "
                         f"{len(captions)} captions, {len(tags)} tag lists")
    norms = np.linalg.norm(embeddings, axis=1)
    if len(norms) and np.abs(norms - 1).max() > 1e-3:
        raise ValueError(f"chunk {index}: embeddings must be L2-normalised rows")
    bad = [t for item in tags for t in item if "," in t]
    if bad:
        raise ValueError(f"tags may not contain commas: {bad[:_SHOW]}")

    def text(values):
        return np.array([str(v) for v in values], dtype=np.str_).reshape(-1)
    arrays = dict(embeddings=embeddings, ids=text(ids), paths=text(paths),
                  captions=text(captions), tags=text(",".join(t) for t in tags),
                  skipped_ids=text(s["id"] for s in skipped),
                  skipped_paths=text(s["path"] for s in skipped),
                  skipped_errors=text(s["error"] for s in skipped))
    return _atomic_write(os.path.join(folder, chunk_name(index)),
                         lambda f: np.savez(f, **arrays))


def read_chunk(folder: str, index: int) -> dict:
    with np.load(os.path.join(folder, chunk_name(index)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def missing_chunks(folder: str, header: dict) -> list[int]:
    present = set(os.listdir(folder))
    return [i for i in range(header["num_chunks"]) if chunk_name(i) not in present]


def read_shards(folders: str | Sequence[str]) -> EmbeddingTable:
    """Every row of complete shard folders, concatenated in order. Refuses an incomplete folder,
    folders embedded with different encoders/kinds/dims, and ids found twice."""
    folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    if not folders:
        raise ValueError("read_shards: no folders given")
    headers = [read_header(f) for f in folders]
    for folder, header in zip(folders, headers):
        missing = missing_chunks(folder, header)
        if missing:
            names = ", ".join(chunk_name(i) for i in missing[:_SHOW])
            how = header.get("command") or f"the embed command with --out={folder}"
            raise ValueError(f"{folder} is incomplete: {len(missing)} of {header['num_chunks']} "
                             f"chunks missing ({names}{', …' if len(missing) > _SHOW else ''}); "
                             f"finish it by rerunning: {how}")
        for key in _CHECKED:
            if header[key] != headers[0][key]:
                raise ValueError(f"{folder} and {folders[0]} differ in {key} ({header[key]!r} vs "
                                 f"{headers[0][key]!r}): shards read together must come from "
                                 "one encoder; embed both with the same one")
    parts, ids, paths, captions, tags, skipped = [], [], [], [], [], []
    for folder, header in zip(folders, headers):
        for i in range(header["num_chunks"]):
            chunk = read_chunk(folder, i)
            expected = min(header["chunk_size"], header["total_items"] - i * header["chunk_size"])
            if len(chunk["ids"]) + len(chunk["skipped_ids"]) != expected:
                raise ValueError(f"{folder}/{chunk_name(i)} holds {len(chunk['ids'])} rows and "
                                 f"{len(chunk['skipped_ids'])} skipped items, expected {expected} "
                                 "in all: it was written for another item list; delete it and "
                                 "rerun the embed command")
            parts.append(chunk["embeddings"].reshape(-1, header["dim"]))
            ids += chunk["ids"].tolist()
            paths += chunk["paths"].tolist()
            captions += chunk["captions"].tolist()
            tags += [t.split(",") if t else [] for t in chunk["tags"].tolist()]
            skipped += [dict(id=a, path=b, error=c) for a, b, c in zip(
                chunk["skipped_ids"].tolist(), chunk["skipped_paths"].tolist(),
                chunk["skipped_errors"].tolist())]
    twice = [item for item, n in collections.Counter(ids).items() if n > 1]
    if twice:
        raise ValueError(f"{len(twice)} id(s) appear more than once across {', '.join(folders)}: "
                         f"{', '.join(map(repr, twice[:_SHOW]))}; embed each item into one "
                         "folder only")
    header = dict(headers[0], folders=[str(f) for f in folders], rows=len(ids))
    return EmbeddingTable(np.concatenate(parts).astype(np.float32, copy=False), ids, paths,
                          captions, tags, header["kind"], header, skipped)


def write_table(folder: str, table: EmbeddingTable, chunk_size: int = 4096) -> str:
    """A complete shard folder from arrays (tests, fixtures, an index's own use); refuses a
    folder that already holds shards."""
    if os.path.exists(os.path.join(folder, HEADER_FILE)):
        raise FileExistsError(f"{folder} already holds embedding shards; write to a new folder")
    embeddings = np.asarray(table.embeddings, np.float32)
    given = dict(table.header)
    header = make_header(table.kind, embeddings.shape[1], given.pop("feature", "embedding"),
                         given.pop("encoder", {"fingerprint": "", "description": "unknown"}),
                         given.pop("source", {"description": "write_table"}), len(table.ids),
                         chunk_size, **{k: v for k, v in given.items()
                                        if k not in ("kind", "dim", "total_items", "chunk_size",
                                                     "num_chunks", "format", "format_version",
                                                     "folders", "rows")})
    write_header(folder, header)
    for i in range(header["num_chunks"]):
        rows = slice(i * chunk_size, (i + 1) * chunk_size)
        write_chunk(folder, i, embeddings[rows], table.ids[rows], table.paths[rows],
                    table.captions[rows], table.tags[rows])
    return folder
