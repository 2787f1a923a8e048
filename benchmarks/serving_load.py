"""Serving benchmark: gRPC vs in-process, TF top-k vs faiss, and 32 clients under load, in one run.

    .venv/bin/python benchmarks/serving_load.py --workdir runs/demo     # after `make demo`
    .venv/bin/pip install -e '.[bench]'                              # faiss-cpu, for part 2

Run from the repository root. Exports the workdir's latest finished stage with the library
functions behind `python -m keras_instance.cli.export` and `python -m keras_instance.cli.index
--gallery=split:test --models=text_to_image` (into --export_dir, by default a temporary folder
removed at the end; nothing is written into the workdir), starts `serving.standin` on
127.0.0.1 with --port 0 as a subprocess (stopped at the end, whatever happens), and prints:

1. Text query latency, one sentence per request (test captions, in turn), `--requests`
   sequential requests after `--warmup`: the gRPC round trip to the stand-in's `text_encoder`
   (`serving.client.predict`: request proto built, sent, answered, decoded) vs calling the same
   exported SavedModel in this process (`tf.saved_model.load`, after `import tensorflow_text`);
   p50/p99 and their ratio.
2. text→image top-k over a `--gallery_size` × D gallery (random L2-normalised rows, ids
   "img%06d", D from the model): an `export.served_indexes.TextToImageIndex` saved with
   `export.layout.save` and loaded back, as an exact index (`index="exact"`). (a) The search
   step alone: tf.matmul + tf.math.top_k on the loaded model's restored gallery rows vs
   faiss-cpu `IndexFlatIP.search` on the same query embeddings (real test-caption embeddings),
   for each of `--search_batches`; p50 and ratio (faiss with its default OpenMP threads; its
   single-thread time is shown beside it), and a check that both give the same top-k (ids may
   differ only where the float64 scores tie within 1e-5). (b) The whole SavedModel call
   for one sentence (encode + search), p50/p99.
3. Load: `--clients` threads sending single-sentence text_to_image queries to the stand-in for
   `--load_seconds` (alias `--seconds`), once per client style of `--load_styles`: `shared` (each
   thread its own PredictionServiceStub on ONE gRPC channel) and `per_thread` (a channel per
   thread, as a user who opens one per worker); requests served, throughput, p50/p99 latency,
   errors, printed with the conditions (client threads, channels, server worker threads, gallery
   size, CPU model). A request counts as an error if the RPC fails or the answer is not [1, k]
   ids+scores. The gallery is the test split's images, or with `--load_gallery_size=N` N
   synthetic clustered rows written as embedding shards and indexed from them (`--load_index`
   ivf by default) as the next text_to_image version, which the stand-in then serves:

       .venv/bin/python benchmarks/serving_load.py --load_gallery_size=1000000   # 1M IVF index

Exit status: 0; 1 if any load-test error, a top-k mismatch, or the stand-in failed/died;
2 if the workdir holds no finished training stage (run `make demo` first).
Client, stand-in and TensorFlow share this machine's cores: the numbers are for that setup.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: quiet C++ logs

import numpy as np  # noqa: E402

from serving.standin_process import StandinProcess  # noqa: E402

try:
    from machine import cpu_name
except ImportError:  # run from another folder
    from benchmarks.machine import cpu_name

TIE_ATOL = 1e-5
LOAD_STYLES = {"shared": "one shared channel, a stub per thread",
               "per_thread": "one channel per thread"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", default="runs/demo", help="trained workdir (make demo)")
    p.add_argument("--export_dir", default=None,
                   help="where to export (default: a temporary folder, removed at the end)")
    p.add_argument("--requests", type=int, default=300, help="timed requests, part 1")
    p.add_argument("--warmup", type=int, default=20, help="untimed calls before each timing")
    p.add_argument("--gallery_size", type=int, default=100_000, help="part 2 gallery rows")
    p.add_argument("--k", type=int, default=10, help="top-k, parts 2 and 3")
    p.add_argument("--search_batches", default="1,64", help="query batch sizes, part 2(a)")
    p.add_argument("--search_repeats", type=int, default=50, help="timed searches per batch")
    p.add_argument("--full_calls", type=int, default=100, help="timed calls, part 2(b)")
    p.add_argument("--clients", type=int, default=32, help="concurrent client threads, part 3")
    p.add_argument("--load_seconds", "--seconds", type=float, default=60.0,
                   help="load duration per client style, part 3")
    p.add_argument("--load_styles", default="shared,per_thread",
                   help="part 3 client styles, in order: shared (one channel for all threads), "
                        "per_thread (a channel each)")
    p.add_argument("--load_gallery_size", type=int, default=0,
                   help="part 3 gallery: 0 = the test split's images; N = N synthetic clustered "
                        "rows of the model's width, indexed from embedding shards as "
                        "`cli.index --shards` does (e.g. 1000000 for a million-image index)")
    p.add_argument("--load_index", default="ivf", choices=("ivf", "exact"),
                   help="part 3 index over the synthetic gallery")
    p.add_argument("--load_nprobe", type=int, default=0,
                   help="part 3 IVF lists probed per query (0: the index's default)")
    p.add_argument("--server_threads", type=int, default=16, help="stand-in --grpc_max_threads")
    p.add_argument("--deadline_s", type=float, default=30.0, help="per-request gRPC deadline")
    p.add_argument("--server_start_s", type=float, default=300.0,
                   help="longest wait for the stand-in to load its models")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.search_batches = [int(b) for b in args.search_batches.split(",") if b.strip()]
    args.load_styles = [x.strip() for x in args.load_styles.split(",") if x.strip()]
    unknown = sorted(set(args.load_styles) - set(LOAD_STYLES))
    if unknown or not args.load_styles:
        p.error(f"--load_styles: give some of {', '.join(LOAD_STYLES)} (got {unknown or 'none'})")
    if args.load_seconds <= 0:
        p.error("--load_seconds must be positive")
    if min([args.requests, args.warmup + 1, args.gallery_size, args.k, args.search_repeats,
            args.full_calls, args.clients, *args.search_batches]) < 1:
        p.error("counts and sizes must be positive")
    return args


def ms_percentiles(seconds) -> tuple[float, float]:
    a = np.asarray(seconds, np.float64) * 1e3
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def time_calls(fn, n: int, warmup: int) -> np.ndarray:
    """Seconds per call of fn(i) for i in range(n), after `warmup` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - start
    return out


