"""Names fixed by TF Serving that the client, the stand-in and the exporter must agree on.

TensorFlow-free, so `serving.client` can import it and still start in a fraction of a second.
keras_instance (which writes the SavedModels and warmup files) keeps its own copy of the first
two; tests/test_serving.py checks that the copies are equal.
"""
import os

# The signature a request without signature_name calls.
DEFAULT_SIGNATURE = "serving_default"
# Inside a version folder: a TFRecord of PredictionLog, replayed before the version serves.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# Where tensorflow/serving's container mounts the models: models.config's base_path prefix.
CONTAINER_MODELS_ROOT = "/models"
# tensorflow/serving's gRPC port (its image passes --port=8500; REST is --rest_api_port=8501).
GRPC_PORT = 8500
