"""What `cli.export` and `cli.index` write into an export folder: the encoder pair, the index pair,
and models.config listing everything there.

Each write is one release (`layout.release`): its models share a version number (default: the
next free one, checked free for all before anything is written), and models.config pins all of
them at once when all are written. A release carries its run's id (`run_id`: a hash of the
model's weights), so models.config never serves models of two runs side by side.

An index gallery comes from embedding shards (`--shards`: image shards → text_to_image, caption
shards → image_to_text; nothing is encoded), or from a split or folder embedded in memory
(`--gallery`). `update_index` writes version N+1 of an index from its version N: N's rows read
back from N's checkpoint (`gallery_index.read_gallery`), minus the removed ids, then the added
shards' rows, in that order; N itself is left as it is (TF Serving moves to N+1 by itself).
"""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

import numpy as np

from keras_instance.config import Config
from keras_instance.export import layout
from keras_instance.export.galleries import (
    GallerySpec,
    caption_gallery,
    embed_caption_gallery,
    embed_image_gallery,
    image_gallery,
)
from keras_instance.export.gallery_index import read_gallery
from keras_instance.export.served_encoders import image_module, text_module
from keras_instance.export.served_indexes import DEFAULT_K, ImageToTextIndex, TextToImageIndex
from keras_instance.export.served_model import IMAGE_MODEL, IMAGE_TO_TEXT, TEXT_MODEL, TEXT_TO_IMAGE
from keras_instance.model.dual_path import DualPath
from keras_instance.retrieval.embedding_shards import EmbeddingTable, read_shards
from keras_instance.text import tokenizer

INDEX_MODELS = (TEXT_TO_IMAGE, IMAGE_TO_TEXT)
MODEL_OF_KIND = {"image": TEXT_TO_IMAGE, "caption": IMAGE_TO_TEXT}
# --index/--storage/--nlist/--nprobe/--target_recall/--max_k; kept in the index's header for its
# next version.
INDEX_OPTION_NAMES = ("index", "storage", "nlist", "nprobe", "target_recall", "max_k")


def run_id(dual: DualPath) -> str:
    """The run a release comes from: a hash of its model's weight values (16 hex digits)."""
    h = hashlib.sha256()
    for w in dual.full_model().weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]


def export_encoders(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary, export_dir: str,
                    version: int | None = None,
                    base_path: str = layout.CONTAINER_BASE_PATH, log=print) -> dict:
    """Both encoders as one release `version` (default: next free), pinned in models.config.
    Index models of another run leave models.config (they search another embedding space)."""
    with layout.release(export_dir, (IMAGE_MODEL, TEXT_MODEL), version, run_id(dual),
                        base_path, supersede=True, log=log) as release:
        result = {"version": release.version,
                  IMAGE_MODEL: release.save(image_module(config, dual)),
                  TEXT_MODEL: release.save(text_module(config, dual, vocab))}
    return {**result, "models_config": release.config_path}


def _checked_models(models: Sequence[str]) -> list[str]:
    models = list(dict.fromkeys(models))
    unknown = [m for m in models if m not in INDEX_MODELS]
    if unknown or not models:
        raise ValueError(f"index models {unknown or models}: choose from {', '.join(INDEX_MODELS)}")
    return models


def _save_index(config, dual, vocab, release: layout.Release, model, table: EmbeddingTable, k,
                options: dict, log, queries: np.ndarray | None = None) -> tuple[str, int]:
    """One index model over `table` in `release`; the options go into its header. `queries`
    (the other modality's embeddings, when built together) choose an IVF index's nprobe."""
    options = {n: v for n, v in options.items() if n in INDEX_OPTION_NAMES and v is not None}
    header = dict(table.header, index_options=dict(options, k=int(k)))
    common = dict(paths=table.paths, tags=table.tags, header=header, tuning_queries=queries,
                  **options)
    if model == TEXT_TO_IMAGE:
        module = TextToImageIndex(text_module(config, dual, vocab), table.embeddings, table.ids,
                                   k, captions=table.captions, **common)
    else:
        module = ImageToTextIndex(image_module(config, dual), table.embeddings, table.ids,
                                   table.captions, k, **common)
    path = release.save(module)
    log(f"{model}: {module.index.describe()}, top-{module.k} by default, k up to "
        f"{module.index.max_k} per request")
    return path, module.k


def _tables_from_shards(shards: Sequence[str]) -> dict[str, EmbeddingTable]:
    """{model: table} from shard folders, folders of one kind read together."""
    tables = [read_shards(folder) for folder in shards]
    by_model = {}
    for kind, model in MODEL_OF_KIND.items():
        folders = [f for f, t in zip(shards, tables) if t.kind == kind]
        if folders:
            by_model[model] = (tables[shards.index(folders[0])] if len(folders) == 1
                               else read_shards(folders))
    return by_model


