"""k-means pseudo-labels (the seed's §6): cluster ids of frozen backbone features as classes.

Instead of one class per training image, `--labels=kmeans --num_clusters=K` clusters the frozen
backbone's whole-image features of the training images with scikit-learn's MiniBatchKMeans
(seeded) and trains the shared classifier on K classes; every image's captions join its
cluster's caption pool. Stage I computes the clusters once and stores them in the workdir
(`kmeans_labels.npy` + `kmeans_labels.json`), Stage II reuses them, so both stages share one
classifier shape. Evaluation is unchanged: retrieval is still judged per instance.
"""
from __future__ import annotations

import json
import os

import numpy as np

from keras_instance import run_folder
from keras_instance.config import Config


def labels_path(workdir: str) -> str:
    return run_folder.path(workdir, run_folder.KMEANS_LABELS)


def kmeans_labels(features: np.ndarray, num_clusters: int, seed: int = 0,
                  batch_size: int = 1024) -> np.ndarray:
    """[N] int32 cluster ids in [0, K) of L2-normalised `features` [N, D] (MiniBatchKMeans)."""
    from sklearn.cluster import MiniBatchKMeans
    features = np.asarray(features, np.float32).reshape(len(features), -1)
    if not 2 <= num_clusters <= len(features):
        raise ValueError(f"num_clusters must be in [2, {len(features)}] (the number of training "
                         f"images), got {num_clusters}")
    # Cosine geometry: ReLU/pooled CNN features differ mostly in direction, not length.
    features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    kmeans = MiniBatchKMeans(n_clusters=num_clusters, random_state=seed, n_init=3,
                             batch_size=max(batch_size, 3 * num_clusters))
    return kmeans.fit_predict(features).astype(np.int32)


def backbone_features(config: Config, image_paths) -> np.ndarray:
    """[N, D] frozen-backbone features of the whole images (the feature cache's view 0 if set).

    The backbone is built right after seeding with `config.seed + 1`, as Stage I seeds before it
    builds its model, and the seed is set again afterwards: a randomly initialised backbone
    (demo) then has the very weights Stage I trains on, so its feature-cache entry is shared.
    """
    import keras

    from keras_instance.model import backbones
    from keras_instance.training import feature_cache
    keras.utils.set_random_seed(config.seed + 1)
    backbone = backbones.build_backbone(config.image.backbone, config.image.backbone_weights,
                                        (config.image.image_size, config.image.image_size, 3),
                                        config.model.sync_batchnorm)
    image = config.image
    rules = dict(square=image.squash_to, crop_rule=image.crop_rule,
                 resize_method=image.resize_method)
    if image.feature_cache:
        features = feature_cache.cached_features(
            image.feature_cache, backbone, image.backbone, image_paths, image.image_size,
            image.cache_views, image.random_flip, image.crop_scale, config.seed, **rules)
    else:
        features = feature_cache.compute_features(backbone, image_paths, image.image_size,
                                                  views=1, progress=False, **rules)
    keras.utils.set_random_seed(config.seed + 1)
    return features[:, 0]


def prepare_kmeans_labels(config: Config, image_paths, may_compute: bool = True,
                          log=print) -> np.ndarray:
    """The workdir's cluster id per training image: loaded if stored, else computed and stored."""
    path = labels_path(config.workdir)
    info_path = run_folder.path(config.workdir, run_folder.KMEANS_INFO)
    if os.path.exists(path):
        labels = np.load(path)
        info = {}
        if os.path.exists(info_path):
            with open(info_path) as f:
                info = json.load(f)
        k = info.get("num_clusters", config.data.num_clusters)
        if k != config.data.num_clusters or labels.shape != (len(image_paths),) or (
                labels.size and not 0 <= labels.min() <= labels.max() < k):
            raise ValueError(
                f"{path} holds {k} clusters of {labels.shape[0]} images, but this run asks for "
                f"{config.data.num_clusters} clusters of {len(image_paths)} images: use a new "
                "workdir (or delete the file and the stage folders to start over)")
        log(f"k-means labels: reusing {path} ({k} clusters)")
        return labels.astype(np.int32)
    if not may_compute:
        raise FileNotFoundError(f"{path} not found: Stage I stores the k-means clusters that "
                                "Stage II trains on; run --stage=1 with --labels=kmeans first")
    log(f"k-means labels: clustering {len(image_paths)} training images into "
        f"{config.data.num_clusters} clusters of frozen {config.image.backbone} features")
    labels = kmeans_labels(backbone_features(config, image_paths), config.data.num_clusters,
                           config.seed)
    sizes = np.bincount(labels, minlength=config.data.num_clusters)
    os.makedirs(config.workdir, exist_ok=True)
    tmp = path + ".tmp.npy"
    np.save(tmp, labels)
    os.replace(tmp, path)
    with open(info_path, "w") as f:
        json.dump({"num_clusters": config.data.num_clusters, "num_images": len(labels),
                   "backbone": config.image.backbone, "seed": config.seed,
                   "empty_clusters": int((sizes == 0).sum()),
                   "largest_cluster": int(sizes.max()), "smallest_cluster": int(sizes.min())},
                  f, indent=2)
    log(f"k-means labels → {path} (cluster sizes {int(sizes.min())}..{int(sizes.max())}, "
        f"{int((sizes == 0).sum())} empty)")
    return labels
