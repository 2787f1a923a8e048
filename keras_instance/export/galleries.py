"""Galleries the top-k indexes search: a dataset split or a folder of images, embedded.

`split:<name>` (that split of the run's dataset: its images for text_to_image, its captions for
image_to_text) or `folder:<path>` (every image file below the folder, ids = relative paths with
"/"). Embeddings come from `retrieval.embeddings` with the run's test-time settings, so the
index searches exactly what evaluation ranks. Metadata served with each hit: an image's path
(relative to the dataset folder, or to the gallery folder) and its record's captions (" | "
between them; none for a folder); a caption's own text and its image's path.

Embedding shards (`retrieval.embedding_shards`) are the other source of a gallery: embedded
once, at scale, by `keras_instance.cli.embed`, and never encoded again by the index.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from keras_instance.config import Config
from keras_instance.data.records import split_records
from keras_instance.model.dual_path import DualPath
from keras_instance.retrieval import embeddings
from keras_instance.text import tokenizer

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class GallerySpec:
    """`split:<name>` or `folder:<path>` as given on the command line."""
    kind: str   # "split" | "folder"
    value: str

    @classmethod
    def parse(cls, spec: str) -> "GallerySpec":
        kind, sep, value = (spec or "").partition(":")
        if not sep or kind not in ("split", "folder") or not value:
            raise ValueError(f"--gallery {spec!r}: expected split:<train|val|test> or "
                             "folder:<path to a folder of images>")
        if kind == "folder" and not os.path.isdir(value):
            raise FileNotFoundError(f"--gallery {spec!r}: {value!r} is not a folder")
        return cls(kind, value)


CAPTION_SEPARATOR = " | "


@dataclasses.dataclass
class ImageGallery:
    ids: list[str]
    paths: list[str]      # files to embed
    embeddings: np.ndarray | None = None  # [G, D] float32, L2-normalised
    shown_paths: list[str] | None = None  # served with each hit (default: paths)
    captions: list[str] | None = None     # the record's captions, joined


@dataclasses.dataclass
class CaptionGallery:
    ids: list[str]        # "<image_id>#<n>", n = the caption's position in its record
    captions: list[str]
    embeddings: np.ndarray | None = None
    paths: list[str] | None = None  # the image each caption describes


def folder_images(folder: str) -> tuple[list[str], list[str]]:
    """(ids, paths) of every image file below `folder`, sorted by id (relative path, "/")."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(root, name)
                found.append((os.path.relpath(path, folder).replace(os.sep, "/"), path))
    found.sort()
    if not found:
        raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) below {folder!r}")
    return [i for i, _ in found], [p for _, p in found]


def _shown(path: str, data_dir: str | None) -> str:
    """A record's image path as served: relative to the dataset folder when below it."""
    if data_dir and os.path.abspath(path).startswith(os.path.abspath(data_dir) + os.sep):
        return os.path.relpath(path, data_dir).replace(os.sep, "/")
    return path


def image_gallery(spec: GallerySpec, records=None, data_dir: str | None = None) -> ImageGallery:
    """The gallery's images: a dataset split's (ids = image ids) or a folder's."""
    if spec.kind == "folder":
        ids, paths = folder_images(spec.value)
        return ImageGallery(ids, paths, shown_paths=list(ids), captions=[""] * len(ids))
    chosen = split_records(records, spec.value)
    if not chosen:
        raise ValueError(f"split {spec.value!r} of the dataset has no images")
    return ImageGallery([r.image_id for r in chosen], [r.image_path for r in chosen],
                        shown_paths=[_shown(r.image_path, data_dir) for r in chosen],
                        captions=[CAPTION_SEPARATOR.join(r.captions) for r in chosen])


def caption_gallery(records, split: str, data_dir: str | None = None) -> CaptionGallery:
    """Every caption of `split`, in evaluation's order (record by record)."""
    chosen = split_records(records, split)
    ids = [f"{r.image_id}#{n}" for r in chosen for n in range(len(r.captions))]
    captions = [c for r in chosen for c in r.captions]
    if not captions:
        raise ValueError(f"split {split!r} of the dataset has no captions")
    paths = [_shown(r.image_path, data_dir) for r in chosen for _ in r.captions]
    return CaptionGallery(ids, captions, paths=paths)


def embed_image_gallery(config: Config, dual: DualPath, gallery: ImageGallery) -> ImageGallery:
    gallery.embeddings = embeddings.config_image_embeddings(config, dual, gallery.paths)
    return gallery


def embed_caption_gallery(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary,
                          gallery: CaptionGallery) -> CaptionGallery:
    tokens = tokenizer.encode_captions(gallery.captions, vocab, config.data.max_length)
    gallery.embeddings = embeddings.config_token_embeddings(config, dual, tokens)
    return gallery
