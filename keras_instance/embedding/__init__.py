"""Embedding a gallery at scale: items (what to embed), the encoder (the served models' code),
one chunk of work (`job`), run on one machine (`local_job`) or as an Apache Beam pipeline
(`beam_job`), written as `retrieval.embedding_shards`."""
