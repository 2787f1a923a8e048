"""TF Serving's REST API on the registry, as an explicit route table.

    GET  /v1/models/NAME[/versions/V|/labels/L]              model status (GetModelStatus)
    GET  /v1/models/NAME[/versions/V|/labels/L]/metadata     signature_def map (GetModelMetadata)
    POST /v1/models/NAME[/versions/V|/labels/L]:predict      {"instances": ...} or {"inputs": ...}
    POST /v1/models/NAME[/versions/V|/labels/L]:classify     501: not implemented here
    POST /v1/models/NAME[/versions/V|/labels/L]:regress      501: not implemented here
    GET  /monitoring/prometheus/metrics                      request counts and latency sums

Anything else is 404 "Malformed request". Errors answer {"error": "..."} with the HTTP code TF
Serving gives the gRPC status; each request runs through request_guard.run_request.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import re
from typing import Callable

import grpc
from absl import logging
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from serving.constants import DEFAULT_SIGNATURE
from serving.standin import rest_json
from serving.standin.errors import ServingError, invalid_argument
from serving.standin.metrics import Metrics
from serving.standin.registry import ModelRegistry
from serving.standin.request_guard import run_request

HTTP_FROM_GRPC = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
    "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500,
}
# /v1/models/NAME, an optional version or label, then the route's suffix ("" when none).
MODEL_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                        r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                        r"(?P<suffix>/metadata|:[a-zA-Z]+)?/?$")
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
JSON, PROMETHEUS_TEXT = "application/json", "text/plain; version=0.0.4"


@dataclasses.dataclass
class HttpCall:
    """One HTTP request as the routes see it."""
    method: str
    path: str  # as sent, query included
    headers: object
    rfile: object
    suffix: str = ""  # what follows /v1/models/NAME[/versions/V|/labels/L]: ":predict", ...


@dataclasses.dataclass
class Reply:
    content_type: str
    body: object  # bytes, or a dict to send as JSON


class RestApi:
    """What each route answers; `answer` picks the route."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None,
                 max_body_mb: int = 256):
        self.registry, self.metrics, self.max_body_mb = registry, metrics, max_body_mb

    def counted_as(self, call: HttpCall) -> tuple[str, str]:
        """(api, model name) under which the metrics count this request: a model route as its
        gRPC counterpart ("predict", "metadata", "status", ...) with the model of its path, so a
        model's requests add up whichever API they came through; anything else as "rest"."""
        match = MODEL_PATH.match(call.path.split("?", 1)[0])
        if not match:
            return "rest", ""
        suffix = match["suffix"] or ""
        return ROUTE_APIS.get(suffix, "rest"), match["name"]

    def answer(self, call: HttpCall) -> Reply:
        """The route's reply; ServingError when the request can't be served."""
        path = call.path.split("?", 1)[0]
        fixed = FIXED_ROUTES.get((call.method, path.rstrip("/")))
        if fixed is not None:
            return fixed(self, call)
        match = MODEL_PATH.match(path)
        if not match:
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {path}")
        call.suffix = match["suffix"] or ""
        route = MODEL_ROUTES.get((call.method, call.suffix))
        if route is None:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Malformed request: {call.method} {call.path}")
        spec = predict_pb2.PredictRequest().model_spec
        spec.name = match["name"]
        if match["version"]:
            spec.version.value = int(match["version"])
        elif match["label"]:
            spec.version_label = match["label"]
        return route(self, spec, call)

    # -- routes
    def prometheus_metrics(self, call: HttpCall) -> Reply:
        return Reply(PROMETHEUS_TEXT, (self.metrics.text() if self.metrics else "").encode())

    def model_status(self, spec, call: HttpCall) -> Reply:
        return Reply(JSON, rest_json.message_dict(self.registry.status(spec)))

    def model_metadata(self, spec, call: HttpCall) -> Reply:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.CopyFrom(spec)
        request.metadata_field.append("signature_def")
        response = self.registry.metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return Reply(JSON, {"model_spec": rest_json.message_dict(response.model_spec),
                            "metadata": {"signature_def": rest_json.message_dict(signature_map)}})

    def predict(self, spec, call: HttpCall) -> Reply:
        body = self._json_body(call)
        signature_name = body.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature_name, str):
            raise invalid_argument("'signature_name' key must be a string value.")
        loaded = self.registry.resolve(spec)
        request, row_format = rest_json.predict_request(loaded, body, signature_name)
        return Reply(JSON, rest_json.predict_body(loaded.predict(request), row_format))

    def unimplemented(self, spec, call: HttpCall) -> Reply:
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                           f"{call.suffix[1:]} is not implemented by the stand-in")

    def _json_body(self, call: HttpCall) -> dict:
        length = int(call.headers.get("Content-Length") or 0)
        if length > self.max_body_mb * 1024 * 1024:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request body over {self.max_body_mb} MB")
        raw = call.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as e:
            raise invalid_argument(f"JSON Parse error: {e}") from e
        if not isinstance(body, dict):
            raise invalid_argument("the request body must be a JSON object")
        return body


# (method, path) → route, for paths outside /v1/models.
FIXED_ROUTES: dict[tuple[str, str], Callable] = {
    ("GET", PROMETHEUS_PATH): RestApi.prometheus_metrics,
}
# Suffix after /v1/models/NAME[...] → the api label of its requests in the metrics.
ROUTE_APIS = {"": "status", "/metadata": "metadata", ":predict": "predict",
              ":classify": "classify", ":regress": "regress"}
# (method, suffix after /v1/models/NAME[/versions/V|/labels/L]) → route.
MODEL_ROUTES: dict[tuple[str, str], Callable] = {
    ("GET", ""): RestApi.model_status,
    ("GET", "/metadata"): RestApi.model_metadata,
    ("POST", ":predict"): RestApi.predict,
    ("POST", ":classify"): RestApi.unimplemented,
    ("POST", ":regress"): RestApi.unimplemented,
}


def make_rest_handler(api: RestApi):
    """The http.server handler class answering every request through `api`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "standin-tf-serving"

        def log_message(self, fmt, *args):  # route through absl, quietly
            logging.debug("REST %s", fmt % args)

        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def _handle(self, method: str):
            call = HttpCall(method, self.path, self.headers, self.rfile)
            counted, model = api.counted_as(call)
            reply, error = run_request(lambda: api.answer(call), api.metrics, counted, model,
                                       f"{method} {self.path.split('?', 1)[0][:200]}")
            if error is not None:
                if method == "POST":  # the body may be unread: don't reuse the connection
                    self.close_connection = True
                reply = Reply(JSON, {"error": error.message})
            self._send(HTTP_FROM_GRPC.get(error.code.name, 500) if error else 200, reply)

        def _send(self, status: int, reply: Reply):
            data = reply.body if isinstance(reply.body, bytes) else (
                json.dumps(reply.body) + "\n").encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def build_rest_server(registry: ModelRegistry, host: str, port: int,
                      metrics: Metrics | None = None):
    """A threading HTTP server, not yet serving; returns (server, bound port)."""
    try:
        httpd = http.server.ThreadingHTTPServer((host, port),
                                                make_rest_handler(RestApi(registry, metrics)))
    except OSError as e:
        raise OSError(f"cannot listen for REST on {host}:{port} ({e.strerror or e})") from e
    httpd.daemon_threads = True
    return httpd, httpd.server_address[1]