def _in_memory_tables(config, dual, vocab, spec: GallerySpec, records, caption_split, models):
    header = {"dim": None, "feature": config.test.test_feature, "source": f"{spec.kind}:"
              f"{spec.value}", "encoder": {"fingerprint": "", "description": config.workdir}}
    tables = {}
    if TEXT_TO_IMAGE in models:
        g = embed_image_gallery(config, dual, image_gallery(spec, records, config.data.data_dir))
        tables[TEXT_TO_IMAGE] = EmbeddingTable(g.embeddings, g.ids, g.shown_paths, g.captions,
                                               [[] for _ in g.ids], "image",
                                               dict(header, dim=g.embeddings.shape[1]))
    if IMAGE_TO_TEXT in models:
        g = embed_caption_gallery(config, dual, vocab, caption_gallery(records, caption_split,
                                                                       config.data.data_dir))
        tables[IMAGE_TO_TEXT] = EmbeddingTable(
            g.embeddings, g.ids, g.paths, g.captions, [[] for _ in g.ids], "caption",
            dict(header, dim=g.embeddings.shape[1], source=f"split:{caption_split} captions"))
    return tables


def build_index(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary, export_dir: str,
                gallery: str | GallerySpec | None = None, records=None, k: int = DEFAULT_K,
                version: int | None = None, caption_split: str | None = None,
                models: Sequence[str] = INDEX_MODELS,
                base_path: str = layout.CONTAINER_BASE_PATH, log=print,
                shards: Sequence[str] = (), **index_options) -> dict:
    """Write the chosen index models as version `version` (default: next free) + models.config.

    From `shards` (embedding shard folders; the models are those of the shards' kinds, of
    `models`), or from `gallery`: `records` (the run's dataset) is needed for `split:` galleries
    and for image_to_text's captions, which come from `caption_split` (default: the gallery's
    split). `index_options`: index, storage, nlist, nprobe, target_recall, max_k
    (`GalleryIndex`); built together, each IVF index chooses nprobe on the other's rows.
    """
    models = _checked_models(models)
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if bool(shards) == (gallery is not None):
        raise ValueError("give either embedding shards (--shards) or a gallery (--gallery)")
    if shards:
        tables = {m: t for m, t in _tables_from_shards(list(shards)).items() if m in models}
        if not tables:
            raise ValueError(f"no shards of the kinds {', '.join(models)} need among "
                             f"{', '.join(shards)} (image shards → {TEXT_TO_IMAGE}, caption "
                             f"shards → {IMAGE_TO_TEXT})")
        models = [m for m in models if m in tables]
    else:
        spec = gallery if isinstance(gallery, GallerySpec) else GallerySpec.parse(gallery)
        if IMAGE_TO_TEXT in models and caption_split is None:
            if spec.kind == "folder":
                raise ValueError("image_to_text needs captions: a folder gallery holds images "
                                 "only, so pass --caption_split=<train|val|test> (or --models="
                                 "text_to_image)")
            caption_split = spec.value
        if records is None and (spec.kind == "split" or IMAGE_TO_TEXT in models):
            raise ValueError("this gallery needs the dataset's records")
        tables = None
    with layout.release(export_dir, models, version, run_id(dual), base_path,
                        log=log) as release:
        if tables is None:
            tables = _in_memory_tables(config, dual, vocab, spec, records, caption_split, models)
        result = {"version": release.version}
        for model in models:
            table = tables[model]
            other = tables.get(IMAGE_TO_TEXT if model == TEXT_TO_IMAGE else TEXT_TO_IMAGE)
            result[model], result["k_" + model] = _save_index(
                config, dual, vocab, release, model, table, k, index_options, log,
                other.embeddings if other is not None else None)
            result["num_" + ("images" if model == TEXT_TO_IMAGE else "captions")] = len(table.ids)
            log(f"{model}: {len(table.ids)} gallery {table.kind}s from "
                f"{table.header.get('source')}")
    result["models_config"] = release.config_path
    return result


# --- version N+1 from version N -----------------------------------------------------------------

def _previous(export_dir: str, model: str) -> tuple[int, EmbeddingTable, np.ndarray | None]:
    number = layout.pinned_versions(export_dir).get(model)  # the version being served
    if number is None:
        raise ValueError(f"{model} has no version in {export_dir} to add to or remove from: "
                         "build one first with --shards or --gallery")
    g = read_gallery(os.path.join(export_dir, model, str(number)))
    header = g["header"]
    kind = "image" if model == TEXT_TO_IMAGE else "caption"
    table = EmbeddingTable(g["embeddings"], g["ids"], g["paths"], g["captions"], g["tags"], kind,
                           header)
    return number, table, g["tuning_queries"]