def import_faiss():
    try:
        import faiss
    except ImportError:
        sys.exit("error: faiss is not installed; part 2 compares against faiss-cpu: "
                 ".venv/bin/pip install -e '.[bench]'  (or: pip install faiss-cpu==1.15.1)")
    return faiss


# ------------------------------------------------------------------------ model and export

def load_workdir(workdir: str):
    """(config, stage, weights path, dual, vocab); exits 2 when no stage has finished."""
    from keras_instance import run_folder
    from keras_instance.config import Config
    from keras_instance.text import tokenizer as text
    try:
        config = Config.load(workdir)
        stage, weights = run_folder.latest_weights(config.workdir)
    except FileNotFoundError as err:
        print(f"error: no finished training stage in {workdir!r}: run `make demo` first "
              f"(or pass --workdir).\n  ({err})", file=sys.stderr)
        sys.exit(2)
    dual = run_folder.build_model(config, backbone_weights=None)
    dual.full_model().load_weights(weights)
    vocab = text.Vocabulary.load(run_folder.path(config.workdir, run_folder.VOCAB))
    return config, stage, weights, dual, vocab


def export_models(config, dual, vocab, records, export_dir: str, k: int) -> dict:
    """`cli.export` + `cli.index --gallery=split:test --models=text_to_image` as library calls
    (the run folder's .keras files are not written)."""
    from keras_instance.export import publish as serving_index
    from keras_instance.export import served_model
    exported = serving_index.export_encoders(config, dual, vocab, export_dir)
    indexed = serving_index.build_index(config, dual, vocab, export_dir, "split:test", records,
                                        k=k, models=[serving_index.TEXT_TO_IMAGE],
                                        log=lambda s: None)
    return {"text_encoder": exported[served_model.TEXT_MODEL],
            "text_to_image": indexed[serving_index.TEXT_TO_IMAGE],
            "num_images": indexed["num_images"], "k": indexed["k_text_to_image"]}


