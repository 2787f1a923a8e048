"""The dataset readers by name (the --dataset choices), each with the layout it expects.

A reader module registers itself on import (`register(name, read, expects)`); `expects` is the
one sentence a user sees when the data path is missing, so it lives beside the reader."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from keras_instance.data.records import Record


@dataclasses.dataclass(frozen=True)
class Reader:
    name: str
    read: Callable[[Path], list[Record]]
    expects: str   # "expected a folder with …": the layout this reader reads


READERS: dict[str, Reader] = {}


def register(name: str, read: Callable[[Path], list[Record]], expects: str) -> None:
    if name in READERS:
        raise ValueError(f"dataset {name!r} is registered twice")
    READERS[name] = Reader(name, read, expects)
