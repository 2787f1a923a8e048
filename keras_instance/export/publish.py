"""What `cli.export` and `cli.index` write into an export folder: the encoder pair, the index pair,
and models.config listing everything there.

Both pairs share a version number across their two models, chosen (default: the next free one)
and checked free for both before anything is written.
"""
from __future__ import annotations

from typing import Sequence

from keras_instance.config import Config
from keras_instance.export import layout
from keras_instance.export.galleries import (
    GallerySpec,
    caption_gallery,
    embed_caption_gallery,
    embed_image_gallery,
    image_gallery,
)
from keras_instance.export.modules import (
    DEFAULT_K,
    IMAGE_MODEL,
    IMAGE_TO_TEXT,
    TEXT_MODEL,
    TEXT_TO_IMAGE,
    ImageToTextModule,
    TextToImageModule,
    image_module,
    text_module,
)
from keras_instance.model.dual_path import DualPath
from keras_instance.text import tokenizer

INDEX_MODELS = (TEXT_TO_IMAGE, IMAGE_TO_TEXT)


def export_encoders(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary, export_dir: str,
                    version: int | None = None,
                    base_path: str = layout.CONTAINER_BASE_PATH) -> dict:
    """Both encoders as version `version` (default: next free) plus models.config."""
    version = layout.claim_version(export_dir, (IMAGE_MODEL, TEXT_MODEL), version)
    return {"version": version,
            IMAGE_MODEL: layout.save(image_module(config, dual), export_dir, version),
            TEXT_MODEL: layout.save(text_module(config, dual, vocab), export_dir, version),
            "models_config": layout.write_models_config(export_dir, base_path)}


def build_index(config: Config, dual: DualPath, vocab: tokenizer.Vocabulary, export_dir: str,
                gallery: str | GallerySpec, records=None, k: int = DEFAULT_K,
                version: int | None = None, caption_split: str | None = None,
                models: Sequence[str] = INDEX_MODELS,
                base_path: str = layout.CONTAINER_BASE_PATH, log=print) -> dict:
    """Write the chosen index models as version `version` (default: next free) + models.config.

    `records` (the run's dataset) is needed for `split:` galleries and for image_to_text's
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
    version = layout.claim_version(export_dir, models, version)

    result = {"version": version}
    if TEXT_TO_IMAGE in models:
        images = embed_image_gallery(config, dual, image_gallery(spec, records))
        module = TextToImageModule(text_module(config, dual, vocab), images.embeddings,
                                   images.ids, k)
        result[TEXT_TO_IMAGE] = layout.save(module, export_dir, version)
        result["num_images"], result["k_" + TEXT_TO_IMAGE] = len(images.ids), module.k
        log(f"{TEXT_TO_IMAGE}: {len(images.ids)} gallery images, top-{module.k}")
    if IMAGE_TO_TEXT in models:
        captions = embed_caption_gallery(config, dual, vocab,
                                         caption_gallery(records, caption_split))
        module = ImageToTextModule(image_module(config, dual), captions.embeddings,
                                   captions.ids, captions.captions, k)
        result[IMAGE_TO_TEXT] = layout.save(module, export_dir, version)
        result["num_captions"], result["k_" + IMAGE_TO_TEXT] = len(captions.ids), module.k
        log(f"{IMAGE_TO_TEXT}: {len(captions.ids)} gallery captions ({caption_split} split), "
            f"top-{module.k}")
    result["models_config"] = layout.write_models_config(export_dir, base_path)
    return result
