"""Experiment configuration as plain code: every setting declared once, here.

A `Config` is a tree by concern — `data`, `image` (branch), `text` (branch), `model` (joint
embedding and shared classifier), `loss`, `optim`, `test` — so a builder takes its own part.
Each field carries its type, default, help and scope; `keras_instance.cli.flags` generates the
absl flags from them (flag name = field name, so flagfiles stay flat), and `run_folder` reads the
scopes to decide what a rerun may change. The library never parses flags.

Scopes: "run" (fixed for a run folder: the weights' shapes, the classes, the vocabulary),
"stage" (what a stage trains with: fixed while it runs, resumes and is rerun), "stage1" /
"stage2" (the same, for one stage only), "free" (where things are and how fast a step runs) and
"test" (how a trained model is tested: any program may override these).

config.json is this tree (config_version 4). Flat files (versions 1 and 2, written before the
tree) still load; older versions also get the values that rebuild what their code trained
(`V1_VALUES`, `V3_VALUES`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from typing import Optional

# Branch outputs a run may retrieve with (`test.test_feature`); see model.dual_path.
TEST_FEATURES = ("embedding", "relu")
# How test images reach the backbone: "keep_aspect" (docs/method.md: short side `test_short_side`,
# the head applied at every position of the feature map, summed) or "squash" (size × size),
# both applied to the image as `image.squash_to` leaves it (its square, where set).
TEST_GEOMETRIES = ("keep_aspect", "squash")
# Ranking negatives: the authors' half-batch layouts (hardest of a caption pool: Flickr, COCO;
# random: CUHK-PEDES) or VSE++'s hardest in the batch (every example an anchor).
NEGATIVES = ("hardest_of_pool", "random", "hardest_in_batch")
# Which captions hardest_of_pool leaves out of its pool: those of every image of the batch (their
# Flickr30k getBatch, `ind(batch) = 0`) or of the anchors' images only (their MSCOCO getBatch,
# `neg_label(batch(1:half)) = []`).
POOL_EXCLUDES = ("batch", "anchors")
# A half-batch negative image of the anchor's own class (CUHK-PEDES persons): redrawn, as their
# train_cuhk_Rankloss_shift.m does (here: the batch's next image of another class), or its
# image-side term dropped (this project's rule before config_version 4).
NEGATIVE_IMAGES = ("redraw", "drop")
# Random crop size: the area fraction uniform in crop_scale² (their vl_imreadjpeg 'CropSize'),
# or the side fraction uniform in crop_scale (before config_version 4); data.pipeline.crop_size.
CROP_RULES = ("area", "side")
# The one image resize (data.pipeline.resize): bicubic, antialiased when shrinking (their MATLAB
# imresize and vl_imreadjpeg), or tf.image.resize's bilinear (before config_version 4).
RESIZE_METHODS = ("bicubic_antialias", "bilinear")
PROTOCOLS = ("1k", "coco_1k", "coco_5k", "cuhk")
# How training distributes (training.distribute.make_strategy).
STRATEGIES = ("mirrored", "multi_worker", "one_device")

# docs/method.md, "Shared classifier and losses": rank : image : text.
STAGE_LOSS_WEIGHTS = {1: (0.0, 1.0, 1.0), 2: (2.0, 1.0, 0.1)}
CUHK_STAGE2_LOSS_WEIGHTS = (2.0, 1.0, 0.5)

# docs/method.md, "Optimisation": multipliers of the global learning rate.
DEFAULT_LR_MULTIPLIERS = {
    "new": 0.1,          # layers this project adds (heads, text CNN)
    "classifier": 0.01,  # the shared instance classifier W (its bias: twice this)
    "word": 0.001,       # first text layer, initialised from word2vec
    "bn_gamma": 0.2,
    "bn_beta": 0.1,
    # The backbone (Stage II only). Their Stage II scripts (resnet52_new_hope_word_Rankloss.m,
    # coco_/cuhk_word2_Rankloss.m) give parameters 1-213 of their MatConvNet ResNet-50 0.02 when
    # even-numbered, 0.001 when odd, and parameter 1 1e-4. In dagnn's parameter order (layer by
    # layer: conv1 filter, conv1 bias, then each BN's multiplier, bias, moments and each later
    # conv's one filter: 2 + 3 + 52 × 4 = 213) that is, per variable kind:
    "backbone_stem": 1e-4,     # the first conv's kernel (their parameter 1)
    "backbone_kernel": 0.02,   # every other conv kernel (even-numbered): effective 2e-3
    "backbone_bias": 0.02,     # conv biases (their conv1 bias, parameter 2)
    "backbone_gamma": 0.001,   # BN γ (odd-numbered)
    "backbone_beta": 0.02,     # BN β (even-numbered)
    # Backbone variables of no kind group: VGG-19's kernels (odd-numbered in their VGG order:
    # filter, bias per layer), and every backbone variable of a run whose multipliers predate
    # the kind groups (this project's single backbone multiplier until 2026-12).
    "backbone": 0.001,
}
BACKBONE_KIND_GROUPS = ("backbone_stem", "backbone_kernel", "backbone_bias", "backbone_gamma",
                        "backbone_beta")

CONFIG_VERSION = 4
# Version 1 (no "config_version") was written before these fields existed: it loads with the
# values that rebuild exactly what that code trained.
V1_VALUES = {
    "text_layout": "v1",                 # stride on the 1×1 conv, stage-1 bottleneck width/4
    "classifier_bias": False,
    "classifier_init": "he",
    "kernel_initializer": "glorot_uniform",
    "weight_decay_on": "kernels",
    "vgg_fc7": "post_relu",
    "test_geometry": "squash",
}
V1_DATASETS = {"flickr30k": "flickr30k_karpathy"}  # version 1 read Flickr30k's Karpathy split
# Versions 1-3 were written before these fields: they load with the rules that code trained
# with (`negative_image` too, where it could act: `_pre_v4_values`).
V3_VALUES = {
    "crop_rule": "side",
    "resize_method": "bilinear",
}


def _field(default, help: str, scope: str = "stage", choices=None, registry: str | None = None):
    """A setting: its default, one line of help, its scope, and its allowed values (a tuple, or
    the name of a registry whose keys they are: 'datasets', 'backbones')."""
    meta = {"help": help, "scope": scope, "choices": choices, "registry": registry}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class DataConfig:
    dataset: str = _field("demo", "Dataset reader (its data_dir layout).", "run",
                          registry="datasets")
    data_dir: str = _field("data/demo", "Dataset folder (or the manifest .jsonl).", "free")
    shards: Optional[str] = _field(None, "Read training images from these TFRecord shards "
                                         "(keras_instance.cli.prepare).", "free")
    max_length: int = _field(32, "Words kept per sentence (CUHK-PEDES: 56).", "run")
    min_word_count: int = _field(1, "Vocabulary: minimum training count.", "run")
    unknown_words: str = _field("drop", "Words outside the vocabulary: dropped (paper) or "
                                        "mapped to <unk>.", "run", ("drop", "unk"))
    word2vec: Optional[str] = _field(None, "Pretrained vectors (.bin/.txt/.kv); unset: train "
                                           "them on the training captions.", "run")
    labels: str = _field("instance", "Training classes: one per image (instance loss) or "
                                     "k-means clusters of frozen backbone features.", "run",
                         ("instance", "kmeans"))
    num_clusters: int = _field(0, "K for --labels=kmeans.", "run")


@dataclasses.dataclass
class ImageConfig:
    backbone: str = _field("resnet50", "Image backbone.", "run", registry="backbones")
    backbone_weights: Optional[str] = _field(
        "imagenet", "'imagenet' (download), a weights-file path (offline), or 'none'.")
    vgg_fc7: str = _field("pre_relu", "VGG-19 feature: fc7 before its ReLU (the authors') or "
                                      "after (keras' fc2).", "run", ("pre_relu", "post_relu"))
    image_size: int = _field(224, "Square training input size in pixels.", "run")
    image_head_units: tuple = _field((2048,), "Hidden fc widths of the image head before the "
                                              "embedding fc (VGG-19: 4096).", "run")
    random_flip: bool = _field(True, "Random horizontal flips in training.")
    crop_scale: tuple = _field((0.8, 1.0), "Random crop size range, a fraction of the largest "
                                           "crop's side (see --crop_rule).")
    crop_rule: str = _field("area", "area: the crop's area fraction uniform in crop_scale², "
                                    "sides rounded (the authors' vl_imreadjpeg CropSize); side: "
                                    "its side fraction uniform in crop_scale, floored (older "
                                    "runs).", "stage", CROP_RULES)
    resize_method: str = _field("bicubic_antialias", "Every image resize (training crops, "
                                                     "caches, test images, served encoders): "
                                                     "bicubic_antialias (the authors' imresize) "
                                                     "or bilinear without antialiasing (older "
                                                     "runs).", "stage", RESIZE_METHODS)
    squash_to: int = _field(0, "Squash every image to this size² first, aspect not kept, for "
                               "training crops, feature caches and test images alike (0: "
                               "images keep their shape). The authors' CUHK-PEDES "
                               "resize_image.m: 256, tested whole with keep_aspect (windows "
                               "summed: 2×2 at image_size 224).")
    feature_cache: Optional[str] = _field(None, "Folder of the frozen backbone's cached "
                                                "features (and prefix maps).", "free")
    cache_views: int = _field(1, "Augmented views per image in the caches.")
    finetune_from: Optional[str] = _field(
        None, "Stage II trains the backbone from this layer on (e.g. Conv_1 for mobilenet_v2, "
              "conv5_block1_1_conv for resnet50); the frozen layers before it run once per "
              "cached view into --feature_cache, the rest trains from those maps.")


@dataclasses.dataclass
class TextConfig:
    word_dim: int = _field(300, "Word vector size.", "run")
    text_widths: tuple = _field((256, 512, 1024, 2048), "Output width of each stage.", "run")
    text_blocks: tuple = _field((3, 4, 6, 1), "Residual blocks per stage.", "run")
    text_pooling: str = _field("max", "Pooling over positions.", "run", ("max", "avg"))
    text_layout: str = _field("authors", "authors: stride 2 on the left-padded 1×2 conv, "
                                         "stage-1 first bottleneck width/2; v1: this project's "
                                         "first layout (old runs).", "run", ("authors", "v1"))
    position_shift: bool = _field(True, "Position Shift augmentation.")


@dataclasses.dataclass
class ModelConfig:
    embed_dim: int = _field(2048, "Joint embedding size (fc width of both heads).", "run")
    dropout: float = _field(0.75, "Drop probability (Flickr30k 0.75, COCO 0.5, CUHK 0.8).")
    sync_batchnorm: bool = _field(True, "Batch statistics over all replicas (heads, text CNN, "
                                        "tiny_cnn): N replicas train like one device.")
    kernel_initializer: str = _field("lecun_uniform", "New layers' kernels (lecun_uniform: the "
                                                      "authors' U(±sqrt(3/fan_in))).")
    classifier_init: str = _field("authors", "Shared classifier W: authors (U(±sqrt(3/fan_in))"
                                             " × 0.1) or he (He-normal × 0.1).", "stage",
                                  ("authors", "he"))
    classifier_bias: bool = _field(True, "One bias of the shared classifier, shared too (the "
                                         "authors').", "run")


@dataclasses.dataclass
class LossConfig:
    loss_weights: Optional[tuple] = _field(None, "rank,image,text; unset: Stage I 0,1,1, "
                                                 "Stage II 2,1,0.1 (CUHK-PEDES 2,1,0.5).")
    margin: float = _field(1.0, "Ranking loss margin.")
    negatives: str = _field("hardest_of_pool", "Ranking negatives: hardest_of_pool / random "
                                               "(the authors' half-batch layouts) or VSE++'s "
                                               "hardest_in_batch.", "stage", NEGATIVES)
    negative_pool: int = _field(256, "Caption pool size for hardest_of_pool.")
    pool_excludes: str = _field("batch", "hardest_of_pool leaves out the captions of every "
                                         "image of the batch (the authors' Flickr30k) or of the "
                                         "anchors' images only (their MSCOCO).", "stage",
                                POOL_EXCLUDES)
    negative_image: str = _field("redraw", "Half-batch layouts, a negative image of the "
                                           "anchor's class (CUHK-PEDES persons): redraw the "
                                           "batch's next image of another class (the authors' "
                                           "rand_diff_class3.m) or drop its image-side term "
                                           "(older runs).", "stage", NEGATIVE_IMAGES)


@dataclasses.dataclass
class OptimConfig:
    optimizer: str = _field("sgd", "SGD with Nesterov momentum.", "stage", ("sgd",))
    lr_schedule: Optional[str] = _field(None, "'lr:epochs,...' for the stage being trained.")
    stage1_lr_schedule: str = _field("0.1:240", "Stage I schedule.", "stage1")
    stage2_lr_schedule: str = _field("0.1:40,0.01:20", "Stage II schedule.", "stage2")
    lr_multipliers: dict = _field(DEFAULT_LR_MULTIPLIERS, "group=multiplier overrides; groups: "
                                  + ", ".join(DEFAULT_LR_MULTIPLIERS))
    weight_decay: float = _field(1e-4, "L2 weight decay.")
    weight_decay_on: str = _field("all", "all: every trainable parameter (the authors'); "
                                         "kernels: kernels and word vectors only.", "stage",
                                  ("all", "kernels"))
    momentum: float = _field(0.9, "SGD momentum.")
    batch_size: int = _field(32, "Global batch size (split over replicas).")
    precision: str = _field("auto", "float32; mixed (mixed_float16 on GPU, mixed_bfloat16 on "
                                    "CPU); auto (mixed on GPUs of compute capability >= 7.0 and "
                                    "CPUs with AMX).", "stage", ("auto", "float32", "mixed"))
    jit_compile: bool = _field(False, "XLA-compile the training step.", "free")
    steps_per_execution: int = _field(1, "Training steps per compiled call.", "free")
    strategy: str = _field("mirrored", "tf.distribute strategy (mirrored: all visible GPUs, or "
                                       "--num_cpu_replicas CPUs; no GPU and no CPU replicas: "
                                       "the default strategy; multi_worker: TF_CONFIG).", "free",
                           STRATEGIES)
    num_cpu_replicas: int = _field(0, "Without GPUs: split the CPU into N logical replicas.",
                                   "free")
    stage1_freeze_backbone: bool = _field(True, "Freeze the backbone in Stage I (paper: yes).",
                                          "stage1")
    stage2_freeze_backbone: bool = _field(False, "Keep the backbone frozen in Stage II too "
                                                 "(CPU-sized runs; paper: no).", "stage2")


@dataclasses.dataclass
class TestConfig:
    protocol: str = _field("1k", "Test protocol.", "test", PROTOCOLS)
    test_flip_sum: bool = _field(True, "Sum image features with the mirror image's.", "test")
    test_shift_sum: bool = _field(True, "Sum text features over all Position Shifts.", "test")
    test_feature: str = _field("embedding", "Retrieval embedding: fc+BN before ReLU (the "
                                            "authors') or after it (where the ranking loss "
                                            "trains).", "test", TEST_FEATURES)
    test_geometry: str = _field("keep_aspect", "keep_aspect: short side --test_short_side, the "
                                               "head at every window of the map, summed "
                                               "(docs/method.md); squash: image_size².", "test",
                                TEST_GEOMETRIES)
    test_short_side: int = _field(0, "keep_aspect's short side; 0: --squash_to if set (the "
                                     "whole square), else image_size · 256/224.", "test")
    eval_batch_size: int = _field(64, "Images per evaluation batch.", "test")


GROUPS = {"data": DataConfig, "image": ImageConfig, "text": TextConfig, "model": ModelConfig,
          "loss": LossConfig, "optim": OptimConfig, "test": TestConfig}


@dataclasses.dataclass
class Config:
    workdir: str = _field("runs/demo", "Run folder: config, vocabulary, checkpoints, logs.",
                          "free")
    seed: int = _field(0, "Seed of every random choice.")
    config_version: int = _field(CONFIG_VERSION, "config.json format.", "free")
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    image: ImageConfig = dataclasses.field(default_factory=ImageConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    test: TestConfig = dataclasses.field(default_factory=TestConfig)

    # --- flat names: flags, config.json versions 1-2, replace() ----------------------------

    @classmethod
    def flat(cls, **values) -> "Config":
        """A Config from flat field names (`Config.flat(backbone="tiny_cnn", embed_dim=16)`)."""
        return cls().replace(**values)

    def replace(self, **values) -> "Config":
        """A copy with these flat-named fields changed."""
        groups = {name: dataclasses.replace(getattr(self, name)) for name in GROUPS}
        top = {}
        for name, value in values.items():
            group = FIELD_GROUP.get(name)
            if group is None:
                raise TypeError(f"Config has no setting {name!r}")
            if isinstance(value, list):
                value = tuple(value)
            if group:
                setattr(groups[group], name, value)
            else:
                top[name] = value
        return dataclasses.replace(self, **groups, **top)

    def get(self, name: str):
        """The value of the flat-named field `name`."""
        group = FIELD_GROUP[name]
        return getattr(getattr(self, group) if group else self, name)

    def to_flat(self) -> dict:
        return {name: self.get(name) for name in FIELD_GROUP}

    # --- derived values ----------------------------------------------------------------------

    @property
    def short_side(self) -> int:
        """Test-time short side for keep_aspect: as given, else the squashed square's side (the
        whole square, as the authors test CUHK-PEDES), else 256/224 of the training size."""
        return (self.test.test_short_side or self.image.squash_to
                or int(round(self.image.image_size * 256 / 224)))

    def backbone_frozen(self, stage: int) -> bool:
        return (self.optim.stage1_freeze_backbone if stage == 1
                else self.optim.stage2_freeze_backbone)

    def loss_weights_for(self, stage: int) -> tuple:
        if self.loss.loss_weights is not None:
            return tuple(self.loss.loss_weights)
        if stage == 2 and self.data.dataset == "cuhk_pedes":
            return CUHK_STAGE2_LOSS_WEIGHTS
        return STAGE_LOSS_WEIGHTS[stage]

    def schedule_for(self, stage: int) -> list[tuple[float, int]]:
        o = self.optim
        return parse_schedule(o.lr_schedule or (o.stage1_lr_schedule if stage == 1
                                                else o.stage2_lr_schedule))

    # --- checks --------------------------------------------------------------------------------

    def validate(self) -> "Config":
        """Fail before any work on settings that would only break later (choices, schedules).

        Registry names (dataset, backbone) and what they imply are checked where the registries
        live (`cli.flags` for flags, `training.stages.check_config` before a stage trains)."""
        for name in FIELDS:
            allowed = choices(name)
            if allowed is not None and self.get(name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got "
                                 f"{self.get(name)!r}")
        o, t, i = self.optim, self.test, self.image
        for text in (o.stage1_lr_schedule, o.stage2_lr_schedule, o.lr_schedule):
            if text:
                parse_schedule(text)
        if self.loss.loss_weights is not None and len(self.loss.loss_weights) != 3:
            raise ValueError(f"loss_weights needs three numbers rank,image,text; got "
                             f"{self.loss.loss_weights}")
        if not 0.0 <= self.model.dropout < 1.0:
            raise ValueError(f"dropout is a drop probability in [0, 1), got {self.model.dropout}")
        if min(i.cache_views, o.batch_size, self.data.max_length, o.steps_per_execution) < 1:
            raise ValueError("cache_views, batch_size, max_length and steps_per_execution must "
                             "be positive")
        if self.data.labels == "kmeans" and self.data.num_clusters < 2:
            raise ValueError(f"labels='kmeans' needs num_clusters >= 2, got "
                             f"{self.data.num_clusters}")
        if len(i.crop_scale) != 2 or not 0 < i.crop_scale[0] <= i.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got "
                             f"{i.crop_scale}")
        if t.test_short_side < 0 or (t.test_short_side and t.test_short_side < i.image_size):
            raise ValueError(f"test_short_side must be 0 (image_size·256/224) or at least "
                             f"image_size {i.image_size}: a test image must hold one training-"
                             f"sized window; got {t.test_short_side}")
        if i.squash_to < 0 or (i.squash_to and i.squash_to < i.image_size):
            raise ValueError(f"squash_to must be 0 (images keep their shape) or at least "
                             f"image_size {i.image_size}: the square must hold one training-"
                             f"sized window; got {i.squash_to}")
        if i.finetune_from and o.stage2_freeze_backbone:
            raise ValueError(f"--finetune_from={i.finetune_from} trains the backbone from that "
                             "layer in Stage II, but --stage2_freeze_backbone keeps it frozen: "
                             "drop one of the two")
        return self

    # --- config.json ---------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save_to(self, path: str) -> str:
        """Write as JSON to `path` atomically (a reader never sees half a file)."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(self.to_json() + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load_from(cls, path: str) -> "Config":
        """A config.json written by any version of this project (older ones are migrated)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: train a model into this workdir first "
                                    "(python -m keras_instance.cli.train --workdir ...)")
        try:
            with open(path) as f:
                raw = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {err.lineno}: not valid JSON ({err.msg}); it is "
                             "written by keras_instance.cli.train, restore it or retrain") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> "Config":
        """From config.json's tree (version 3) or flat dict (versions 1 and 2)."""
        flat = {}
        for key, value in raw.items():
            if key in GROUPS and isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        if flat.get("config_version", 1) < 2:
            for name, value in V1_VALUES.items():
                flat.setdefault(name, value)
            flat["dataset"] = V1_DATASETS.get(flat.get("dataset"), flat.get("dataset"))
        if flat.get("config_version", 1) < 4:
            for name, value in _pre_v4_values(flat).items():
                flat.setdefault(name, value)
        if "precision" not in flat and "mixed_precision" in flat:  # versions 1-2
            flat["precision"] = "mixed" if flat["mixed_precision"] else "float32"
        if isinstance(flat.get("lr_multipliers"), dict):
            flat["lr_multipliers"] = _with_kind_groups(flat["lr_multipliers"], flat)
        flat["config_version"] = CONFIG_VERSION
        return cls().replace(**{k: v for k, v in flat.items() if k in FIELD_GROUP})

    @classmethod
    def load(cls, workdir: str) -> "Config":
        return cls.load_from(os.path.join(workdir, "config.json"))


