"""Serving side of keras-instance: TF Serving configuration, a gRPC client, a stand-in server.

Production serves `exports/` with the `tensorflow/serving` image (see serving/README.md).
`serving.client` talks to any server speaking TF Serving's gRPC API (without importing
TensorFlow: `serving.protos`, `serving.tensors`; the calls in `serving.rpc`, the index models'
query API in `serving.query`, what it prints in `serving.output`); `serving.standin`
(`python -m serving.standin`) speaks that API for machines where tensorflow/serving cannot
run. `serving.constants` holds the names both sides (and the exporter) must agree on.
"""
