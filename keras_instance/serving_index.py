"""Retrieval indexes for TF Serving: raw query in, top-k gallery ids and scores out.

Two SavedModels, written next to the encoders (`serving_export`) in TF Serving's layout:

    exports/
      text_to_image/<version>/    serving_default: sentences string[None]
                                    → ids string[None, k]  (gallery image ids)
                                      scores float32[None, k]
      image_to_text/<version>/    serving_default: images string[None] (JPEG/PNG/... bytes)
                                    → ids string[None, k]  (caption ids "<image_id>#<n>")
                                      captions string[None, k]  (caption text)
                                      scores float32[None, k]

Each holds the query encoder's graph (a `serving_export.TextEncoderModule` /
`ImageEncoderModule`, so the query embedding is exactly the one the encoders serve) and the
gallery as variables: L2-normalised embeddings [G, D] computed with `evaluation.embed_images` /
`embed_token_ids` (identical to in-process evaluation) and the string ids (and caption texts).
Search is `tf.matmul` + `tf.math.top_k`, core ops only; k = min(--k, G).

Ties: scores are ordered descending and equal scores by LOWER gallery index first, the rule of
`retrieval.py`. `tf.math.top_k` documents exactly this ("If two elements are equal, the
lower-index element appears first"), and tests/test_index.py checks it on exact ties.

Galleries: `split:<name>` (that split of the workdir's dataset: its images for text_to_image,
its captions for image_to_text) or `folder:<path>` (every image file below the folder, ids =
relative paths with "/"; captions for image_to_text then come from `caption_split`).
Versions, warmup requests and models.config use `serving_export`'s helpers.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from keras_instance import evaluation, serving_export, text
from keras_instance.config import Config
from keras_instance.data.records import split_records
from keras_instance.model import DualPath

TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_TEXT = "image_to_text"
INDEX_MODELS = (TEXT_TO_IMAGE, IMAGE_TO_TEXT)
DEFAULT_K = 10
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


# --- galleries ------------------------------------------------------------------------------

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


@dataclasses.dataclass
class ImageGallery:
    ids: list[str]
    paths: list[str]
    embeddings: np.ndarray | None = None  # [G, D] float32, L2-normalised


@dataclasses.dataclass
class CaptionGallery:
    ids: list[str]        # "<image_id>#<n>", n = the caption's position in its record
    captions: list[str]
    embeddings: np.ndarray | None = None


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


def image_gallery(spec: GallerySpec, records=None) -> ImageGallery:
    """The gallery's images: a dataset split's (ids = image ids) or a folder's."""
    if spec.kind == "folder":
        return ImageGallery(*folder_images(spec.value))
    chosen = split_records(records, spec.value)
    if not chosen:
        raise ValueError(f"split {spec.value!r} of the dataset has no images")
    return ImageGallery([r.image_id for r in chosen], [r.image_path for r in chosen])


def caption_gallery(records, split: str) -> CaptionGallery:
    """Every caption of `split`, in evaluation's order (record by record)."""
    chosen = split_records(records, split)
    ids = [f"{r.image_id}#{n}" for r in chosen for n in range(len(r.captions))]
    captions = [c for r in chosen for c in r.captions]
    if not captions:
        raise ValueError(f"split {split!r} of the dataset has no captions")
    return CaptionGallery(ids, captions)


def embed_image_gallery(config: Config, dual: DualPath, gallery: ImageGallery) -> ImageGallery:
    gallery.embeddings = evaluation.config_image_embeddings(config, dual, gallery.paths)
    return gallery


def embed_caption_gallery(config: Config, dual: DualPath, vocab: text.Vocabulary,
                          gallery: CaptionGallery) -> CaptionGallery:
    tokens = text.encode_captions(gallery.captions, vocab, config.max_length)
    gallery.embeddings = evaluation.config_token_embeddings(config, dual, tokens)
    return gallery


# --- the index modules ----------------------------------------------------------------------

def _check_gallery(embeddings: np.ndarray, ids: Sequence[str], dim: int, k: int) -> int:
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] != dim:
        raise ValueError(f"gallery embeddings must be [G >= 1, {dim}], got {embeddings.shape}")
    if len(ids) != len(embeddings):
        raise ValueError(f"{len(ids)} gallery ids for {len(embeddings)} embeddings")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return min(int(k), len(ids))


def _string_variable(values: Sequence[str], name: str) -> tf.Variable:
    return tf.Variable(tf.constant(list(values), dtype=tf.string), trainable=False, name=name)


def _search(query: tf.Tensor, gallery: tf.Variable, k: int):
    """Top-k by dot product; equal scores: lower gallery index first (tf.math.top_k's rule)."""
    scores = tf.matmul(query, gallery, transpose_b=True)   # [N, G]
    return tf.math.top_k(scores, k=k, sorted=True)


class TextToImageModule(tf.Module):
    """`serving_default`: sentences [N] → {"ids": [N, k], "scores": [N, k]}."""

    def __init__(self, text_module: serving_export.TextEncoderModule, embeddings: np.ndarray,
                 ids: Sequence[str], k: int = DEFAULT_K):
        super().__init__(name=TEXT_TO_IMAGE)
        embeddings = np.asarray(embeddings, np.float32)
        self.k = _check_gallery(embeddings, ids, text_module.embed_dim, k)
        self.text = text_module
        self.gallery = tf.Variable(embeddings, trainable=False, name="gallery_embeddings")
        self.ids = _string_variable(ids, "gallery_ids")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        query = self.text.serve(sentences)["embedding"]
        top = _search(query, self.gallery, self.k)
        return {"ids": tf.gather(self.ids, top.indices), "scores": top.values}


