"""absl flags generated from `keras_instance.config`: each program defines the flags it uses.

A flag is a config field of the same name, with the field's default, help and allowed values
(`--dataset` and `--backbone` list their registries). A program that loads a trained run
defines only the test-time fields, so `evaluate --backbone=…` fails as an unknown flag instead
of being ignored; `train` defines them all, so one --flagfile drives both stages.
"""
from __future__ import annotations

import typing

from absl import flags

from keras_instance.config import (
    DEFAULT_LR_MULTIPLIERS,
    FIELD_TYPES,
    FIELDS,
    TEST_TIME_FIELDS,
    Config,
    choices,
    registry,
)

FLAGS = flags.FLAGS
# Every config field a training command may set (config_version is the file's, not a choice).
TRAINING_FIELDS = tuple(name for name in FIELDS if name != "config_version")
_DEFINED: list[str] = []


def define_config_flags(names=TRAINING_FIELDS) -> None:
    """Define one flag per named config field (once per process)."""
    defaults = Config()
    for name in names:
        if name in _DEFINED:
            continue
        _define(name, defaults.get(name))
        _DEFINED.append(name)


def define_run_flags() -> None:
    """What a program using a trained run takes: --workdir and the test-time settings."""
    define_config_flags(("workdir", *TEST_TIME_FIELDS))


def _base_type(name: str):
    hint = FIELD_TYPES[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if typing.get_origin(hint) is typing.Union and args else hint


def _define(name: str, default) -> None:
    help_text = FIELDS[name].metadata["help"]
    allowed = choices(name) or _registry_keys(registry(name))
    kind = _base_type(name)
    if name == "lr_multipliers":
        flags.DEFINE_list(name, [], help_text)
    elif kind is bool:
        flags.DEFINE_boolean(name, default, help_text)
    elif kind is int:
        flags.DEFINE_integer(name, default, help_text)
    elif kind is float:
        flags.DEFINE_float(name, default, help_text)
    elif kind is tuple:
        flags.DEFINE_list(name, None if default is None else [str(v) for v in default], help_text)
    elif allowed:
        flags.DEFINE_enum(name, default, list(allowed), help_text)
    else:
        flags.DEFINE_string(name, default, help_text)


def _registry_keys(kind: str | None):
    """--dataset and --backbone take the registries' names."""
    if kind == "datasets":
        from keras_instance.data import readers
        return tuple(readers.DATASET_READERS)
    if kind == "backbones":  # listed without importing TensorFlow (model.backbones checks it)
        from keras_instance.model.backbone_names import BACKBONE_NAMES
        return BACKBONE_NAMES
    return None


def _parse(name: str, value):
    """A flag's value as the config field's."""
    if name == "lr_multipliers":
        return _multipliers(value)
    if _base_type(name) is tuple:
        if value is None:
            return None
        default = Config().get(name)
        cast = type(default[0]) if default else float
        return tuple(cast(v) for v in value)
    if name == "backbone_weights" and (value or "none").lower() == "none":
        return None
    return value


def _multipliers(overrides: list[str]) -> dict:
    out = dict(DEFAULT_LR_MULTIPLIERS)
    for item in overrides:
        group, _, value = item.partition("=")
        if group not in out or not value:
            raise flags.ValidationError(
                f"--lr_multipliers item {item!r}: expected group=value with group in "
                f"{', '.join(out)}")
        out[group] = float(value)
    return out


def config_from_flags() -> Config:
    """The Config the defined flags describe (fields without a flag keep their defaults)."""
    return Config.flat(**{name: _parse(name, FLAGS[name].value) for name in _DEFINED}).validate()


def present_overrides(names=TEST_TIME_FIELDS) -> dict:
    """The named fields the user actually set: they override a trained run's config."""
    return {name: _parse(name, FLAGS[name].value) for name in names
            if name in _DEFINED and FLAGS[name].present}


def load_run(stage: int | None = None):
    """The trained run of --workdir, with the test-time flags the user set."""
    from keras_instance import run_folder
    return run_folder.load_trained(FLAGS.workdir, present_overrides(), stage)
