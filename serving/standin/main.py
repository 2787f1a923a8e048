"""`python -m serving.standin`: flags, startup and shutdown.

Startup loads what the config asks for before listening (as TF Serving does), then prints the
lines serving/standin_process.py waits for: "standin_server: gRPC on HOST:PORT", "...: REST on
HOST:PORT", "...: ready, models [...]". SIGTERM (docker stop, test teardown) stops it as Ctrl-C.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

import tensorflow as tf
from absl import app, flags
from google.protobuf import text_format

from serving.constants import CONTAINER_MODELS_ROOT, GRPC_PORT
from serving.standin.grpc_api import build_grpc_server
from serving.standin.metrics import Metrics
from serving.standin.model_config import single_model_config
from serving.standin.poller import ConfigFile, Poller
from serving.standin.registry import ModelRegistry
from serving.standin.request_guard import NATIVE
from serving.standin.rest_api import build_rest_server

LOG_NAME = "standin_server"  # first word of its own lines; standin_process.py reads them


def define_flags() -> flags.FlagValues:
    """tensorflow/serving's flags, where the stand-in does the same thing, under the same names."""
    flags.DEFINE_string("model_config", None, "ModelServerConfig text proto (models.config).")
    flags.DEFINE_alias("model_config_file", "model_config")
    flags.DEFINE_string("model_name", None, "Without a config: serve this one model ...")
    flags.DEFINE_string("model_base_path", None, "... from this folder of versions.")
    flags.DEFINE_string("models_root", None,
                        "Local folder standing for the container's --model_base_path_prefix; "
                        "default: the folder holding the model config.")
    flags.DEFINE_string("model_base_path_prefix", CONTAINER_MODELS_ROOT,
                        "base_path prefix in the config that --models_root replaces.")
    flags.DEFINE_string("host", "127.0.0.1", "Address to bind (0.0.0.0 to serve others).")
    flags.DEFINE_integer("port", GRPC_PORT, "gRPC port (0: any free port, printed at start).")
    flags.DEFINE_integer("rest_port", None, "REST port; unset: no REST (0: any free port).")
    flags.DEFINE_alias("rest_api_port", "rest_port")
    flags.DEFINE_float("file_system_poll_wait_seconds", 2.0,
                       "Seconds between scans for new versions (0: load once, never rescan).")
    flags.DEFINE_float("model_config_file_poll_wait_seconds", 0.0,
                       "Seconds between re-reads of the model config (0: never, as TF Serving).")
    flags.DEFINE_boolean("enable_model_warmup", True,
                         "Replay assets.extra/tf_serving_warmup_requests before serving.")
    flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0, "TF intra-op threads (0: auto).")
    flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0, "TF inter-op threads (0: auto).")
    flags.DEFINE_integer("grpc_max_threads", 16, "gRPC worker threads.")
    flags.DEFINE_integer("max_message_mb", 2047, "gRPC max message size in MiB (-1: no limit).")
    flags.DEFINE_boolean("annotate_native_stderr", True,
                         "Print native libraries' stderr (libjpeg's warnings, TF C++ logs) with "
                         "the request that was running (serving/standin/native_stderr.py).")
    return flags.FLAGS


def _registry(f) -> tuple[ModelRegistry, ConfigFile | None]:
    """The registry the flags ask for, and the config file to watch (None for --model_name)."""
    try:
        if f.model_config:
            config_file = ConfigFile(f.model_config)
            root = f.models_root or os.path.dirname(os.path.abspath(f.model_config))
            registry = ModelRegistry(config_file.load(), models_root=root,
                                     base_path_prefix=f.model_base_path_prefix,
                                     enable_warmup=f.enable_model_warmup)
            return registry, config_file
        if f.model_name and f.model_base_path:
            config = single_model_config(f.model_name, f.model_base_path)
            return ModelRegistry(config, enable_warmup=f.enable_model_warmup), None
    except (OSError, ValueError, text_format.ParseError) as e:
        sys.exit(f"error: cannot read the model config: {e}")
    sys.exit("error: give --model_config (or --model_name and --model_base_path)")


def main(argv) -> None:
    del argv
    f = flags.FLAGS
    if f.annotate_native_stderr:
        NATIVE.capture()
    if f.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(f.tensorflow_intra_op_parallelism)
    if f.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(f.tensorflow_inter_op_parallelism)
    registry, config_file = _registry(f)
    registry.sync()  # like TF Serving, load what is there before answering
    metrics = Metrics()
    poller = Poller(registry, config_file)
    server = httpd = None
    try:
        server, port = build_grpc_server(registry, f.host, f.port, f.grpc_max_threads,
                                         f.max_message_mb, metrics)
        server.start()
        print(f"{LOG_NAME}: gRPC on {f.host}:{port}", flush=True)
        if f.rest_port is not None:
            httpd, rest_port = build_rest_server(registry, f.host, f.rest_port, metrics)
            threading.Thread(target=httpd.serve_forever, name="rest", daemon=True).start()
            print(f"{LOG_NAME}: REST on {f.host}:{rest_port}", flush=True)
        poller.start(f.file_system_poll_wait_seconds, f.model_config_file_poll_wait_seconds)
        print(f"{LOG_NAME}: ready, models {registry.model_names()} "
              f"(stand-in; production runs tensorflow/serving)", flush=True)
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    except OSError as e:  # a port taken, or an address not on this host
        sys.exit(f"error: {e}: choose another --port / --rest_port (0: any free port) or "
                 f"--host")
    finally:
        poller.stop()
        if httpd is not None:
            httpd.shutdown()
        if server is not None:
            server.stop(grace=2).wait()


def _on_sigterm(signum, frame):  # docker stop, test teardown: stop as Ctrl-C does
    raise KeyboardInterrupt


def run() -> None:
    define_flags()
    signal.signal(signal.SIGTERM, _on_sigterm)
    app.run(main)
