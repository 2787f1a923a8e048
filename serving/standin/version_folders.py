"""TF Serving's layout on disk: a model's base path holds integer-named version folders.

A folder counts once its saved_model.pb (or .pbtxt) exists, so a version being written (the
exporter writes to a temporary folder and renames it) is never loaded half-done.
"""
from __future__ import annotations

import os

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def scan_versions(base_path: str) -> dict[int, str]:
    """version → folder, for every complete version under `base_path` (none if it is missing)."""
    versions = {}
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return versions
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir() and any(
                os.path.exists(os.path.join(entry.path, name)) for name in SAVED_MODEL_FILES):
            versions[int(entry.name)] = entry.path
    return versions


def version_mtime(path: str) -> float:
    """When the version's SavedModel was written: a failed version is retried once it changes."""
    for name in SAVED_MODEL_FILES:
        file = os.path.join(path, name)
        if os.path.exists(file):
            return os.path.getmtime(file)
    return 0.0