def index_synthetic_gallery(args, config, dual, vocab, export_dir: str, tmp: str) -> dict:
    """Part 3's large gallery: synthetic rows written as image embedding shards, then indexed
    from them into `export_dir` as the next text_to_image version (`cli.index --shards`)."""
    from keras_instance.export import publish
    from keras_instance.retrieval import embedding_shards
    try:
        from index import synthetic  # benchmarks/index.py's clustered gallery
    except ImportError:  # run from another folder
        from benchmarks.index import synthetic
    n, dim = args.load_gallery_size, int(config.model.embed_dim)
    ids = [f"img{i:07d}" for i in range(n)]
    table = embedding_shards.EmbeddingTable(
        synthetic(n, dim, seed=args.seed), ids,
        [f"synthetic/{i}.jpg" for i in ids], [""] * n, [[] for _ in ids], "image",
        {"feature": config.test.test_feature, "source": {"description": "synthetic, clustered"},
         "encoder": {"fingerprint": "", "description": "synthetic rows"}})
    folder = embedding_shards.write_table(os.path.join(tmp, "synthetic_shards"), table,
                                          chunk_size=100_000)
    del table
    described = []
    built = publish.build_index(config, dual, vocab, export_dir, shards=[folder], k=args.k,
                                models=[publish.TEXT_TO_IMAGE], index=args.load_index,
                                nprobe=args.load_nprobe or None, log=described.append)
    return {"num_images": n, "k": built["k_" + publish.TEXT_TO_IMAGE],
            "describe": next((d for d in described if "top-" in d), "")}


# ------------------------------------------------------------------------ the stand-in

def start_standin(export_dir: str, log_path: str, threads: int, start_s: float
                  ) -> StandinProcess:
    """The stand-in on 127.0.0.1 (free port) serving `export_dir`; stderr goes to `log_path`."""
    return StandinProcess(
        [f"--model_config={os.path.join(export_dir, 'models.config')}",
         f"--models_root={export_dir}", "--file_system_poll_wait_seconds=0",
         f"--grpc_max_threads={threads}"], log_path, start_s=start_s)


# ------------------------------------------------------------------------ part 1

def bench_text_latency(args, server: StandinProcess, text_encoder_dir: str, sentences: list[str]):
    import tensorflow as tf

    from serving import client
    channel = client.make_channel(server.address)
    try:
        stub = client.prediction_stub(channel)

        def grpc_call(i):
            sentence = sentences[i % len(sentences)]
            out = client.predict(stub, "text_encoder", {"sentences": [sentence]},
                                 timeout=args.deadline_s)
            assert out["embedding"].shape[0] == 1
        grpc_s = time_calls(grpc_call, args.requests, args.warmup)
    finally:
        channel.close()
    serve = tf.saved_model.load(text_encoder_dir).signatures["serving_default"]
    inputs = [tf.constant([s]) for s in sentences]

    def local_call(i):
        serve(sentences=inputs[i % len(inputs)])["embedding"].numpy()
    local_s = time_calls(local_call, args.requests, args.warmup)
    return ms_percentiles(grpc_s), ms_percentiles(local_s)


# ------------------------------------------------------------------------ part 2

def same_top_k(ids_a, ids_b, queries, gallery, k) -> tuple[int, int, bool]:
    """(rows identical, rows, all valid): both id lists must hold scores equal to the float64
    reference top-k scores within TIE_ATOL, rank by rank (ids may differ only on ties)."""
    scores = queries.astype(np.float64) @ gallery.astype(np.float64).T
    best = -np.sort(-scores, axis=1)[:, :k]
    identical, valid = 0, True
    for q in range(len(queries)):
        identical += int(np.array_equal(ids_a[q], ids_b[q]))
        for ids in (ids_a[q], ids_b[q]):
            valid &= len(set(ids.tolist())) == k and \
                bool(np.allclose(scores[q, ids], best[q], rtol=0, atol=TIE_ATOL))
    return identical, len(queries), valid


