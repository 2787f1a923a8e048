"""Raw image bytes checked in TensorFlow ops, before any pixel is decoded (served graphs).

Every served image model runs `checked_image_bytes` on each request item: empty, an unknown kind,
a header cut short, a JPEG/PNG without its end marker, or more pixels than `MAX_IMAGE_PIXELS`
(all frames of a GIF count) fail the request with InvalidArgumentError naming `images[i]`,
and the server goes on. Core TensorFlow ops only, so TF Serving runs them.
"""
from __future__ import annotations

import tensorflow as tf

# Largest image the image encoder decodes: 40 megapixels (a 40 MP RGB image is 120 MB as uint8 and
# 480 MB as the float32 the pipeline resizes). Checked from the file's header, before decoding.
MAX_IMAGE_PIXELS = 40_000_000
# Kinds `tf.io.decode_image` reads, by file signature (as DecodeImage detects them).
_UNKNOWN, _JPEG, _PNG, _GIF, _BMP, _WEBP = range(6)
_KIND_NAMES = ("unknown", "JPEG", "PNG", "GIF", "BMP", "WebP")
# Fewest bytes that hold each kind's width and height (JPEG: ExtractJpegShape finds them).
_MIN_BYTES = (1, 4, 24, 13, 26, 30)
_GIF_STRIDE = 64  # full GIF sub-blocks skipped per step of the block walk


def _bytes_at(data: tf.Tensor, pos: tf.Tensor, n: int) -> tf.Tensor:
    """n bytes of `data` from `pos` as int64 [n], zero past the end (never out of range)."""
    pos = tf.minimum(tf.cast(pos, tf.int64), tf.cast(tf.strings.length(data), tf.int64))
    chunk = tf.strings.substr(data, pos, n) + b"\0" * n
    return tf.cast(tf.io.decode_raw(tf.strings.substr(chunk, 0, n), tf.uint8), tf.int64)


def _head(data: tf.Tensor, n: int = 32) -> tf.Tensor:
    """The first n bytes of `data`, zero-padded to n (substr past the end would fail)."""
    return tf.strings.substr(tf.strings.substr(data, 0, n) + b"\0" * n, 0, n)


def _image_kind(data: tf.Tensor) -> tf.Tensor:
    """_JPEG … _WEBP from the file signature, _UNKNOWN otherwise (int32 scalar)."""
    head = _head(data)

    def starts(prefix, at=0):  # no signature holds a zero byte, so the padding never matches
        return tf.equal(tf.strings.substr(head, at, len(prefix)), prefix)
    kinds = tf.stack([starts(b"\xff\xd8\xff"), starts(b"\x89PNG\r\n\x1a\n"), starts(b"GIF8"),
                      starts(b"BM"), starts(b"RIFF") & starts(b"WEBP", 8)])
    return tf.where(tf.reduce_any(kinds), tf.argmax(tf.cast(kinds, tf.int32),
                                                    output_type=tf.int32) + 1, _UNKNOWN)


def _gif_frames(data: tf.Tensor, max_pixels: int):
    """(first frame's width, height, frame count, pixels of all frames) of a GIF.

    DecodeImage returns the first frame at the first frame's own size, but giflib reads every
    frame into memory first, so all of them count. Walks the blocks after the header: extensions
    (0x21) and image descriptors (0x2C), each followed by a chain of length-prefixed sub-blocks
    (runs of full 255-byte sub-blocks are skipped _GIF_STRIDE at a time). Stops once the pixels
    pass `max_pixels`; a walk that runs off the end leaves the rest to the decoder, which rejects
    truncated files.
    """
    length = tf.cast(tf.strings.length(data), tf.int64)
    packed = _bytes_at(data, 10, 1)[0]
    zero = tf.constant(0, tf.int64)

    def table_size(flags):  # bytes of a global/local colour table
        return tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64),
                                                                tf.bitwise.bitwise_and(flags, 7)),
                        zero)

    strides = 256 * tf.range(_GIF_STRIDE, dtype=tf.int64)

    def body(pos, in_chain, frames, pixels, width, height):
        b = _bytes_at(data, pos, 10)
        # Inside a chain: sizes of the next _GIF_STRIDE sub-blocks if they were all full.
        ahead = tf.strings.substr(data, tf.minimum(pos + strides, length),
                                  tf.ones([_GIF_STRIDE], tf.int64))
        ahead = tf.io.decode_raw(tf.strings.substr(ahead + b"\0", 0, 1), tf.uint8)[:, 0]
        full = tf.reduce_sum(tf.math.cumprod(tf.cast(tf.equal(ahead, 255), tf.int64)))
        chain_pos = tf.where(full > 0, pos + 256 * full, pos + 1 + b[0])
        chain_on = (full > 0) | (b[0] > 0)
        is_ext, is_image = tf.equal(b[0], 0x21), tf.equal(b[0], 0x2C)
        w, h = b[5] + 256 * b[6], b[7] + 256 * b[8]
        block_end = tf.where(is_ext, pos + 2,
                             tf.where(is_image, pos + 11 + table_size(b[9]), length))
        found = tf.logical_not(in_chain) & is_image
        first = found & tf.equal(frames, 0)
        return (tf.where(in_chain, chain_pos, block_end),
                tf.where(in_chain, chain_on, is_ext | is_image),
                frames + tf.cast(found, tf.int64), pixels + tf.where(found, w * h, zero),
                tf.where(first, w, width), tf.where(first, h, height))

    _, _, frames, pixels, width, height = tf.while_loop(
        lambda pos, in_chain, frames, pixels, *_: (pos < length) & (pixels <= max_pixels), body,
        (13 + table_size(packed), tf.constant(False), zero, zero, zero, zero),
        parallel_iterations=1)
    return width, height, frames, pixels


