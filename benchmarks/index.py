"""Index benchmark: exact and IVF search in the SavedModel vs faiss, side by side, in one run.

    .venv/bin/pip install -e '.[bench]'          # faiss-cpu
    .venv/bin/python benchmarks/index.py         # 1M x 256, then 1M x 1024 (about 40 min, 2 cores)
    .venv/bin/python benchmarks/index.py --quick # 100k x 256 only (about a minute)
    .venv/bin/python benchmarks/index.py --dims= --shards=IMAGE_SHARDS,CAPTION_SHARDS  # real only
    .venv/bin/python benchmarks/index.py --copy_on_read  # dense reads after a gather on a variable
    .venv/bin/python benchmarks/index.py --read_rates    # GB/s of one thread: TF, faiss, NumPy
    .venv/bin/python benchmarks/index.py --scans         # ivf.probe's two scans, side by side

Synthetic galleries (`Mixture`): clustered rows on a low-dimensional manifold, whose recall@10
against the share of lists probed follows real embeddings (the Flickr8k recipe's text->image:
0.68 / 0.81 / 0.89 / 0.95 at 1/128, 1/64, 1/32, 1/16 of the lists at 8,000 images; the mixture
at that size: 0.68 / 0.82 / 0.90 / 0.96; benchmarks/calibrate.py prints both); queries are
other draws of the mixture. With `--shards` (image and caption embedding shards of a run, e.g.
every Flickr8k split embedded by `keras_instance.cli.embed`): text->image (caption queries over
the image gallery) and image->text, at their real size.

For each gallery, the nprobe whose recall@10 reaches `--target_recall` (0.95) is found with faiss
on the same lists (ours finds the same rows), and timed with a quarter and a half of it. One row
per method: exact search in the SavedModel (its `search_by_embedding` signature, saved with
tf.saved_model.save and loaded with tf.saved_model.load); the IVF index in the SavedModel at each
nprobe (its `search_by_embedding_nprobe` signature) and, at the target nprobe, float16 and int8
storage (same lists); faiss IndexFlatIP; faiss IndexIVFFlat with the same lists (an IndexFlatIP
quantizer holding our centroids, the same rows added) at the same nprobes, and its
IndexIVFScalarQuantizer (8-bit, rows encoded directly as ours) at the target. Columns:
recall@10 against exact (NumPy), p50/p99 latency of 1 and of 64 queries, queries/s (64 / p50 of
a 64-query call), bytes of the index tensors (rows + scales + centroids + offsets; per million
rows), build time (k-means, assignment, module with its nprobe measurement, save; faiss: add),
and ratios: exact SavedModel p50 / this p50 (speed-up), this p50 / faiss p50 at the same nprobe.
The machine is named (lscpu) with its load average: other work on it shows in the numbers.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_instance.export import ivf, served_indexes  # noqa: E402

try:
    from machine import cpu_name
except ImportError:  # run from another folder
    from benchmarks.machine import cpu_name

K = 10
# The synthetic galleries' mixture (class Mixture), set so that its recall@10 against nprobe / nlist
# follows the Flickr8k recipe's real text->image embeddings at the same nlist / sqrt(N)
# (calibrate.py beside this file prints both curves).
LATENT, SPREAD, AMBIENT, ROWS_PER_CLUSTER = 16, 0.9, 0.5, 100


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="100k x 256 only, fewer repeats")
    p.add_argument("--size", type=int, default=1_000_000)
    p.add_argument("--dims", default="256,1024")
    p.add_argument("--latent", type=int, default=LATENT, help="the mixture's latent dimensions")
    p.add_argument("--spread", type=float, default=SPREAD, help="a cluster's spread (latent)")
    p.add_argument("--ambient", type=float, default=AMBIENT, help="isotropic noise norm")
    p.add_argument("--nprobes", default="",
                   help="nprobe values to time (default: the smallest nprobe whose recall@10 "
                        "reaches --target_recall, found with faiss on the same lists, and a "
                        "quarter and half of it)")
    p.add_argument("--target_recall", type=float, default=0.95)
    p.add_argument("--nlist_scale", default="256:4,1024:2",
                   help="nlist = scale x sqrt(N) per dimension (the library's default is 4; 2 at "
                        "1024-d keeps k-means and assignment to minutes on 2 cores)")
    p.add_argument("--queries", type=int, default=200, help="queries for recall")
    p.add_argument("--repeats", type=int, default=40, help="timed calls of 1 query")
    p.add_argument("--batch_repeats", type=int, default=8, help="timed calls of 64 queries")
    p.add_argument("--shards", default="",
                   help="IMAGE_SHARDS,CAPTION_SHARDS of a run (several folders of one kind "
                        "joined by +)")
    p.add_argument("--tmp", default=None, help="where the SavedModels go (default: $TMPDIR)")
    p.add_argument("--read_rates", action="store_true",
                   help="only: GB/s of one thread scoring stored rows: TF's matvec, faiss, NumPy")
    p.add_argument("--scans", action="store_true",
                   help="only: ivf.probe's scans (by query, by list, the default "
                        "choice) on the synthetic galleries at the target nprobe, 1/8/64 queries")
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


class Mixture:
    """Clustered rows on a low-dimensional manifold, L2-normalised: a mixture in a
    `latent`-dimensional space of n / ROWS_PER_CLUSTER Gaussian clusters (centres N(0, I), each
    row its centre + N(0, spread^2 I)), mapped to `dim` dimensions by a fixed random orthonormal
    basis, plus isotropic noise of norm `ambient`. The clusters grow in number with the gallery,
    so its difficulty does not hinge on how nlist compares with a fixed cluster count (with 2,000
    fixed clusters, 1M rows needed 3 of 4,000 lists for recall@10 0.95 and 100k rows 409 of
    1,265). Queries are other draws of the same mixture, as a caption is not a gallery image."""

    def __init__(self, n, dim, latent=None, spread=None, ambient=None):
        self.latent = latent or LATENT
        self.spread = SPREAD if spread is None else spread
        self.ambient = AMBIENT if ambient is None else ambient
        rng = np.random.default_rng(12345)
        self.basis = np.linalg.qr(rng.standard_normal((dim, self.latent)))[0].T.astype(np.float32)
        self.centres = rng.standard_normal((max(1, n // ROWS_PER_CLUSTER), self.latent)
                                           ).astype(np.float32)

    def draw(self, m, seed, chunk=100_000):
        rng = np.random.default_rng(seed)
        dim = self.basis.shape[1]
        rows = np.empty((m, dim), np.float32)
        for s in range(0, m, chunk):
            block = rows[s:s + chunk]
            z = self.centres[rng.integers(0, len(self.centres), len(block))]
            z = z + rng.standard_normal(z.shape, dtype=np.float32) * self.spread
            block[:] = z @ self.basis
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            block += rng.standard_normal(block.shape, dtype=np.float32) * (
                self.ambient / np.sqrt(dim))
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        return rows

    def describe(self) -> str:
        return (f"{len(self.centres)} clusters in {self.latent} latent dims, spread "
                f"{self.spread}, ambient noise {self.ambient}")


def synthetic(n, dim, seed=0, **options):
    """n rows of `Mixture(n, dim, **options)` (serving_load.py's gallery too)."""
    return Mixture(n, dim, **options).draw(n, seed)


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


def measured(args, search, queries, truth, found=None, **row) -> dict:
    """A result row: recall@10 of `search` (queries -> ids [N, K]; `found`: its answers already
    computed) and its p50/p99 latency for 1 and for 64 queries."""
    row["recall"] = ivf.recall_at_k(search(queries) if found is None else found, truth)
    row["p50_1"], row["p99_1"] = latency(search, queries, 1, args.repeats)
    row["p50_64"], row["p99_64"] = latency(search, queries, 64, args.batch_repeats)
    return row


def index_bytes(index) -> int:
    return sum(int(np.prod(v.shape)) * v.dtype.size for v in
               (index.rows, index.scale, index.centroids, index.offsets))


def saved_rows(args, name, rows, queries, truth, options, tmp, nprobes=()):
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
    for nprobe in (nprobes if kind == "ivf" else [0]):
        if kind == "exact":
            sig = loaded.signatures["search_by_embedding"]

            def call(q, sig=sig):
                return sig(embedding=tf.constant(q), k=none[0], tag=none[1], ids=none[2])["ids"]
        else:  # the served signature with a per-request nprobe
            sig = loaded.signatures["search_by_embedding_nprobe"]

            def call(q, sig=sig, nprobe=tf.constant(nprobe)):
                return sig(embedding=tf.constant(q), k=none[0], tag=none[1], ids=none[2],
                           nprobe=nprobe)["ids"]
        found = np.concatenate([call(queries[s:s + 64]).numpy().astype(np.int64)
                                for s in range(0, len(queries), 64)])  # an exact [Q, G] is big
        row = measured(args, call, queries, truth, found,
                       name=f"{name} nprobe {nprobe}" if kind == "ivf" else name, nprobe=nprobe,
                       bytes=size, build=build, nlist=nlist)
        out.append(row)
        print(f"  {row['name']}: recall {row['recall']:.3f}, 1q p50 {row['p50_1']:.2f} ms",
              flush=True)
    loaded = None
    gc.collect()
    shutil.rmtree(folder, ignore_errors=True)
    return out


def faiss_ivf(rows, centroids, storage="float32"):
    """faiss IndexIVFFlat (or IndexIVFScalarQuantizer for int8/float16) on OUR lists: an
    IndexFlatIP quantizer holding our centroids, the same rows added, so each probe scans the
    same rows as ours; the scalar quantizer encodes rows directly, not residuals, as ours."""
    import faiss
    dim = rows.shape[1]
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(centroids)
    if storage == "float32":
        index = faiss.IndexIVFFlat(quantizer, dim, len(centroids), faiss.METRIC_INNER_PRODUCT)
    else:
        kind = {"int8": faiss.ScalarQuantizer.QT_8bit, "float16": faiss.ScalarQuantizer.QT_fp16}
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, len(centroids), kind[storage],
                                              faiss.METRIC_INNER_PRODUCT, False)
        index.train(rows[:: max(1, len(rows) // 100_000)])  # the scalar ranges only
    t = time.perf_counter()
    index.add(rows)
    return index, time.perf_counter() - t


def target_nprobe(index, queries, truth, target: float) -> tuple[int, float]:
    """The smallest nprobe whose recall@10 reaches `target` (doubling, then bisection), with
    its recall; nlist when none does."""
    nlist = index.nlist

    def at(nprobe):
        index.nprobe = nprobe
        return ivf.recall_at_k(index.search(queries, K)[1], truth)
    low, high = 0, 1
    while high < nlist and at(high) < target:
        low, high = high, min(nlist, high * 2)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if at(middle) < target else (low, middle)
    return high, at(high)


def faiss_rows(args, rows, queries, truth, centroids):
    import faiss
    out = []
    dim = rows.shape[1]
    t = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(rows)
    build = time.perf_counter() - t

    out.append(measured(args, lambda q: flat.search(q, K)[1], queries, truth,
                        name="faiss IndexFlatIP", nprobe=0, bytes=rows.nbytes, build=build))
    flat = None
    gc.collect()
    for storage in ("float32", "int8"):
        index, build = faiss_ivf(rows, centroids, storage)
        name = "faiss IndexIVFFlat" if storage == "float32" else "faiss IVF SQ8 (int8)"
        per_row = dim * (4 if storage == "float32" else 1)
        for nprobe in (args.nprobe_list if storage == "float32" else [args.nprobe_list[-1]]):
            index.nprobe = nprobe
            out.append(measured(args, lambda q: index.search(q, K)[1], queries, truth,
                                name=f"{name} nprobe {nprobe}", nprobe=nprobe, storage=storage,
                                faiss_ivf=True, bytes=len(rows) * per_row + centroids.nbytes,
                                build=build))
        index = None
        gc.collect()
    return out


def print_table(title, rows, target):
    exact = next(r for r in rows if r["name"].startswith("exact"))
    faiss_ivf_rows = {(r["storage"], r["nprobe"]): r for r in rows if r.get("faiss_ivf")}
    print(f"\n{title}")
    print(f"{'method':34s} {'R@10':>5s} {'1q p50':>7s} {'p99':>7s} {'64q p50':>8s} {'p99':>7s} "
          f"{'q/s':>7s} {'MB':>7s} {'MB/1M':>7s} {'build s':>8s} {'x exact':>9s} "
          f"{'/faiss':>10s}")
    for r in rows:
        per_million = r["bytes"] / r["size"] * 1e6 / 2**20
        twin = None
        if r["name"].startswith("IVF"):  # faiss on the same lists: IVFFlat, or SQ8 for int8
            twin = faiss_ivf_rows.get(("int8" if r["storage"] == "int8" else "float32",
                                       r["nprobe"]))
        vs = f"{r['p50_1'] / twin['p50_1']:.2f}/{r['p50_64'] / twin['p50_64']:.2f}" if twin else ""
        print(f"{r['name']:34s} {r['recall']:5.3f} {r['p50_1']:7.2f} {r['p99_1']:7.2f} "
              f"{r['p50_64']:8.2f} {r['p99_64']:7.2f} {64e3 / r['p50_64']:7.0f} "
              f"{r['bytes'] / 2**20:7.0f} {per_million:7.0f} {r['build']:8.1f} "
              f"{exact['p50_1'] / r['p50_1']:4.1f}/{exact['p50_64'] / r['p50_64']:<4.1f} "
              f"{vs:>10s}")
    print("x exact: exact SavedModel p50 / this p50 (1 query / 64 queries); /faiss: this p50 / "
          "faiss p50 on the same lists at the same nprobe (IVFFlat; SQ8 for int8), 1 / 64")
    ours = [r for r in rows if r["name"].startswith("IVF") and r["recall"] >= target]
    for r in sorted(ours, key=lambda r: r["p50_1"])[:2]:
        twin = faiss_ivf_rows[("float32", r["nprobe"])]
        print(f"at recall@10 >= {target}: {r['name']} (recall {r['recall']:.3f}) is "
              f"x{exact['p50_1'] / r['p50_1']:.1f} / x{exact['p50_64'] / r['p50_64']:.1f} the "
              f"exact SavedModel's speed (1 / 64 queries; target >= 10) and "
              f"{r['p50_1'] / twin['p50_1']:.2f} / {r['p50_64'] / twin['p50_64']:.2f} x faiss "
              f"IndexIVFFlat's latency (target <= 2)")
    if not ours:
        print(f"no IVF row reaches recall@10 {target}")


def nlist_for(num_rows: int, scale: float) -> int:
    """scale x sqrt(N) lists, at least 1, at most N (ivf.default_nlist is scale 4)."""
    return max(1, min(num_rows, int(round(scale * np.sqrt(num_rows)))))


def run_gallery(args, title, rows, queries, tmp, nlist_scale=4.0):
    nlist = nlist_for(len(rows), nlist_scale)
    print(f"{title}: nlist {nlist} ({nlist_scale:g} sqrt(N))", flush=True)
    t = time.perf_counter()
    truth = ivf.exact_top_k(queries, rows, K)
    print(f"  ground truth (NumPy) {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    lists = ivf.build_lists(rows, nlist)
    kmeans = time.perf_counter() - t
    print(f"  IVF lists (scikit-learn k-means on {min(len(rows), ivf.TRAIN_PER_LIST * nlist)} "
          f"rows, then every row assigned) {kmeans:.1f} s", flush=True)
    if args.nprobes:
        args.nprobe_list = [int(p) for p in args.nprobes.split(",")]
    else:
        index, _ = faiss_ivf(rows, lists.centroids)
        best, reached = target_nprobe(index, queries, truth, args.target_recall)
        index = None
        args.nprobe_list = sorted({max(1, best // 4), max(1, best // 2), best})
        print(f"  recall@10 {reached:.3f} at nprobe {best} of {nlist} (faiss, same lists): "
              f"timing nprobe {args.nprobe_list}", flush=True)
    results = saved_rows(args, "exact SavedModel", rows, queries, truth, dict(index="exact"), tmp)
    for storage in ("float32", "float16", "int8"):
        got = saved_rows(args, f"IVF {storage}", rows, queries, truth,
                         dict(index="ivf", storage=storage, lists=lists), tmp,
                         args.nprobe_list if storage == "float32" else args.nprobe_list[-1:])
        for r in got:
            r["build"] += kmeans
            r["storage"] = storage
        results += got
    results += faiss_rows(args, rows, queries, truth, lists.centroids)
    for r in results:
        r["size"] = len(rows)
    print_table(f"{title} (build s: IVF rows include k-means + assignment; faiss IVF: add only)",
                results, args.target_recall)
    return results


def read_rates(n=1_000_000, dim=256, rows_per_step=16_384):
    """Why an IVF scan in TensorFlow ops trails faiss's: GB/s of stored rows scored against one
    query on one thread, by TF's matvec over slices of a [n, dim] tensor (the kernel a probe
    runs; oneDNN's and Eigen's alike), faiss's IndexFlatIP and NumPy's matmul."""
    import faiss
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    faiss.omp_set_num_threads(1)
    rows = np.random.default_rng(0).standard_normal((n, dim), dtype=np.float32)
    query = rows[:1] * 0.5
    stored, q = tf.constant(rows), tf.constant(query[0])
    steps = n // rows_per_step

    @tf.function
    def tf_scan():
        def body(i, out):
            block = stored[i * rows_per_step:(i + 1) * rows_per_step]  # a slice: no copy
            return i + 1, out.write(i, tf.linalg.matvec(block, q))
        return tf.while_loop(lambda i, _: i < steps, body,
                             (0, tf.TensorArray(tf.float32, steps)))[1].stack()
    flat = faiss.IndexFlatIP(dim)
    flat.add(rows)
    calls = {"TF matvec over slices": lambda: tf_scan().numpy(),
             "faiss IndexFlatIP.search": lambda: flat.search(query, K),
             "NumPy rows @ query": lambda: rows @ query[0]}
    for name, call in calls.items():
        call()
        best = min(_timed(call) for _ in range(5))
        print(f"{name:26s} {rows.nbytes / best / 1e9:5.1f} GB/s ({best * 1000:.1f} ms for "
              f"{n:,} x {dim} float32, one thread)")


def compare_scans(args, dim, repeats=(30, 12, 6), batches=(1, 8, 64)):
    """p50 ms of ivf.probe (a tf.function, float32 rows) by each scan, called in turn on the same
    queries, at the nprobe whose recall@10 reaches the target (ivf.probes_needed)."""
    mixture = Mixture(args.size, dim, args.latent, args.spread, args.ambient)
    rows, queries = mixture.draw(args.size, seed=0), mixture.draw(512, seed=1)
    nlist = nlist_for(len(rows), args.nlist_scale.get(dim, 4.0))
    lists = ivf.build_lists(rows, nlist)
    nprobe, recall = ivf.nprobe_for_recall(ivf.probes_needed(rows, lists, queries[:200], K),
                                           args.target_recall)
    stored = [tf.constant(x) for x in (rows[lists.order], np.ones(len(rows), np.float32),
                                       lists.centroids, lists.offsets)]
    del rows
    print(f"synthetic {args.size:,} x {dim}, {nlist} lists, nprobe {nprobe} (recall@10 "
          f"{recall:.3f}); p50 ms, and / the default's", flush=True)
    calls = {scan or "default": tf.function(
        lambda q, scan=scan: ivf.probe(q, *stored, nprobe, K, scan=scan)[0],
        input_signature=[tf.TensorSpec([None, dim])]) for scan in ("query", "list", None)}
    for batch, times in zip(batches, repeats):
        taken = {name: [] for name in calls}
        for r in range(times + 1):  # in turn, on the same queries; the first call is a warm-up
            q = queries[(r * batch) % 448:][:batch]
            for name, call in calls.items():
                taken[name].append(_timed(lambda: call(q).numpy()))
        p50 = {name: float(np.median(t[1:])) * 1000 for name, t in taken.items()}
        print(f"  {batch:2d} queries: " + ", ".join(
            f"{name} {ms:.2f} ({ms / p50['default']:.2f})" for name, ms in p50.items()),
            flush=True)


def _timed(call) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


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


def main():
    args = parse_args()
    tmp = tempfile.mkdtemp(prefix="index_bench-", dir=args.tmp)
    print(f"machine: {cpu_name()}; load average before: {os.getloadavg()}; TF {tf.__version__}",
          flush=True)
    if args.copy_on_read or args.read_rates:
        copy_on_read() if args.copy_on_read else read_rates()
        return
    if args.scans:
        for dim in args.dims:
            compare_scans(args, dim)
        return
    try:
        for dim in args.dims:
            mixture = Mixture(args.size, dim, args.latent, args.spread, args.ambient)
            rows = mixture.draw(args.size, seed=0)
            queries = mixture.draw(max(args.queries, 64 + args.repeats), seed=1)
            run_gallery(args, f"synthetic {args.size:,} x {dim} ({mixture.describe()})", rows,
                        queries,
                        tmp, nlist_scale=args.nlist_scale.get(dim, 4.0))
            del rows, queries
            gc.collect()
            print(f"load average now: {os.getloadavg()}", flush=True)
        if args.shards:
            from keras_instance.retrieval.embedding_shards import read_shards
            images, captions = (read_shards(f.split("+")) for f in args.shards.split(","))
            rng = np.random.default_rng(2)
            for title, gallery, queries in (
                    ("text->image (real)", images.embeddings, captions.embeddings),
                    ("image->text (real)", captions.embeddings, images.embeddings)):
                pick = np.sort(rng.choice(len(queries), min(len(queries), max(
                    args.queries, 64 + args.repeats)), replace=False))
                run_gallery(args, f"{title}: {len(gallery):,} x {gallery.shape[1]}, "
                            f"{len(pick)} queries", np.ascontiguousarray(gallery),
                            np.ascontiguousarray(queries[pick]), tmp)
        else:
            print("\nreal embeddings: skipped (no --shards=IMAGE_SHARDS,CAPTION_SHARDS given)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
