"""Gallery images served from the metadata `path` of a hit, only from below the gallery's folder.

The index stores each image's path as given at indexing: relative to the dataset folder (a
split gallery), to the indexed folder (`folder:` galleries), or absolute. `resolve` joins a
relative one to the gallery root, resolves symbolic links and `..`, and gives the file only if
the result is still below the root; anything else is refused (`Refused`, 403) or missing
(`FileNotFoundError`, 404). URLs (http, https) are not files: the page shows them as they are.
"""
from __future__ import annotations

import os

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
               ".gif": "image/gif", ".bmp": "image/bmp", ".webp": "image/webp"}


class Refused(Exception):
    """The path points outside the gallery's folder, or at something that is not an image."""


def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def resolve(root: str, path: str) -> tuple[str, str]:
    """(real file path, MIME type) of the gallery image `path` below `root`."""
    if not path or "\x00" in path:
        raise Refused("no image path")
    real_root = os.path.realpath(root)
    candidate = path if os.path.isabs(path) else os.path.join(real_root, path)
    real = os.path.realpath(candidate)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise Refused(f"{path!r} is outside the gallery folder")
    kind = IMAGE_TYPES.get(os.path.splitext(real)[1].lower())
    if kind is None:
        raise Refused(f"{path!r} is not an image file")
    if not os.path.isfile(real):
        raise FileNotFoundError(path)
    return real, kind


def sniff_image(data: bytes) -> str | None:
    """The image format from the first bytes (the formats the image encoder decodes), or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None