def _image_size(data: tf.Tensor, kind: tf.Tensor, max_pixels: int):
    """(width, height, frames, pixels the decoder holds) from the header of a checked image."""
    b = _bytes_at(data, 0, 32)

    def u16le(i):
        return b[i] + 256 * b[i + 1]

    def u32(i, big_endian):
        order = (0, 1, 2, 3) if big_endian else (3, 2, 1, 0)
        return sum(b[i + o] * 256 ** (3 - k) for k, o in enumerate(order))

    png_w, png_h = u32(16, True), u32(20, True)
    bmp_w = u32(18, False)
    bmp_h = u32(22, False)
    bmp_w, bmp_h = (tf.abs(tf.where(v >= 2 ** 31, v - 2 ** 32, v)) for v in (bmp_w, bmp_h))
    chunk = tf.strings.substr(_head(data), 12, 4)
    bits = u32(21, False)
    webp_w = tf.where(tf.equal(chunk, b"VP8X"), 1 + b[24] + 256 * u16le(25),
                      tf.where(tf.equal(chunk, b"VP8L"), 1 + bits % 16384,
                               u16le(26) % 16384))
    webp_h = tf.where(tf.equal(chunk, b"VP8X"), 1 + b[27] + 256 * u16le(28),
                      tf.where(tf.equal(chunk, b"VP8L"), 1 + (bits // 16384) % 16384,
                               u16le(28) % 16384))
    zero = tf.constant(0, tf.int64)
    jpeg_h, jpeg_w = tf.unstack(tf.cond(
        tf.equal(kind, _JPEG),
        lambda: tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64),
        lambda: tf.zeros([2], tf.int64)))
    gif = tf.cond(tf.equal(kind, _GIF), lambda: _gif_frames(data, max_pixels), lambda: (zero,) * 4)
    widths = tf.stack([zero, jpeg_w, png_w, gif[0], bmp_w, webp_w])
    heights = tf.stack([zero, jpeg_h, png_h, gif[1], bmp_h, webp_h])
    width, height = widths[kind], heights[kind]
    frames = tf.where(tf.equal(kind, _GIF), gif[2], tf.constant(1, tf.int64))
    pixels = tf.where(tf.equal(kind, _GIF), gif[3], width * height)
    return width, height, frames, pixels


def checked_image_bytes(data: tf.Tensor, index: tf.Tensor,
                        max_pixels: int = MAX_IMAGE_PIXELS) -> tf.Tensor:
    """`data`, once it is known to be a whole JPEG/PNG/GIF/BMP/WebP of at most `max_pixels`.

    Fails with InvalidArgumentError naming `images[index]` and what is wrong: empty, an unknown
    kind, a header cut short, a JPEG without its end-of-image marker or a PNG without its IEND
    chunk (truncated), or more pixels than `max_pixels` (all frames of a GIF count). Nothing is
    decoded before these checks pass. Damage the header cannot show is left to DecodeImage, which
    fails with its own message (e.g. "jpeg::Uncompress failed. Invalid JPEG data").
    """
    index = tf.cast(index, tf.int64)
    length = tf.cast(tf.strings.length(data), tf.int64)
    kind = _image_kind(data)
    name = tf.gather(tf.constant(_KIND_NAMES), kind)
    end_marker = tf.where(tf.equal(kind, _JPEG), b"\xff\xd9", b"IEND")
    has_end = tf.size(tf.strings.split(tf.reshape(data, [1]), sep=end_marker,
                                       maxsplit=1).flat_values) > 1
    short = length < tf.gather(tf.constant(_MIN_BYTES, tf.int64), kind)
    truncated = ((tf.equal(kind, _JPEG) | tf.equal(kind, _PNG)) & tf.logical_not(has_end))
    truncated_what = tf.where(tf.equal(kind, _JPEG), " (no end-of-image marker)",
                              " (no IEND chunk)")
    problem = tf.where(
        tf.equal(length, 0), tf.strings.format("images[{}]: empty (zero bytes)", [index]),
        tf.where(tf.equal(kind, _UNKNOWN),
                 tf.strings.format("images[{}]: not a JPEG, PNG, GIF, BMP or WebP image "
                                   "(unrecognised first bytes)", [index]),
                 tf.where(short,
                          tf.strings.join([tf.strings.format("images[{}]: truncated ", [index]),
                                           name, tf.strings.format(
                                               " ({} bytes, too short for its header)",
                                               [length])]),
                          tf.where(truncated,
                                   tf.strings.join([tf.strings.format("images[{}]: truncated ",
                                                                      [index]),
                                                    name, truncated_what]),
                                   ""))))
    well_formed = tf.debugging.Assert(tf.equal(problem, ""), [problem])
    with tf.control_dependencies([well_formed]):
        width, height, frames, pixels = _image_size(data, kind, max_pixels)
    limit = f"more than the {max_pixels / 1e6:g} MP limit"
    too_big = tf.where(
        frames > 1,
        tf.strings.format("images[{}] is a GIF whose first {} frames hold {} pixels (the first "
                          "is {}x{}), " + limit, [index, frames, pixels, width, height]),
        tf.strings.format("images[{}] is {}x{} pixels, " + limit, [index, width, height]))
    small_enough = tf.debugging.Assert(pixels <= max_pixels, [too_big])
    with tf.control_dependencies([small_enough]):
        return tf.identity(data)