def _pre_v4_values(flat: dict) -> dict:
    """The rules a run saved before config_version 4 trained with. Its `negative_image` is the
    old `drop` only where the rule could act: a half-batch layout over classes that several
    images share (CUHK-PEDES persons, a manifest's labels, k-means clusters). Elsewhere both
    rules train alike, so it takes today's and a rerun (the CPU recipes') is not refused."""
    half_batch = flat.get("negatives", "hardest_of_pool") in ("hardest_of_pool", "random")
    shared = (flat.get("dataset") in ("cuhk_pedes", "manifest")
              or flat.get("labels") == "kmeans")
    return {**V3_VALUES, **({"negative_image": "drop"} if half_batch and shared else {})}


def _with_kind_groups(saved: dict, flat: dict) -> dict:
    """Multipliers saved before the backbone kind groups existed: the kinds take the run's own
    `backbone` value (what its backbone trained with), or, where the backbone never trains
    (frozen in both stages), today's defaults, which nothing reads (so a finished frozen run is
    not refused over groups it does not use)."""
    if all(group in saved for group in BACKBONE_KIND_GROUPS):
        return saved
    frozen = (flat.get("stage1_freeze_backbone", True)
              and flat.get("stage2_freeze_backbone", False))
    fill = {g: (DEFAULT_LR_MULTIPLIERS[g] if frozen
                else saved.get("backbone", DEFAULT_LR_MULTIPLIERS["backbone"]))
            for g in BACKBONE_KIND_GROUPS}
    return {**saved, **{g: v for g, v in fill.items() if g not in saved}}


