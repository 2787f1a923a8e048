"""A stand-in for TF Serving, for machines where `tensorflow/serving` cannot run.

    python -m serving.standin --model_config exports/models.config --port 8500 [--rest_port 8501]

PRODUCTION RUNS tensorflow/serving (serving/README.md). This server answers the same gRPC API
with the same protos (tensorflow-serving-api), so `serving.client`, tests and benchmarks run
unchanged against either. One concept per module:

    main.py             flags, startup (load, then listen), shutdown; `__main__.py` runs it
    quiet_tensorflow.py TensorFlow imported first, without its start-up noise (cuInit E-line)
    model_config.py     models.config: read, checked, container base paths mapped to this host
    version_folders.py  integer version folders on disk, complete ones only
    loaded_version.py   one loaded SavedModel version: Predict with checked inputs, warmup replay
    registry.py         models and their loaded versions: version policy, labels, load/unload
    poller.py           re-scanning version folders and re-reading models.config on a timer
    grpc_api.py         PredictionService and ModelService servicers
    rest_api.py         the REST route table (/v1/models/..., /monitoring/prometheus/metrics)
    rest_json.py        REST JSON ↔ Predict protos (instances / inputs, {"b64": ...})
    request_guard.py    runs each request: number, error → gRPC status, log line, metrics
    errors.py           ServingError and TensorFlow errors as TF Serving reports them
    metrics.py          request counts and latencies in Prometheus text
    native_stderr.py    native stderr (libjpeg, TF C++) printed with the request behind it

What it does, as TF Serving does it:

* PredictionService.Predict and GetModelMetadata (signature_def packed as a SignatureDefMap in
  the metadata's Any); ModelService.GetModelStatus and HandleReloadConfigRequest.
  Classify/Regress/MultiInference answer UNIMPLEMENTED.
* Reads a ModelServerConfig text proto. base_path there is the container path (`/models/<name>`);
  `--model_base_path_prefix` (default /models) is replaced by `--models_root` (default: the folder
  holding the config). Version policies `latest` (default: newest 1), `all`, `specific`, and
  `version_labels`.
* Version folders are integers holding saved_model.pb; they are polled every
  `--file_system_poll_wait_seconds` and a new version is loaded (and warmed up from
  assets.extra/tf_serving_warmup_requests) without restart. The old version keeps serving until
  the new one is available; a version that fails to load is reported in GetModelStatus and the
  previous one keeps serving.
* Errors are gRPC statuses: unknown model or version → NOT_FOUND; unknown version label, wrong
  input names, dtypes or shapes, undecodable tensors, and InvalidArgumentError raised by the model
  → INVALID_ARGUMENT with the message; other TensorFlow errors keep their code; anything
  unexpected → INTERNAL. A bad request never stops the server.
* Each failed request is logged as one line: `predict #N MODEL, inputs NAME: DTYPE[SHAPE] failed:
  CODE: message`. Native stderr (libjpeg's "Unsupported marker type 0x14" while decoding a corrupt
  JPEG, TF C++ logs) is printed with the request that was running (`--noannotate_native_stderr`
  leaves it raw).
* REST (`--rest_port`): the routes in rest_api.py; metrics count a REST request under its model
  and the gRPC name of its route.

Not implemented: server-side batching (`--enable_batching` belongs to tensorflow/serving),
Classify/Regress/MultiInference, SessionService, custom model platforms.
"""
