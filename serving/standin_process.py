"""The stand-in server as a child process: start it on a free loopback port, wait, stop it.

Tests and benchmarks talk to a real server process through the real client; this is the one
place that knows how to launch `python -m serving.standin`, read the ports it prints
("…: gRPC on 127.0.0.1:PORT", "…: REST on …", "…: ready") and shut it down cleanly.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class StandinProcess:
    """`python -m serving.standin ARGS --host=127.0.0.1 --port=0`; stderr to `log_path`."""

    def __init__(self, args: list[str], log_path: str, start_s: float = 120.0,
                 env: dict | None = None):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.port = self.rest_port = None
        env = dict(env or os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving.standin", "--host=127.0.0.1", "--port=0",
             *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        try:
            self._wait_ready(start_s)
        except BaseException:
            self.stop()  # never leave it running, whatever went wrong (Ctrl-C included)
            raise

    def _wait_ready(self, start_s: float) -> None:
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout],
                         daemon=True).start()
        ready, deadline = False, time.monotonic() + start_s
        while not ready and time.monotonic() < deadline and self.proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if ": gRPC on " in line:
                self.port = int(line.rsplit(":", 1)[1])
            if ": REST on " in line:
                self.rest_port = int(line.rsplit(":", 1)[1])
            ready = ": ready" in line
        if not ready or not self.port:
            why = (f"exited with status {self.proc.returncode}" if self.proc.poll() is not None
                   else f"not ready after {start_s:g} s")
            raise RuntimeError(f"the stand-in server {why}:\n{self.log_tail()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()[-chars:]

    def stop(self) -> None:
        if self.log.closed:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.log.close()
