"""How hard the index benchmark's synthetic galleries are, next to real embeddings: recall@10 of
an IVF index (nlist = 4 sqrt(N)) against the share of lists probed, for real image and caption
embedding shards and for `index.Mixture` galleries of the same size and larger.

    .venv/bin/python benchmarks/calibrate.py --shards=IMAGE_SHARDS,CAPTION_SHARDS
    .venv/bin/python benchmarks/calibrate.py --shards=... --latent=32 --spread=0.5 --ambient=0.3

Recall at every nprobe comes from one exact search (`ivf.probes_needed`), so a curve costs one
k-means and one matmul. The defaults of benchmarks/index.py are the Mixture settings whose curve
follows the real text->image one (caption queries over the image gallery).
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from index import AMBIENT, LATENT, SPREAD, Mixture  # noqa: E402

from keras_instance.export import ivf  # noqa: E402

SHARES = (128, 64, 32, 16, 8, 4)  # nprobe = nlist / share
TARGETS = (0.9, 0.95)


def curve(rows: np.ndarray, queries: np.ndarray) -> str:
    nlist = ivf.default_nlist(len(rows))
    needed = ivf.probes_needed(rows, ivf.build_lists(rows, nlist), queries)
    at = [f"1/{s}: {np.mean(needed <= max(1, round(nlist / s))):.3f}" for s in SHARES]
    reach = [f"R{t} at {ivf.nprobe_for_recall(needed, t)[0]}/{nlist}" for t in TARGETS]
    return f"{', '.join(at)}; {', '.join(reach)}"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shards", default="", help="IMAGE_SHARDS,CAPTION_SHARDS (folders of one "
                   "kind joined by +)")
    p.add_argument("--latent", type=int, default=LATENT)
    p.add_argument("--spread", type=float, default=SPREAD)
    p.add_argument("--ambient", type=float, default=AMBIENT)
    p.add_argument("--dim", type=int, default=0, help="synthetic width (default: the shards')")
    p.add_argument("--sizes", default="", help="synthetic sizes besides the shards' (e.g. "
                   "100000,1000000)")
    p.add_argument("--queries", type=int, default=500)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    dim = args.dim or 256
    if args.shards:
        from keras_instance.retrieval.embedding_shards import read_shards
        images, captions = (read_shards(f.split("+")).embeddings
                            for f in args.shards.split(","))
        dim = args.dim or images.shape[1]
        for name, gallery, queries in (("text->image", images, captions),
                                       ("image->text", captions, images)):
            pick = rng.choice(len(queries), min(len(queries), args.queries), replace=False)
            print(f"real {name}, {len(gallery):,} x {gallery.shape[1]}: "
                  f"{curve(np.ascontiguousarray(gallery), queries[pick])}", flush=True)
        sizes = [len(images)] + sizes
    for n in sizes:
        mixture = Mixture(n, dim, args.latent, args.spread, args.ambient)
        print(f"synthetic {n:,} x {dim} ({mixture.describe()}): "
              f"{curve(mixture.draw(n, seed=0), mixture.draw(args.queries, seed=1))}", flush=True)


if __name__ == "__main__":
    main()
