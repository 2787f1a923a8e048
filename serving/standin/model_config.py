"""models.config, TF Serving's ModelServerConfig text proto: read, checked, paths mapped.

base_path in the config is the container's (`/models/<name>`); on this host the stand-in reads
`<models_root>/<name>` instead (`--model_base_path_prefix` → `--models_root`).
"""
from __future__ import annotations

import os

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.constants import CONTAINER_MODELS_ROOT

ModelServerConfig = model_server_config_pb2.ModelServerConfig


def parse_model_config(text: str) -> ModelServerConfig:
    config = ModelServerConfig()
    text_format.Parse(text, config)
    return config


def load_model_config(path: str) -> ModelServerConfig:
    with open(path) as f:
        return parse_model_config(f.read())


def single_model_config(name: str, base_path: str) -> ModelServerConfig:
    """The config `--model_name NAME --model_base_path PATH` stands for."""
    config = ModelServerConfig()
    entry = config.model_config_list.config.add()
    entry.name, entry.base_path = name, os.path.abspath(base_path)
    entry.model_platform = "tensorflow"
    return config


def checked_entries(config: ModelServerConfig) -> list:
    """The config's model entries; ValueError saying what to fix when the stand-in can't serve
    them."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ValueError("custom_model_config is not supported; use model_config_list")
    entries = list(config.model_config_list.config)
    names = [c.name for c in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"models listed twice in the config: {duplicates}")
    for c in entries:
        if not c.name or not c.base_path:
            raise ValueError(f"every model needs a name and a base_path: {c}")
        if c.model_platform and c.model_platform != "tensorflow":
            raise ValueError(f"model {c.name}: platform {c.model_platform!r} is not supported")
    return entries


def map_base_path(base_path: str, models_root: str | None,
                  prefix: str = CONTAINER_MODELS_ROOT) -> str:
    """Maps the container's base_path (`/models/<name>`) to `models_root/<name>` on this host."""
    if models_root:
        prefix = prefix.rstrip("/") or "/"
        if base_path == prefix or base_path.startswith(prefix + "/"):
            return os.path.join(models_root, base_path[len(prefix):].lstrip("/"))
    return base_path
