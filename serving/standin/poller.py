"""File-system polling, as TF Serving's two flags do it: version folders every
--file_system_poll_wait_seconds (a new version loads and takes over without a restart), and
models.config every --model_config_file_poll_wait_seconds (a model added to it joins).
"""
from __future__ import annotations

import os
import threading

from absl import logging

from serving.standin.model_config import ModelServerConfig, load_model_config
from serving.standin.registry import ModelRegistry


class ConfigFile:
    """models.config on disk, re-read when its modification time changes."""

    def __init__(self, path: str):
        self.path = path
        self._mtime = None

    def load(self) -> ModelServerConfig:
        """The config as the file holds it now (OSError, ParseError if it can't be read)."""
        config = load_model_config(self.path)
        self._mtime = os.path.getmtime(self.path)
        return config

    def reload_if_changed(self, registry: ModelRegistry) -> bool:
        """Gives `registry` the file's config if the file changed since the last read; a bad or
        half-edited file is logged and the previous config kept."""
        try:
            mtime = os.path.getmtime(self.path)
        except OSError as e:
            logging.error("keeping the previous model config: %s", e)
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            registry.set_config(load_model_config(self.path))
        except Exception as e:  # noqa: BLE001 — a half-edited file must not stop the server
            logging.error("keeping the previous model config: %s: %s", self.path, e)
            return False
        logging.info("re-read %s", self.path)
        return True


class Poller:
    """Background threads that keep `registry` in step with the disk until `stop()`."""

    def __init__(self, registry: ModelRegistry, config_file: ConfigFile | None = None):
        self.registry = registry
        self.config_file = config_file
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, poll_seconds: float, config_poll_seconds: float = 0) -> None:
        """Rescans version folders every `poll_seconds` and models.config every
        `config_poll_seconds`; 0 turns either off."""
        if poll_seconds > 0:
            self._threads.append(threading.Thread(
                target=self._loop, args=(poll_seconds, self.registry.sync),
                name="version-poller", daemon=True))
        if config_poll_seconds > 0 and self.config_file is not None:
            self._threads.append(threading.Thread(
                target=self._loop, args=(config_poll_seconds, self._reload_config),
                name="config-poller", daemon=True))
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()

    def _reload_config(self) -> None:
        if self.config_file.reload_if_changed(self.registry):
            self.registry.sync()

    def _loop(self, interval: float, step) -> None:
        while not self._stop.wait(interval):
            try:
                step()
            except Exception:  # noqa: BLE001 — the next round may succeed
                logging.exception("poller step failed")