def _group_fields():
    """{flat name: dataclasses.Field}, {flat name: group ('' for top-level)}, and types."""
    fields, group_of, types = {}, {}, {}
    for group, klass in [("", Config), *GROUPS.items()]:
        hints = typing.get_type_hints(klass)
        for f in dataclasses.fields(klass):
            if f.name in GROUPS:
                continue
            fields[f.name], group_of[f.name], types[f.name] = f, group, hints[f.name]
    return fields, group_of, types


FIELDS, FIELD_GROUP, FIELD_TYPES = _group_fields()


def choices(name: str):
    """The fixed allowed values of field `name` (None: any of its type, or a registry's keys:
    `registry(name)`)."""
    return FIELDS[name].metadata.get("choices")


def registry(name: str) -> str | None:
    """'datasets' or 'backbones' when field `name` takes a registry's keys (the registry itself
    lives with its package: data.readers, model.backbones)."""
    return FIELDS[name].metadata.get("registry")


def fields_in_scope(*scopes: str) -> tuple[str, ...]:
    return tuple(n for n, f in FIELDS.items() if f.metadata["scope"] in scopes)


# What a run folder fixes for all its stages and reruns; what any command may change; what a
# program using a trained run may override.
RUN_FIELDS = fields_in_scope("run")
FREE_FIELDS = fields_in_scope("free", "test")
TEST_TIME_FIELDS = fields_in_scope("test")