def bench_search(args, config, dual, vocab, text_encoder_dir: str, sentences: list[str], tmp):
    import tensorflow as tf

    from keras_instance.export import layout, served_encoders, served_indexes
    faiss = import_faiss()
    k = args.k
    text_module = served_encoders.text_module(config, dual, vocab)
    dim = text_module.embed_dim
    rng = np.random.default_rng(args.seed)
    gallery = rng.standard_normal((args.gallery_size, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    ids = [f"img{i:06d}" for i in range(args.gallery_size)]
    module = served_indexes.TextToImageIndex(text_module, gallery, ids, k=k, index="exact")
    path = layout.save(module, tmp, 1)
    del module
    loaded = tf.saved_model.load(path)
    assert tuple(loaded.index.rows.shape) == (args.gallery_size, dim)
    search = tf.function(lambda q: tf.math.top_k(tf.matmul(q, loaded.index.rows,
                                                           transpose_b=True), k=k),
                         input_signature=[tf.TensorSpec([None, dim], tf.float32)])

    encode = tf.saved_model.load(text_encoder_dir).signatures["serving_default"]
    pool = [sentences[i % len(sentences)] for i in range(max(args.search_batches))]
    query_pool = encode(sentences=tf.constant(pool))["embedding"].numpy()

    index = faiss.IndexFlatIP(dim)
    index.add(gallery)
    rows, all_valid = [], True
    for batch in args.search_batches:
        queries = np.ascontiguousarray(query_pool[:batch])
        q_tensor = tf.constant(queries)
        tf_s = time_calls(lambda i: search(q_tensor).indices.numpy(), args.search_repeats,
                          max(args.warmup // 4, 2))
        faiss_s = time_calls(lambda i: index.search(queries, k), args.search_repeats,
                             max(args.warmup // 4, 2))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # also single-threaded: OpenMP spinning on shared cores
        try:
            faiss1_s = time_calls(lambda i: index.search(queries, k), args.search_repeats,
                                  max(args.warmup // 4, 2))
        finally:
            faiss.omp_set_num_threads(threads)
        top = search(q_tensor)
        tf_ids = tf.gather(loaded.index.ids, top.indices).numpy()
        tf_idx = np.array([[int(s[3:]) for s in row] for row in tf_ids])  # "img%06d" → index
        _, faiss_idx = index.search(queries, k)
        identical, n, valid = same_top_k(tf_idx, faiss_idx, queries, gallery, k)
        all_valid &= valid
        rows.append((batch, ms_percentiles(tf_s), ms_percentiles(faiss_s),
                     ms_percentiles(faiss1_s), identical, n, valid))

    serve = loaded.signatures["serving_default"]
    inputs = [tf.constant([s]) for s in sentences]
    full_s = time_calls(lambda i: serve(sentences=inputs[i % len(inputs)])["ids"].numpy(),
                        args.full_calls, args.warmup)
    # The whole call's answer for one sentence equals faiss's on that sentence's embedding.
    full_ids = serve(sentences=inputs[0])["ids"].numpy()
    full_idx = np.array([[int(s[3:]) for s in row] for row in full_ids])
    _, faiss_idx = index.search(query_pool[:1], k)
    identical, _, valid = same_top_k(full_idx, faiss_idx, query_pool[:1], gallery, k)
    all_valid &= valid
    return dim, rows, ms_percentiles(full_s), (identical, valid), all_valid, faiss


# ------------------------------------------------------------------------ part 3

def bench_load(args, server: StandinProcess, sentences: list[str], k: int, style: str):
    """One client style under load: (served, seconds, (p50, p99) ms, errors)."""
    import grpc

    from serving import client
    shared = client.make_channel(server.address) if style == "shared" else None
    latencies = [[] for _ in range(args.clients)]
    errors = [[] for _ in range(args.clients)]
    go = threading.Event()
    stop_at = [0.0]

    def worker(c):
        channel = shared or client.make_channel(server.address)
        stub = client.prediction_stub(channel)
        go.wait()
        i = c
        try:
            while time.perf_counter() < stop_at[0]:
                sentence = sentences[i % len(sentences)]
                i += args.clients
                start = time.perf_counter()
                try:
                    out = client.predict(stub, "text_to_image", {"sentences": [sentence]},
                                         timeout=args.deadline_s)
                except grpc.RpcError as err:
                    errors[c].append(f"{err.code().name}: {err.details()}")
                    continue
                elapsed = time.perf_counter() - start
                if out.get("ids") is None or out["ids"].shape != (1, k) or \
                        out.get("scores") is None or out["scores"].shape != (1, k):
                    errors[c].append(f"bad answer: { {n: v.shape for n, v in out.items()} }")
                    continue
                latencies[c].append(elapsed)
        except Exception as err:  # noqa: BLE001  (anything else is an error too)
            errors[c].append(f"{type(err).__name__}: {err}")
        finally:
            if shared is None:
                channel.close()

    threads = [threading.Thread(target=worker, args=(c,), daemon=True)
               for c in range(args.clients)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    stop_at[0] = start + args.load_seconds
    go.set()
    for t in threads:
        t.join(timeout=args.load_seconds + args.deadline_s + 30)
    elapsed = time.perf_counter() - start
    hung = sum(t.is_alive() for t in threads)
    if shared is not None:
        shared.close()
    flat = [x for per in latencies for x in per]
    errs = ([e for per in errors for e in per]
            + [f"{hung} client threads still running"] * bool(hung))
    return len(flat), elapsed, (ms_percentiles(flat) if flat else (float("nan"),) * 2), errs


# ------------------------------------------------------------------------ main

def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.path.isdir(args.workdir):
        print(f"error: {args.workdir!r} does not exist: run `make demo` first "
              "(or pass --workdir).", file=sys.stderr)
        return 2
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers NormalizeUTF8 / CaseFoldUTF8 for loading)

    from keras_instance.data import readers
    from keras_instance.data.records import split_records

    config, stage, weights, dual, vocab = load_workdir(args.workdir)
    import_faiss()  # fail before the long parts when it is missing
    records = readers.load(config.data)
    sentences = [c for r in split_records(records, "test") for c in r.captions]
    if not sentences:
        print("error: the workdir's dataset has no test captions", file=sys.stderr)
        return 1

    failures = []
    load_before = os.getloadavg()[0]  # other work on the machine shows here
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        export_dir = os.path.abspath(args.export_dir or os.path.join(tmp, "exports"))
        t0 = time.perf_counter()
        exported = export_models(config, dual, vocab, records, export_dir, args.k)
        export_s = time.perf_counter() - t0
        loaded_gallery = {"num_images": exported["num_images"], "k": exported["k"],
                          "describe": "exact, the test split's images"}
        large_s = 0.0
        if args.load_gallery_size:
            t0 = time.perf_counter()
            loaded_gallery = index_synthetic_gallery(args, config, dual, vocab, export_dir, tmp)
            large_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            server = start_standin(export_dir, os.path.join(tmp, "standin.log"),
                                   args.server_threads, args.server_start_s)
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        start_s = time.perf_counter() - t0
        try:
            grpc_ms, local_ms = bench_text_latency(args, server, exported["text_encoder"],
                                                   sentences)
            dim, search_rows, full_ms, full_check, topk_ok, faiss = bench_search(
                args, config, dual, vocab, exported["text_encoder"], sentences,
                os.path.join(tmp, "gallery"))
            loads = {style: bench_load(args, server, sentences, loaded_gallery["k"], style)
                     for style in args.load_styles}
            if not server.alive():
                failures.append(f"the stand-in died:\n{server.log_tail()}")
        finally:
            server.stop()

    # ------------------------------------------------------------------ the table
    cores = os.cpu_count()
    print("command: " + " ".join([os.path.relpath(sys.executable), *sys.argv]))
    print(f"keras-instance serving benchmark: {args.workdir} stage {stage}, D={dim}, k={args.k}; "
          f"{cpu_name()}, TF {tf.__version__}, faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} OpenMP threads), devices "
          f"{[d.name for d in tf.config.list_logical_devices()]}")
    print(f"export + index (split:test, {exported['num_images']} images) {export_s:.0f} s; "
          f"stand-in (grpc_max_threads {args.server_threads}) ready in {start_s:.0f} s; "
          f"client, stand-in and TF share the machine; 1-min load average before the run "
          f"{load_before:.2f} (well above 0: other work was running)")
    if args.load_gallery_size:
        print(f"part 3's gallery: {args.load_gallery_size:,} synthetic rows as embedding "
              f"shards, indexed in {large_s:.0f} s: {loaded_gallery['describe']}")
    print()
    print(f"1. text query, 1 sentence/request, {args.requests} sequential after {args.warmup} "
          "warm-up")
    label_width = 66
    print(f"   {'':{label_width}s}{'p50 ms':>9s}{'p99 ms':>9s}")
    for label, (p50, p99) in (
            ("gRPC round trip, stand-in text_encoder (serving.client.predict)", grpc_ms),
            ("in-process call, same SavedModel (tf.saved_model.load)", local_ms)):
        print(f"   {label:{label_width}s}{p50:9.2f}{p99:9.2f}")
    print(f"   {'ratio gRPC / in-process':{label_width}s}{grpc_ms[0] / local_ms[0]:8.2f}x"
          f"{grpc_ms[1] / local_ms[1]:8.2f}x")
    print()
    print(f"2. text->image top-{args.k} over a {args.gallery_size:,} x {dim} gallery "
          f"(random L2-normalised rows), SavedModel saved and loaded")
    print(f"   (a) search only, p50 ms over {args.search_repeats} runs: TF = the loaded model's "
          f"matmul + top_k on its rows; faiss = IndexFlatIP.search")
    print(f"       queries   TF {tf.config.threading.get_intra_op_parallelism_threads() or cores}"
          f" thr   faiss {faiss.omp_get_max_threads()} thr   TF/faiss   faiss 1 thr   "
          f"same top-{args.k} as faiss (ties allowed)")
    for batch, tf_ms, faiss_ms, faiss1_ms, identical, n, valid in search_rows:
        verdict = ("yes" if valid else "NO") + f", {identical}/{n} rows identical"
        ratio = tf_ms[0] / faiss_ms[0]
        print(f"       {batch:7d}  {tf_ms[0]:9.2f}  {faiss_ms[0]:12.2f}  {ratio:8.2f}x"
              f"  {faiss1_ms[0]:12.2f}   {verdict}")
    print(f"   (b) whole SavedModel call, 1 sentence (encode + search), {args.full_calls} runs: "
          f"p50 {full_ms[0]:.2f} ms, p99 {full_ms[1]:.2f} ms; top-{args.k} = faiss's: "
          f"{'yes' if full_check[1] else 'NO'}")
    if not topk_ok:
        failures.append("TF and faiss top-k differ beyond ties")
    print()
    print(f"3. load: {args.clients} client threads, {args.load_seconds:g} s per client style, "
          f"1-sentence text_to_image queries (gallery {loaded_gallery['num_images']:,} images"
          f", {loaded_gallery['describe']}; top-{loaded_gallery['k']})")
    print(f"   conditions: stand-in grpc_max_threads {args.server_threads}, TF threads default; "
          f"{cpu_name()} shared by clients and server")
    print(f"   {'client style':40s}{'channels':>9s}{'served':>8s}{'req/s':>8s}{'p50 ms':>8s}"
          f"{'p99 ms':>8s}{'errors':>7s}")
    for style, (served, load_s, load_ms, errors) in loads.items():
        channels = 1 if style == "shared" else args.clients
        print(f"   {LOAD_STYLES[style]:40s}{channels:9d}{served:8d}{served / load_s:8.1f}"
              f"{load_ms[0]:8.1f}{load_ms[1]:8.1f}{len(errors):7d}")
        if errors:
            shown = sorted(set(errors))[:5]
            failures.append(f"{style}: {len(errors)} load-test errors, e.g.: " + "; ".join(shown))
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
