"""Readers from the datasets' own file layouts into ``list[Record]``, one module per family.

Each reader fails with a DatasetError naming the file (and line, where there are lines) and the
format it expected, instead of guessing. ``read_dataset`` picks the reader by name and, by
default, validates the result so broken data never reaches training.

Labels: one unique int per image (its index in the returned list), except CUHK-PEDES, where the
label is the person id so that all images of one person form one class.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from keras_instance.data.readers import (  # noqa: F401  (register)
    coco,
    cuhk_pedes,
    flickr,
    karpathy,
    manifest,
)
from keras_instance.data.readers.coco import read_coco_captions
from keras_instance.data.readers.cuhk_pedes import read_cuhk_pedes
from keras_instance.data.readers.flickr import read_flickr8k, read_flickr30k
from keras_instance.data.readers.karpathy import read_karpathy_json
from keras_instance.data.readers.manifest import read_manifest
from keras_instance.data.readers.registry import READERS, Reader
from keras_instance.data.records import DatasetError, Record, validate_records

__all__ = ["DATASET_READERS", "READERS", "Reader", "load", "read_coco_captions",
           "read_cuhk_pedes", "read_dataset", "read_flickr8k", "read_flickr30k",
           "read_karpathy_json", "read_manifest", "reader"]

# name -> read function, in registration order (the --dataset choices)
DATASET_READERS: dict[str, Callable[[Path], list[Record]]] = {
    name: r.read for name, r in READERS.items()}


def reader(name: str) -> Callable[[Path], list[Record]]:
    """The registered reader of dataset `name` (the --dataset choices)."""
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(READERS)}")
    return READERS[name].read


def load(data) -> list[Record]:
    """The records a run's data settings (`config.data`: dataset, data_dir) name, validated."""
    return read_dataset(data.dataset, data.data_dir)


def read_dataset(name: str, data_dir: str | os.PathLike, validate: bool = True,
                 check_images: bool = True) -> list[Record]:
    """Read dataset ``name`` from ``data_dir``; with ``validate``, refuse it if it is broken."""
    read = reader(name)
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise DatasetError(f"Data path {data_dir} for dataset {name!r} does not exist; "
                           f"{READERS[name].expects}.")
    records = read(data_dir)
    if validate:
        validate_records(records, source=f"{data_dir} ({name})", check_images=check_images)
    return records