def _check_same_encoder(model: str, old: dict, new: dict, folders) -> None:
    for key in ("dim", "feature"):
        if old.get(key) is not None and new.get(key) is not None and old[key] != new[key]:
            raise ValueError(f"{folders} differ from {model}'s gallery in {key} ({new[key]!r} vs "
                             f"{old[key]!r}): embed them with the encoder the index was built "
                             "from")
    a = (old.get("encoder") or {}).get("fingerprint")
    b = (new.get("encoder") or {}).get("fingerprint")
    if a and b and a != b:
        raise ValueError(f"{folders} were embedded by another encoder (fingerprint {b}) than "
                         f"{model}'s gallery ({a}): embed them with the same one")


def _updated(old: EmbeddingTable, removed: set, added: EmbeddingTable | None) -> EmbeddingTable:
    """old's rows without `removed`, in old's order, then `added`'s rows in shard order."""
    keep = [i for i, item in enumerate(old.ids) if item not in removed]
    pick = lambda xs: [xs[i] for i in keep]  # noqa: E731
    parts = [old.embeddings[keep]]
    ids, paths, captions, tags = pick(old.ids), pick(old.paths), pick(old.captions), pick(old.tags)
    if added is not None:
        kept = set(ids)
        clash = [i for i in added.ids if i in kept]
        if clash:
            raise ValueError(f"{len(clash)} added id(s) are already in the index: "
                             f"{', '.join(clash[:5])}; remove them too (--remove_ids) to "
                             "replace them")
        parts.append(np.asarray(added.embeddings, np.float32))
        ids, paths = ids + added.ids, paths + added.paths
        captions, tags = captions + added.captions, tags + added.tags
    if not ids:
        raise ValueError("removing these ids would leave the index empty")
    return EmbeddingTable(np.concatenate(parts), ids, paths, captions, tags, old.kind,
                          dict(old.header))


def update_index(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary, export_dir: str,
                 add_shards: Sequence[str] = (), remove_ids: Sequence[str] = (),
                 models: Sequence[str] = INDEX_MODELS, version: int | None = None,
                 k: int | None = None, base_path: str = layout.CONTAINER_BASE_PATH, log=print,
                 **index_options) -> dict:
    """Version N+1 of each index model the change touches, from its latest version N: encodes
    nothing. Index options and k default to N's; an IVF index chooses nprobe on N's queries."""
    models = _checked_models(models)
    added = {m: t for m, t in _tables_from_shards(list(add_shards)).items()} if add_shards else {}
    extra = [m for m in added if m not in models]
    if extra:
        raise ValueError(f"{', '.join(add_shards)} hold {', '.join(extra)} rows, not in --models")
    removed = set(remove_ids)
    previous = {m: _previous(export_dir, m) for m in models
                if m in added or (removed and layout.existing_versions(f"{export_dir}/{m}"))}
    hits = {m: removed & set(t.ids) for m, (_, t, _) in previous.items()}
    unknown = removed - set().union(*hits.values()) if removed else set()
    if unknown:
        raise ValueError(f"{len(unknown)} id(s) to remove are in no index ({', '.join(models)}):"
                         f" {', '.join(sorted(unknown)[:5])}")
    changed = [m for m in models if m in added or hits.get(m)]
    if not changed:
        raise ValueError("nothing to change: give --add_shards and/or --remove_ids")
    tables = {}
    for model in changed:
        number, old, _ = previous[model]
        if model in added:
            _check_same_encoder(model, old.header, added[model].header, ", ".join(add_shards))
        tables[model] = _updated(old, hits[model], added.get(model))
    with layout.release(export_dir, changed, version, run_id(dual), base_path,
                        log=log) as release:
        result = {"version": release.version}
        for model in changed:
            number, old, queries = previous[model]
            table = tables[model]
            stored = dict(old.header.get("index_options", {}))
            old_k = stored.pop("k", DEFAULT_K)
            given = {n: v for n, v in index_options.items() if v is not None}
            if "target_recall" in given and "nprobe" not in given:
                stored.pop("nprobe", None)  # a new target chooses nprobe again
            options = {**stored, **given}
            result[model], result["k_" + model] = _save_index(
                config, dual, vocab, release, model, table, k or old_k, options, log, queries)
            new = len(added[model].ids) if model in added else 0
            result["rows_" + model] = len(table.ids)
            log(f"{model}: version {release.version} = version {number} ({len(old.ids)} rows) "
                f"+ {new} added - {len(hits[model])} removed = {len(table.ids)} rows")
    result["models_config"] = release.config_path
    return result