def stage_fields(stage: int) -> tuple[str, ...]:
    """Settings a stage is trained with: fixed while it runs, resumes and is rerun."""
    return fields_in_scope("stage", f"stage{stage}")


def differences(saved: Config, wanted: Config, names) -> list[tuple[str, object, object]]:
    """(field, saved value, wanted value) for each of `names` that differs."""
    return [(n, saved.get(n), wanted.get(n)) for n in names if saved.get(n) != wanted.get(n)]


def flag_text(name: str, value) -> str:
    """A config value as the command-line flag that sets it."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (tuple, list)):
        value = ",".join(map(str, value))
    elif isinstance(value, dict):
        value = ",".join(f"{k}={v:g}" for k, v in value.items())
    return f"--{name}={'none' if value is None else value}"


def parse_schedule(text: str) -> list[tuple[float, int]]:
    """"0.1:40,0.01:20" → [(0.1, 40), (0.01, 20)]: learning rate and its number of epochs."""
    pieces = []
    for part in text.split(","):
        try:
            lr, epochs = part.split(":")
            pieces.append((float(lr), int(epochs)))
        except ValueError:
            raise ValueError(f"bad learning-rate schedule {text!r}: expected 'lr:epochs' pieces "
                             "joined by commas, e.g. '0.1:40,0.01:20'") from None
    if not pieces or any(e <= 0 or lr <= 0 for lr, e in pieces):
        raise ValueError(f"bad learning-rate schedule {text!r}: rates and epochs must be positive")
    return pieces