class ImageToTextModule(tf.Module):
    """`serving_default`: images [N] → {"ids", "captions", "scores"}, each [N, k]."""

    def __init__(self, image_module: serving_export.ImageEncoderModule, embeddings: np.ndarray,
                 ids: Sequence[str], captions: Sequence[str], k: int = DEFAULT_K):
        super().__init__(name=IMAGE_TO_TEXT)
        embeddings = np.asarray(embeddings, np.float32)
        self.k = _check_gallery(embeddings, ids, image_module.embed_dim, k)
        if len(captions) != len(ids):
            raise ValueError(f"{len(captions)} captions for {len(ids)} caption ids")
        self.image = image_module  # decoding, resizing and encoding: the image encoder's own
        self.gallery = tf.Variable(embeddings, trainable=False, name="gallery_embeddings")
        self.ids = _string_variable(ids, "caption_ids")
        self.captions = _string_variable(captions, "captions")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve(self, images):
        query = self.image.serve(images)["embedding"]
        top = _search(query, self.gallery, self.k)
        return {"ids": tf.gather(self.ids, top.indices),
                "captions": tf.gather(self.captions, top.indices), "scores": top.values}


# --- writing --------------------------------------------------------------------------------

def save_text_to_image(module: TextToImageModule, export_dir: str, version: int,
                       name: str = TEXT_TO_IMAGE) -> str:
    sentences = [s.encode("utf-8") for s in serving_export.WARMUP_SENTENCES]
    logs = serving_export.warmup_requests(name, "sentences", [sentences[:1], sentences])
    return serving_export.save_version(module, os.path.join(export_dir, name), version,
                                       {serving_export.SIGNATURE: module.serve}, logs)


def save_image_to_text(module: ImageToTextModule, export_dir: str, version: int,
                       name: str = IMAGE_TO_TEXT) -> str:
    size = module.image.image_size
    jpeg = serving_export.demo_jpeg
    logs = serving_export.warmup_requests(name, "images", [[jpeg(size, 0)],
                                                           [jpeg(size, 1), jpeg(2 * size, 2)]])
    return serving_export.save_version(module, os.path.join(export_dir, name), version,
                                       {serving_export.SIGNATURE: module.serve}, logs)


def build_index(config: Config, dual: DualPath, vocab: text.Vocabulary, export_dir: str,
                gallery: str | GallerySpec, records=None, k: int = DEFAULT_K,
                version: int | None = None, caption_split: str | None = None,
                models: Sequence[str] = INDEX_MODELS,
                base_path: str = serving_export.CONTAINER_BASE_PATH, log=print) -> dict:
    """Write the chosen index models as version `version` (default: next free) + models.config.

    `records` (the workdir's dataset) is needed for `split:` galleries and for image_to_text's
    captions; those come from `caption_split`, by default the gallery's split.
    """
    spec = gallery if isinstance(gallery, GallerySpec) else GallerySpec.parse(gallery)
    models = list(dict.fromkeys(models))
    unknown = [m for m in models if m not in INDEX_MODELS]
    if unknown or not models:
        raise ValueError(f"index models {unknown or models}: choose from {', '.join(INDEX_MODELS)}")
    if IMAGE_TO_TEXT in models and caption_split is None:
        if spec.kind == "folder":
            raise ValueError("image_to_text needs captions: a folder gallery holds images only, "
                             "so pass --caption_split=<train|val|test> (or --models="
                             "text_to_image)")
        caption_split = spec.value
    if records is None and (spec.kind == "split" or IMAGE_TO_TEXT in models):
        raise ValueError("this gallery needs the dataset's records")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")

    os.makedirs(export_dir, exist_ok=True)
    if version is None:
        version = serving_export.next_version(export_dir, INDEX_MODELS)
    if version < 1:
        raise ValueError(f"version must be a positive integer, got {version}")
    for name in models:  # check all before writing any
        taken = os.path.join(export_dir, name, str(version))
        if os.path.exists(taken):
            raise FileExistsError(f"{taken} already exists; versions are never overwritten")

    result = {"version": version}
    if TEXT_TO_IMAGE in models:
        images = embed_image_gallery(config, dual, image_gallery(spec, records))
        module = TextToImageModule(serving_export.text_module(config, dual, vocab),
                                   images.embeddings, images.ids, k)
        result[TEXT_TO_IMAGE] = save_text_to_image(module, export_dir, version)
        result["num_images"], result["k_" + TEXT_TO_IMAGE] = len(images.ids), module.k
        log(f"{TEXT_TO_IMAGE}: {len(images.ids)} gallery images, top-{module.k}")
    if IMAGE_TO_TEXT in models:
        captions = embed_caption_gallery(config, dual, vocab,
                                         caption_gallery(records, caption_split))
        module = ImageToTextModule(serving_export.image_module(config, dual),
                                   captions.embeddings, captions.ids, captions.captions, k)
        result[IMAGE_TO_TEXT] = save_image_to_text(module, export_dir, version)
        result["num_captions"], result["k_" + IMAGE_TO_TEXT] = len(captions.ids), module.k
        log(f"{IMAGE_TO_TEXT}: {len(captions.ids)} gallery captions ({caption_split} split), "
            f"top-{module.k}")
    result["models_config"] = serving_export.write_models_config(export_dir, base_path)
    return result
