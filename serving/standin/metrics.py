"""Request counts and latency sums in Prometheus text, a small subset of TF Serving's metrics.

Served at GET /monitoring/prometheus/metrics on the REST port, with TF Serving's metric names,
so a dashboard built against either server reads both.
"""
from __future__ import annotations

import collections
import threading

import grpc


class Metrics:
    """Request counters in Prometheus text format (a small subset of TF Serving's)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = collections.Counter()
        self._latency = collections.Counter()

    def record(self, api: str, model: str, code: grpc.StatusCode, seconds: float) -> None:
        with self._lock:
            self._counts[(api, model, code.name)] += 1
            self._latency[(api, model)] += seconds

    def text(self) -> str:
        with self._lock:
            lines = ["# TYPE :tensorflow:serving:request_count counter"]
            for (api, model, status), n in sorted(self._counts.items()):
                lines.append(f':tensorflow:serving:request_count{{api="{api}",'
                             f'model_name="{model}",status="{status}"}} {n}')
            lines.append("# TYPE :tensorflow:serving:request_latency_seconds_sum counter")
            for (api, model), s in sorted(self._latency.items()):
                lines.append(f':tensorflow:serving:request_latency_seconds_sum{{api="{api}",'
                             f'model_name="{model}"}} {s:.6f}')
        return "\n".join(lines) + "\n"
