"""The embedding job as an Apache Beam pipeline (`pip install -e '.[beam]'`): the same chunks as
`local_job`, spread over Beam's workers.

The unit of work is a chunk: a PCollection of the missing chunk indices, reshuffled, into a DoFn
that loads the encoder once per worker (setup) and writes one chunk file per element with
`job.embed_chunk` — the single-machine job's own code, so `read_shards` gives the same rows
either way. A chunk already on disk is skipped (also inside the DoFn, for a retried bundle), so a
rerun resumes. `pipeline_args` are Beam's own options (--runner, --direct_num_workers, Flink,
Spark or Dataflow options); `out` must be a folder every worker can write (a shared file system).
The DoFn carries the item list itself (about 100 bytes per item in the pipeline graph), so every
worker sees the driver's exact order without listing the source again.

The DirectRunner (default) runs on Beam's FnApiRunner, the batch engine Beam's DirectRunner uses
when it cannot start Prism: it honours --direct_running_mode / --direct_num_workers and needs no
download (Beam 2.77's DirectRunner first tries to fetch a Prism binary from GitHub, which then
ignores those options). Any other --runner is used as given.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from keras_instance.embedding import job
from keras_instance.embedding.encoder import EncoderSpec
from keras_instance.embedding.items import ItemSource
from keras_instance.embedding.local_job import Progress, duration
from keras_instance.retrieval import embedding_shards as shards


def _beam():
    try:
        import apache_beam
    except ImportError:
        raise ValueError("--engine=beam needs Apache Beam: pip install -e '.[beam]'") from None
    return apache_beam


def _chunk_fn(beam):
    class EmbedChunk(beam.DoFn):
        """Chunk index → its chunk file (rows, skipped); the encoder is loaded once per worker."""

        def __init__(self, plan: job.Plan, source: ItemSource, spec: EncoderSpec,
                     batch_size: int):
            self.plan, self.source, self.spec, self.batch_size = plan, source, spec, batch_size
            self.encoder = None

        def setup(self):
            self.encoder = self.spec.load()

        def process(self, index):
            if os.path.exists(os.path.join(self.plan.out, shards.chunk_name(index))):
                return  # written by an earlier attempt of this bundle, or an earlier run
            yield job.embed_chunk(self.plan, index, self.source, self.encoder,
                                  self.batch_size, log=logging.getLogger(__name__).warning)
    return EmbedChunk


def _runner(beam, options):
    from apache_beam.options.pipeline_options import StandardOptions
    name = options.view_as(StandardOptions).runner
    if name in (None, "DirectRunner", "direct"):
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        return FnApiRunner()
    return None  # Beam picks the runner the options name


def _watch(plan: job.Plan, total: int, progress: Progress, stop: threading.Event) -> None:
    """Progress from the chunk files as they appear (any runner, if `out` is visible here)."""
    seen = set(range(plan.header["num_chunks"])) - set(plan.missing)
    while True:
        finished = stop.wait(2.0)
        for index in sorted(set(plan.missing) - seen):
            if os.path.exists(os.path.join(plan.out, shards.chunk_name(index))):
                seen.add(index)
                chunk = shards.read_chunk(plan.out, index)
                skipped = len(chunk["skipped_ids"])
                progress.chunk_done(index, len(chunk["ids"]) + skipped, skipped)
        if finished:
            return


def run(out: str, source: ItemSource, spec: EncoderSpec, chunk_size: int | None = None,
        batch_size: int = job.DEFAULT_BATCH_SIZE, command: str = "",
        pipeline_args=(), log=print) -> dict:
    """Fill shard folder `out` through a Beam pipeline; returns a summary."""
    beam = _beam()
    from apache_beam.options.pipeline_options import PipelineOptions
    spec = spec.resolved()
    args = list(pipeline_args)
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args.append("--default_sdk_harness_log_level=WARNING")  # workers: no per-bundle INFO
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    options = PipelineOptions(args)

    def dim_feature():
        encoder = spec.load()
        return encoder.dim, encoder.feature
    plan = job.plan(out, source, spec, chunk_size, command, dim_feature)
    n, size = plan.header["num_chunks"], plan.chunk_size
    left = sum(min(size, len(source) - i * size) for i in plan.missing)
    log(f"embedding {len(source)} {source.kind} items of {source.spec} into {out} with Beam: "
        f"{n} chunks of {size}, {n - len(plan.missing)} already done, {len(plan.missing)} to do")
    start = time.monotonic()
    if plan.missing:
        progress = Progress(len(source), len(source) - left, n, log, terminal=False)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(plan, len(source), progress, stop),
                                   daemon=True)
        watcher.start()
        try:
            with beam.Pipeline(runner=_runner(beam, options), options=options) as pipeline:
                _ = (pipeline
                     | "chunks" >> beam.Create(plan.missing)
                     | "spread" >> beam.Reshuffle()
                     | "embed" >> beam.ParDo(_chunk_fn(beam)(plan, source, spec, batch_size)))
        finally:
            stop.set()
            watcher.join()
    missing = shards.missing_chunks(out, plan.header)
    if missing:
        raise ValueError(f"the pipeline ended with {len(missing)} chunk(s) of {out} missing "
                         f"(e.g. {shards.chunk_name(missing[0])}): rerun the same command")
    seconds = time.monotonic() - start
    log(f"done: {out} holds all {n} chunks ({duration(seconds)})")
    return {"out": out, "chunks": n, "seconds": seconds,
            "items_per_second": left / seconds if plan.missing else None}
