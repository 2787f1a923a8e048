"""TF Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus, HandleReloadConfigRequest) on the registry.

Classify, Regress and MultiInference keep grpc's generated default: UNIMPLEMENTED. Every call runs
through request_guard.run_request, so a failure is a status on that call, never a dead server.
"""
from __future__ import annotations

import concurrent.futures

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.constants import GRPC_PORT
from serving.standin.metrics import Metrics
from serving.standin.registry import ModelRegistry
from serving.standin.request_guard import describe_request, run_request


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None):
        self.registry, self.metrics = registry, metrics

    def Predict(self, request, context):
        result, error = run_request(
            lambda: self.registry.resolve(request.model_spec).predict(request),
            self.metrics, "predict", request.model_spec.name, describe_request(request))
        return _reply(context, result, error, predict_pb2.PredictResponse)

    def GetModelMetadata(self, request, context):
        result, error = run_request(lambda: self.registry.metadata(request), self.metrics,
                                    "metadata", request.model_spec.name,
                                    describe_request(request))
        return _reply(context, result, error, get_model_metadata_pb2.GetModelMetadataResponse)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry, metrics: Metrics | None = None):
        self.registry, self.metrics = registry, metrics

    def GetModelStatus(self, request, context):
        result, error = run_request(lambda: self.registry.status(request.model_spec),
                                    self.metrics, "status", request.model_spec.name,
                                    describe_request(request))
        return _reply(context, result, error, get_model_status_pb2.GetModelStatusResponse)

    def HandleReloadConfigRequest(self, request, context):
        """As TF Serving: the outcome is in the response's status, the RPC itself succeeds."""
        def reload():
            self.registry.set_config(request.config)
            self.registry.sync()
            return model_management_pb2.ReloadConfigResponse()
        result, error = run_request(reload, self.metrics, "reload", "")
        if error is None:
            return result
        response = model_management_pb2.ReloadConfigResponse()
        response.status.error_code = error.code.value[0]
        response.status.error_message = error.message
        return response


def _reply(context, result, error, empty_type):
    if error is None:
        return result
    context.set_code(error.code)
    context.set_details(error.message)
    return empty_type()


def build_grpc_server(registry: ModelRegistry, host: str = "127.0.0.1", port: int = GRPC_PORT,
                      max_workers: int = 16, max_message_mb: int = 2047,
                      metrics: Metrics | None = None):
    """A gRPC server, not yet started; returns (server, bound port)."""
    limit = max_message_mb * 1024 * 1024 if max_message_mb > 0 else -1
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers,
                                              thread_name_prefix="grpc"),
        options=[("grpc.max_send_message_length", limit),
                 ("grpc.max_receive_message_length", limit),
                 ("grpc.so_reuseport", 0)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(registry, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelServicer(registry, metrics), server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:  # grpc's "Failed to bind to address ..."
        raise OSError(f"cannot listen for gRPC on {host}:{port} (in use, or not an address "
                      f"of this host)") from e
    if not bound:  # older grpc answers 0 instead of raising
        raise OSError(f"cannot listen for gRPC on {host}:{port} (in use, or not an address "
                      f"of this host)")
    return server, bound
