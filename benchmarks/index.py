"""Index benchmark: exact and IVF search in the SavedModel vs faiss, side by side, in one run.

    .venv/bin/pip install -e '.[bench]'          # faiss-cpu
    .venv/bin/python benchmarks/index.py         # 1M x 256, then 1M x 1024 (about 30 min, 2 cores)
    .venv/bin/python benchmarks/index.py --quick # 100k x 256 only (about a minute)
    .venv/bin/python benchmarks/index.py --shards=IMAGE_SHARDS,CAPTION_SHARDS  # + real embeddings
    .venv/bin/python benchmarks/index.py --copy_on_read  # dense reads after a gather on a variable

Galleries: clustered synthetic embeddings (a Gaussian mixture on the sphere: `--clusters`
centres, each row centre + noise of norm `--spread`, normalised); queries are gallery-like points
(a random gallery row plus noise of norm `--query_noise`, normalised). The defaults (spread 1.5,
query noise 1.0) overlap the clusters enough that nprobe matters (--quick, 100k x 256: recall@10
0.76 / 0.80 / 0.84 at nlist/64, /32, /16, ours and faiss IVF alike); spread 1.0 and query noise
0.6 gave 0.99-1.00 at every nprobe. With `--shards` (image and
caption embedding shards of a run, e.g. Flickr8k's test split): text->image (caption queries over
the image gallery) and image->text, at their real size.

For each gallery, one row per method: exact search in the SavedModel (`search_by_embedding` of
an exact index saved with tf.saved_model.save and loaded with tf.saved_model.load); the IVF index
in the SavedModel at each `--nprobes` (its saved `search_by_embedding_nprobe`) and, at the middle
nprobe, float16 and int8 storage (same centroids); faiss IndexFlatIP; faiss IndexIVFFlat with the
same centroids (an IndexFlatIP quantizer holding ours, the same rows added: the same lists) at
the same nprobes. Columns: recall@10 against exact (NumPy), p50/p99 latency of 1 and of 64
queries, queries/s (64 / p50 of a 64-query call), bytes of the index tensors (rows + scales +
centroids + offsets; per million rows), build time (module + save; faiss: add), and ratios:
exact SavedModel p50 / this p50 (speed-up), this p50 / faiss IVF p50 at the same nprobe.
The machine is named (lscpu) with its load average: other work on it shows in the numbers.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_instance.export import ivf, served_indexes  # noqa: E402

K = 10


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100k x 256 only, fewer repeats")
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--dims", default="256,1024")
    p.add_argument("--clusters", type=int, default=2000)
    p.add_argument("--spread", type=float, default=1.5, help="noise norm around a centre")
    p.add_argument("--query_noise", type=float, default=1.0, help="noise norm of a query")
    p.add_argument("--nprobes", default="", help="default: nlist/64, nlist/32, nlist/16")
    p.add_argument("--nlist_scale", default="256:4,1024:2",
                   help="nlist = scale x sqrt(N) per dimension (the library's default is 4; 2 at "
                        "1024-d keeps k-means and assignment to minutes on 2 cores)")
    p.add_argument("--queries", type=int, default=200, help="queries for recall")
    p.add_argument("--repeats", type=int, default=40, help="timed calls of 1 query")
    p.add_argument("--batch_repeats", type=int, default=8, help="timed calls of 64 queries")
    p.add_argument("--shards", default="", help="IMAGE_SHARDS,CAPTION_SHARDS of a run")
    p.add_argument("--tmp", default=None, help="where the SavedModels go (default: $TMPDIR)")
    p.add_argument("--copy_on_read", action="store_true",
                   help="only: a dense read of a 400k x 256 variable before and after a gather "
                        "on it, and exact search of a GalleryIndex before and after embedding_of")
    args = p.parse_args()
    if args.quick:
        args.size, args.dims, args.repeats, args.batch_repeats = 100_000, "256", 20, 4
    args.dims = [int(d) for d in args.dims.split(",") if d]
    args.nlist_scale = dict(pair.split(":") for pair in args.nlist_scale.split(",") if pair)
    args.nlist_scale = {int(d): float(v) for d, v in args.nlist_scale.items()}
    return args


def synthetic(n, dim, clusters, spread, seed=0, chunk=100_000):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = np.empty((n, dim), np.float32)
    for s in range(0, n, chunk):
        block = rows[s:s + chunk]
        block[:] = rng.standard_normal(block.shape, dtype=np.float32) * (spread / np.sqrt(dim))
        block += centres[rng.integers(0, clusters, len(block))]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return rows


def near(rows, m, noise, seed=1):
    rng = np.random.default_rng(seed)
    q = rows[rng.integers(0, len(rows), m)]
    q = q + rng.standard_normal(q.shape, dtype=np.float32) * (noise / np.sqrt(rows.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top(queries, rows, chunk=50_000):
    """Ground truth: top-K rows per query by NumPy (float32 BLAS), chunked over the gallery."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for s in range(0, len(rows), chunk):
        scores = queries @ rows[s:s + chunk].T
        top = np.argpartition(-scores, min(K, scores.shape[1] - 1), axis=1)[:, :K]
        best_s = np.concatenate([best_s, np.take_along_axis(scores, top, 1)], 1)
        best_i = np.concatenate([best_i, top + s], 1)
        keep = np.argsort(-best_s, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall(found, truth) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def latency(call, queries, batch, repeats):
    """(p50, p99) ms of `call` on `batch` queries, each call a different slice."""
    call(queries[:batch])
    times = []
    for r in range(repeats):
        start = (r * batch) % max(1, len(queries) - batch)
        q = queries[start:start + batch]
        t = time.perf_counter()
        call(q)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def index_bytes(index) -> int:
    return sum(int(np.prod(v.shape)) * v.dtype.size for v in
               (index.rows, index.scale, index.centroids, index.offsets))


def saved_rows(args, name, rows, queries, truth, options, tmp):
    """Build, save, load an EmbeddingIndex; one result row per nprobe (IVF) or one (exact)."""
    t = time.perf_counter()
    module = served_indexes.EmbeddingIndex(rows, [str(i) for i in range(len(rows))], K,
                                                 max_k=K, **options)
    folder = os.path.join(tmp, name.replace(" ", "_"))
    tf.saved_model.save(module, folder, signatures=module.signatures())
    build = time.perf_counter() - t
    size, nlist, kind = index_bytes(module.index), module.index.nlist, module.index.kind
    del module
    gc.collect()
    loaded = tf.saved_model.load(folder)
    none = (tf.constant(K), tf.constant(""), tf.constant([], tf.string))
    out = []
    for nprobe in (args.nprobe_list if kind == "ivf" else [0]):
        if kind == "exact":
            sig = loaded.signatures["search_by_embedding"]

            def call(q, sig=sig):
                return sig(embedding=tf.constant(q), k=none[0], tag=none[1], ids=none[2])["ids"]
        else:
            def call(q, nprobe=nprobe):
                return loaded.search_by_embedding_nprobe(tf.constant(q), *none,
                                                         tf.constant(nprobe))["ids"]
        found = np.concatenate([call(queries[s:s + 64]).numpy().astype(np.int64)
                                for s in range(0, len(queries), 64)])
        row = dict(name=f"{name} nprobe {nprobe}" if kind == "ivf" else name, nprobe=nprobe,
                   recall=recall(found, truth), bytes=size, build=build, nlist=nlist)
        row["p50_1"], row["p99_1"] = latency(call, queries, 1, args.repeats)
        row["p50_64"], row["p99_64"] = latency(call, queries, 64, args.batch_repeats)
        out.append(row)
        print(f"  {row['name']}: recall {row['recall']:.3f}, 1q p50 {row['p50_1']:.2f} ms",
              flush=True)
    loaded = None
    gc.collect()
    shutil.rmtree(folder, ignore_errors=True)
    return out


def faiss_rows(args, rows, queries, truth, centroids):
    import faiss
    out = []
    dim = rows.shape[1]
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(rows)
    build = time.perf_counter() - t

    def search_flat(q):
        return flat.search(q, K)[1]
    row = dict(name="faiss IndexFlatIP", nprobe=0, bytes=rows.nbytes, build=build,
               recall=recall(search_flat(queries), truth))
    row["p50_1"], row["p99_1"] = latency(search_flat, queries, 1, args.repeats)
    row["p50_64"], row["p99_64"] = latency(search_flat, queries, 64, args.batch_repeats)
    out.append(row)
    flat = None
    gc.collect()
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    index = faiss.IndexIVFFlat(quantizer, dim, len(centroids), faiss.METRIC_INNER_PRODUCT)
    assert index.is_trained
    t = time.perf_counter()
    index.add(rows)
    build = time.perf_counter() - t
    for nprobe in args.nprobe_list:
        index.nprobe = nprobe

        def search_ivf(q):
            return index.search(q, K)[1]
        row = dict(name=f"faiss IndexIVFFlat nprobe {nprobe}", nprobe=nprobe,
                   bytes=rows.nbytes + centroids.nbytes, build=build,
                   recall=recall(search_ivf(queries), truth))
        row["p50_1"], row["p99_1"] = latency(search_ivf, queries, 1, args.repeats)
        row["p50_64"], row["p99_64"] = latency(search_ivf, queries, 64, args.batch_repeats)
        out.append(row)
    index = quantizer = None
    gc.collect()
    return out


def print_table(title, rows):
    exact = next(r for r in rows if r["name"].startswith("exact"))
    faiss_ivf = {r["nprobe"]: r for r in rows if r["name"].startswith("faiss IndexIVF")}
    print(f"\n{title}")
    print(f"{'method':34s} {'R@10':>5s} {'1q p50':>7s} {'p99':>7s} {'64q p50':>8s} {'p99':>7s} "
          f"{'q/s':>7s} {'MB':>7s} {'MB/1M':>7s} {'build s':>8s} {'x exact':>8s} "
          f"{'/faissIVF':>9s}")
    for r in rows:
        per_million = r["bytes"] / r.get("size", 1) * 1e6 / 2**20
        twin = faiss_ivf.get(r["nprobe"]) if r["name"].startswith("IVF") else None
        vs = f"{r['p50_1'] / twin['p50_1']:.2f}/{r['p50_64'] / twin['p50_64']:.2f}" if twin else ""
        print(f"{r['name']:34s} {r['recall']:5.3f} {r['p50_1']:7.2f} {r['p99_1']:7.2f} "
              f"{r['p50_64']:8.2f} {r['p99_64']:7.2f} {64e3 / r['p50_64']:7.0f} "
              f"{r['bytes'] / 2**20:7.0f} {per_million:7.0f} {r['build']:8.1f} "
              f"{exact['p50_1'] / r['p50_1']:4.1f}/{exact['p50_64'] / r['p50_64']:<4.1f} {vs:>9s}")
    print("x exact: exact SavedModel p50 / this p50 (1 query / 64 queries); /faissIVF: this p50 / "
          "faiss IVF p50 at the same nprobe (1 / 64)")


def run_gallery(args, title, rows, queries, tmp, nlist_scale=4.0):
    nlist = max(1, min(len(rows), int(round(nlist_scale * np.sqrt(len(rows))))))
    args.nprobe_list = ([int(p) for p in args.nprobes.split(",")] if args.nprobes else
                        sorted({max(1, round(nlist / d)) for d in (64, 32, 16)}))
    print(f"{title}: nlist {nlist} ({nlist_scale:g} sqrt(N)), nprobes {args.nprobe_list}",
          flush=True)
    t = time.perf_counter()
    truth = exact_top(queries, rows)
    print(f"  ground truth (NumPy) {time.perf_counter() - t:.1f} s", flush=True)
    results = saved_rows(args, "exact SavedModel", rows, queries, truth, dict(index="exact"), tmp)
    t = time.perf_counter()
    lists = ivf.build_lists(rows, nlist)
    kmeans = time.perf_counter() - t
    print(f"  IVF lists (scikit-learn k-means on {min(len(rows), ivf.TRAIN_PER_LIST * nlist)} "
          f"rows, then every row assigned) {kmeans:.1f} s", flush=True)
    for storage in ("float32", "float16", "int8"):
        got = saved_rows(args, f"IVF {storage}", rows, queries, truth,
                         dict(index="ivf", storage=storage, lists=lists), tmp)
        for r in got:
            r["build"] += kmeans
        results += got if storage == "float32" else got[len(got) // 2:len(got) // 2 + 1]
    results += faiss_rows(args, rows, queries, truth, lists.centroids)
    for r in results:
        r["size"] = len(rows)
    print_table(f"{title} (build s: IVF rows include k-means + assignment; faiss IVF: add only)",
                results)
    return results


def copy_on_read(n=400_000, dim=256, repeats=10):
    """Why the index never gathers from its variables directly: a tf.gather on a variable
    (ResourceGather) switches it to copy-on-read, and every later dense read copies it."""
    from keras_instance.export import gallery_index

    def p50(call):
        call()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            call()
            times.append((time.perf_counter() - t) * 1000)
        return float(np.percentile(times, 50))
    rows = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    variable = tf.Variable(rows)
    dense = tf.function(lambda: tf.reduce_sum(tf.convert_to_tensor(variable)[:10]))
    gather = tf.function(lambda: tf.reduce_sum(tf.gather(variable, [1, 2, 3])))
    before = p50(lambda: dense().numpy())
    gather().numpy()
    print(f"tf.Variable {n:,} x {dim}: dense read p50 {before:.2f} ms before a tf.gather on it, "
          f"{p50(lambda: dense().numpy()):.2f} ms after")
    dense = gather = variable = None
    index = gallery_index.GalleryIndex(rows, [str(i) for i in range(n)], index="exact")
    query = tf.constant(rows[:1])
    search = tf.function(lambda q: index.search(q, 10, "", tf.constant([], tf.string))["ids"])
    lookup = tf.function(lambda ids: index.embedding_of(ids))
    before = p50(lambda: search(query).numpy())
    lookup(tf.constant(["1", "2"])).numpy()
    print(f"GalleryIndex exact {n:,} x {dim}: 1-query search p50 {before:.2f} ms before "
          f"embedding_of, {p50(lambda: search(query).numpy()):.2f} ms after")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} cores"


def main():
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="index_bench-", dir=args.tmp)
    print(f"machine: {machine()}; load average before: {os.getloadavg()}; TF {tf.__version__}",
          flush=True)
    if args.copy_on_read:
        copy_on_read()
        return
    try:
        for dim in args.dims:
            rows = synthetic(args.size, dim, args.clusters, args.spread)
            queries = near(rows, max(args.queries, 64 + args.repeats), args.query_noise)
            run_gallery(args, f"synthetic {args.size:,} x {dim} ({args.clusters} clusters, "
                        f"spread {args.spread}, query noise {args.query_noise})", rows, queries,
                        tmp, nlist_scale=args.nlist_scale.get(dim, 4.0))
            del rows, queries
            gc.collect()
            print(f"load average now: {os.getloadavg()}", flush=True)
        if args.shards:
            from keras_instance.retrieval.embedding_shards import read_shards
            images, captions = (read_shards(f) for f in args.shards.split(","))
            for title, gallery, queries in (
                    ("text->image (real)", images.embeddings, captions.embeddings),
                    ("image->text (real)", captions.embeddings, images.embeddings)):
                run_gallery(args, f"{title}: {len(gallery):,} x {gallery.shape[1]}", gallery,
                            np.ascontiguousarray(queries), tmp)
        else:
            print("\nreal embeddings: skipped (no --shards=IMAGE_SHARDS,CAPTION_SHARDS given)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
