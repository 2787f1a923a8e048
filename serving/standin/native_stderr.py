"""Native stderr (libjpeg, TensorFlow C++) in the stand-in's log, saying which request wrote it.

libjpeg prints "Unsupported marker type 0x14" straight to file descriptor 2 while TensorFlow
decodes a corrupt JPEG; Python cannot catch that text or know whose it was. `capture()` points
fd 2 at a pipe read by a small child process (this file run as a script: stdlib only) that
writes to the real stderr, and Python's own logging goes to the real stderr directly. Each
request writes a start and an end marker into the same pipe around its work; native text found
between them is printed with the requests in flight at that point of the stream:

    standin_server: native stderr during predict #7 image_encoder, inputs images: string[1]:
    Unsupported marker type 0x14 (2 lines alike)

(one line in the log), and the server logs the request's failure as `predict #7 ... failed:
INVALID_ARGUMENT: ...`.

Concurrent requests are all named (the text cannot tell them apart). A process, not a thread,
reads the pipe so that a crash message (a C++ CHECK failure, then abort) is still forwarded after
the server died.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys

MARK = b"\x1e"   # ASCII record separator: starts a marker line; never in libjpeg's or TF's text
PREFIX = "standin_server: native stderr"


class NativeStderr:
    """Request markers for the forwarder; a no-op until `capture()` has run."""

    def __init__(self):
        self.active = False
        self.child: subprocess.Popen | None = None

    def capture(self) -> None:
        """fd 2 → pipe → forwarder child → the original stderr; sys.stderr → the original.
        Where there is no fcntl (Windows) native text stays as it is."""
        try:
            import fcntl
        except ImportError:
            return
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        try:
            fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass  # the default 64 KiB is enough for libjpeg's lines
        self.child = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__)],
                                      stdin=read_end, stdout=original, stderr=original,
                                      start_new_session=True)  # Ctrl-C: it drains, then exits
        os.close(read_end)
        os.dup2(write_end, 2)
        os.close(write_end)
        # A stuck forwarder must never block a request: a full pipe drops native text instead.
        fcntl.fcntl(2, fcntl.F_SETFL, fcntl.fcntl(2, fcntl.F_GETFL) | os.O_NONBLOCK)
        old = sys.stderr
        sys.stderr = io.TextIOWrapper(os.fdopen(original, "wb", buffering=0), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        _repoint_log_handlers((old, sys.__stderr__), sys.stderr)
        self.active = True

    def _mark(self, text: str) -> None:
        try:
            os.write(2, MARK + " ".join(text.split()).encode("utf-8", "replace")[:400] + b"\n")
        except OSError:
            pass  # pipe full or forwarder gone: lose the marker, never the request

    @contextlib.contextmanager
    def request(self, key: str, description: str):
        """Around one request's work (`key`: unique among those in flight, no spaces): native
        text written meanwhile is printed with `description`."""
        if not self.active:
            yield
            return
        self._mark(f"+{key} {description}")
        try:
            yield
        finally:
            self._mark(f"-{key}")


def _repoint_log_handlers(old_streams, new) -> None:
    """Logging handlers holding the old sys.stderr (absl's among them) write to `new`."""
    import logging
    handlers = list(logging.getLogger().handlers)
    try:
        from absl import logging as absl_logging
        handlers.append(absl_logging.get_absl_handler().python_handler)
    except ImportError:
        pass
    for handler in handlers:
        if any(getattr(handler, "stream", None) is s for s in old_streams):
            handler.stream = new


# --------------------------------------------------------------------------- the forwarder

def forward(source, sink) -> None:
    """Copies `source` (bytes) to `sink` (text): markers kept as the in-flight set, native lines
    prefixed with it; identical consecutive lines in the same context become one."""
    in_flight: dict[str, str] = {}
    pending: list = [None, None, 0]  # line, context, count

    def flush():
        line, context, count = pending
        if line is not None:
            alike = f" ({count} lines alike)" if count > 1 else ""
            sink.write(f"{PREFIX} {context}: {line}{alike}\n")
            sink.flush()
        pending[:] = [None, None, 0]

    def native(line: str):
        if not line.strip():
            return
        context = ("during " + "; ".join(in_flight.values())) if in_flight else \
            "(no request in flight)"
        if pending[0] == line and pending[1] == context:
            pending[2] += 1
            return
        flush()
        pending[:] = [line, context, 1]

    buffer = b""
    while True:
        chunk = os.read(source.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for raw in lines:
            text, _, marker = raw.partition(MARK)
            native(text.decode("utf-8", "replace"))
            if not marker:
                continue
            marker = marker.decode("utf-8", "replace")
            rid, _, description = marker.partition(" ")
            if rid.startswith("+"):
                in_flight[rid[1:]] = description
            else:
                in_flight.pop(rid[1:], None)
                flush()  # the request is over: its lines are complete
        if not in_flight:
            flush()  # nothing else can join a line written outside any request
    native(buffer.decode("utf-8", "replace"))
    flush()


if __name__ == "__main__":  # the forwarder child: runs until the server's fd 2 closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdout.reconfigure(encoding="utf-8", errors="backslashreplace")
    forward(sys.stdin, sys.stdout)
