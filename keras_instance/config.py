"""Experiment configuration as plain code: one dataclass, written to `<workdir>/config.json`.

The library takes a `Config`; only the absl programs turn flags into one. Stage-dependent values
(learning-rate schedule, loss weights) follow METHOD.md unless set explicitly.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

# Branch outputs a run may retrieve with (`Config.test_feature`); see model.BRANCH_OUTPUTS.
TEST_FEATURES = ("embedding", "relu")
# How test images reach the backbone: "keep_aspect" (METHOD.md: short side `test_short_side`,
# the head applied at every position of the feature map, summed) or "squash" (size × size).
TEST_GEOMETRIES = ("keep_aspect", "squash")
# Ranking negatives: the authors' half-batch layouts (hardest of a caption pool: Flickr, COCO;
# random: CUHK-PEDES) or VSE++'s hardest in the batch (every example an anchor).
NEGATIVES = ("hardest_of_pool", "random", "hardest_in_batch")
TEXT_LAYOUTS = ("authors", "v1")
CLASSIFIER_INITS = ("authors", "he")
DECAYED = ("all", "kernels")

# Version of config.json. Version 1 (no "config_version" key) was written before the fields
# below existed; it loads with the values that rebuild exactly what that code trained.
CONFIG_VERSION = 2
PRECISIONS = ("auto", "float32", "mixed")
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

# METHOD.md, "Shared classifier and losses": rank : image : text.
STAGE_LOSS_WEIGHTS = {1: (0.0, 1.0, 1.0), 2: (2.0, 1.0, 0.1)}
CUHK_STAGE2_LOSS_WEIGHTS = (2.0, 1.0, 0.5)

# METHOD.md, "Optimisation": multipliers of the global learning rate.
DEFAULT_LR_MULTIPLIERS = {
    "new": 0.1,          # layers this project adds (heads, text CNN)
    "classifier": 0.01,  # the shared instance classifier W
    "word": 0.001,       # first text layer, initialised from word2vec
    "bn_gamma": 0.2,
    "bn_beta": 0.1,
    "backbone": 0.001,   # Stage II only: effective 1e-4 at global 0.1
}

# What a run folder fixes for all its stages and reruns (the weights' shapes, the classes, the
# vocabulary): changing one needs a new --workdir.
RUN_FIELDS = ("dataset", "max_length", "min_word_count", "unknown_words", "word2vec", "word_dim",
              "backbone", "vgg_fc7", "image_size", "image_head_units", "text_widths",
              "text_blocks", "text_pooling", "text_layout", "embed_dim", "classifier_bias",
              "labels", "num_clusters")
# Free on every command: where things are (the data itself is checked by its fingerprint), how
# fast a step runs, and how a trained model is tested.
FREE_FIELDS = ("workdir", "data_dir", "feature_cache", "shards", "jit_compile",
               "steps_per_execution", "protocol", "test_flip_sum", "test_shift_sum",
               "test_feature", "test_geometry", "test_short_side", "eval_batch_size",
               "config_version")
# Test-time settings: programs that use a trained run may override these of its config.
TEST_TIME_FIELDS = ("protocol", "test_flip_sum", "test_shift_sum", "test_feature",
                    "test_geometry", "test_short_side", "eval_batch_size")
_OWN_STAGE_FIELDS = {1: ("stage1_lr_schedule", "stage1_freeze_backbone"),
                     2: ("stage2_lr_schedule", "stage2_freeze_backbone")}


def stage_fields(stage: int) -> tuple[str, ...]:
    """Settings a stage is trained with: fixed while it runs, resumes and is rerun."""
    other = _OWN_STAGE_FIELDS[3 - stage]
    return tuple(f.name for f in dataclasses.fields(Config)
                 if f.name not in RUN_FIELDS + FREE_FIELDS + other)


def differences(saved: "Config", wanted: "Config", names) -> list[tuple[str, object, object]]:
    """(field, saved value, wanted value) for each of `names` that differs."""
    return [(n, getattr(saved, n), getattr(wanted, n)) for n in names
            if getattr(saved, n) != getattr(wanted, n)]


def flag_text(name: str, value) -> str:
    """A config value as the command-line flag that sets it."""
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no{name}"
    if isinstance(value, (tuple, list)):
        value = ",".join(map(str, value))
    elif isinstance(value, dict):
        value = ",".join(f"{k}={v:g}" for k, v in value.items())
    return f"--{name}={'none' if value is None else value}"


@dataclasses.dataclass
class Config:
    # Data
    dataset: str = "demo"
    data_dir: str = "data/demo"
    workdir: str = "runs/demo"
    max_length: int = 32
    min_word_count: int = 1
    unknown_words: str = "drop"           # "drop" (paper) or "unk"
    word2vec: Optional[str] = None        # pretrained vectors (.bin/.txt/.kv); None → train on captions
    word_dim: int = 300
    # Image branch
    backbone: str = "resnet50"
    backbone_weights: Optional[str] = "imagenet"   # "imagenet", a weights-file path, or None
    vgg_fc7: str = "pre_relu"               # VGG-19 feature: fc7 before ReLU (authors) or after
    image_size: int = 224
    image_head_units: tuple = (2048,)      # hidden fc widths before the embedding fc (VGG19: 4096)
    random_flip: bool = True
    crop_scale: tuple = (0.8, 1.0)
    # Text branch
    text_widths: tuple = (256, 512, 1024, 2048)
    text_blocks: tuple = (3, 4, 6, 1)
    text_pooling: str = "max"
    # "authors": stride 2 on the left-padded 1×2 conv, stage-1 first bottleneck width/2 (their
    # network); "v1": this project's first layout (stride on the 1×1 conv), kept for old runs
    text_layout: str = "authors"
    embed_dim: int = 2048
    dropout: float = 0.75
    position_shift: bool = True
    sync_batchnorm: bool = True             # BN statistics over the global batch, as on one device
    # New layers' kernels: "lecun_uniform" is the authors' U(±sqrt(3/fan_in)) (MatConvNet)
    kernel_initializer: str = "lecun_uniform"
    # Shared classifier W (and its bias, shared too): "authors" = that uniform init × 0.1
    classifier_init: str = "authors"
    classifier_bias: bool = True
    # Losses
    loss_weights: Optional[tuple] = None   # rank, image, text; None → per-stage defaults
    margin: float = 1.0
    negatives: str = "hardest_of_pool"      # one of NEGATIVES
    negative_pool: int = 256
    # Optimisation
    optimizer: str = "sgd"
    lr_schedule: Optional[str] = None       # "lr:epochs,lr:epochs"; None → per-stage defaults
    stage1_lr_schedule: str = "0.1:240"
    stage2_lr_schedule: str = "0.1:40,0.01:20"
    lr_multipliers: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_LR_MULTIPLIERS))
    weight_decay: float = 1e-4
    weight_decay_on: str = "all"            # every parameter (authors) or "kernels" only
    momentum: float = 0.9
    batch_size: int = 32
    # float32 | mixed (mixed_float16 on GPU, mixed_bfloat16 on CPU) | auto (mixed where it pays:
    # GPUs with tensor cores, CPUs with AMX; float32 elsewhere) — training.precision_policy
    precision: str = "auto"
    jit_compile: bool = False               # XLA-compile the training step
    steps_per_execution: int = 1            # steps per compiled call: fewer Python round trips
    stage1_freeze_backbone: bool = True
    stage2_freeze_backbone: bool = False    # CPU-sized runs: keep the backbone frozen in Stage II
    # Stage II trains the backbone only from this layer on (keras.applications layer name); the
    # frozen part before it runs once per cached view into the prefix cache (feature_cache dir)
    finetune_from: Optional[str] = None
    shards: Optional[str] = None            # TFRecord shards (keras_instance.prepare) for images
    feature_cache: Optional[str] = None     # frozen-backbone stages train from cached features
    cache_views: int = 1                    # augmented views per image in the cache
    seed: int = 0
    # Classes: "instance" (one per training image; per person for CUHK-PEDES) or "kmeans"
    # (pseudo-labels: k-means clusters of the frozen backbone's features, the seed's §6)
    labels: str = "instance"
    num_clusters: int = 0                   # K for labels="kmeans"
    # Evaluation
    protocol: str = "1k"
    test_flip_sum: bool = True
    test_shift_sum: bool = True
    # Which branch output is the retrieval embedding: "embedding" = fc + BN before ReLU (the
    # authors' test feature), "relu" = after ReLU (the space the ranking loss is trained in)
    test_feature: str = "embedding"
    test_geometry: str = "keep_aspect"      # one of TEST_GEOMETRIES
    test_short_side: int = 0                # keep_aspect: 0 → image_size · 256/224 (224 → 256)
    eval_batch_size: int = 64
    config_version: int = CONFIG_VERSION

    def validate(self) -> "Config":
        """Fail before any work on settings that would only break later (schedules, choices)."""
        for text in (self.stage1_lr_schedule, self.stage2_lr_schedule, self.lr_schedule):
            if text:
                parse_schedule(text)
        if self.loss_weights is not None and len(self.loss_weights) != 3:
            raise ValueError(f"loss_weights needs three numbers rank,image,text; got "
                             f"{self.loss_weights}")
        if self.unknown_words not in ("drop", "unk"):
            raise ValueError(f"unknown_words must be 'drop' or 'unk', got {self.unknown_words!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a drop probability in [0, 1), got {self.dropout}")
        if min(self.cache_views, self.batch_size, self.max_length, self.steps_per_execution) < 1:
            raise ValueError("cache_views, batch_size, max_length and steps_per_execution must "
                             "be positive")
        for name, allowed in (("test_feature", TEST_FEATURES), ("test_geometry", TEST_GEOMETRIES),
                              ("negatives", NEGATIVES), ("text_layout", TEXT_LAYOUTS),
                              ("classifier_init", CLASSIFIER_INITS), ("precision", PRECISIONS),
                              ("weight_decay_on", DECAYED), ("vgg_fc7", ("pre_relu", "post_relu"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got "
                                 f"{getattr(self, name)!r}")
        if self.test_geometry == "keep_aspect" and self.backbone == "tiny_cnn":
            raise ValueError("backbone tiny_cnn flattens a fixed-size map, so it has no "
                             "per-window features for --test_geometry=keep_aspect: pass "
                             "--test_geometry=squash")
        if self.test_short_side and self.test_short_side < self.image_size:
            raise ValueError(f"test_short_side {self.test_short_side} is smaller than "
                             f"image_size {self.image_size}: a test image must hold at least "
                             "one training-sized window")
        if self.finetune_from and self.stage2_freeze_backbone:
            raise ValueError(f"--finetune_from={self.finetune_from} trains the backbone from that "
                             "layer in Stage II, but --stage2_freeze_backbone keeps it frozen: "
                             "drop one of the two")
        if self.test_short_side < 0:
            raise ValueError(f"test_short_side must be >= 0 (0: image_size·256/224), got "
                             f"{self.test_short_side}")
        if self.labels not in ("instance", "kmeans"):
            raise ValueError(f"labels must be 'instance' or 'kmeans', got {self.labels!r}")
        if self.labels == "kmeans" and self.num_clusters < 2:
            raise ValueError(f"labels='kmeans' needs num_clusters >= 2, got {self.num_clusters}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got "
                             f"{self.crop_scale}")
        return self

    @property
    def short_side(self) -> int:
        """Test-time short side for keep_aspect: as given, or 256/224 of the training size."""
        return self.test_short_side or int(round(self.image_size * 256 / 224))

    def backbone_frozen(self, stage: int) -> bool:
        return self.stage1_freeze_backbone if stage == 1 else self.stage2_freeze_backbone

    def loss_weights_for(self, stage: int) -> tuple:
        if self.loss_weights is not None:
            return tuple(self.loss_weights)
        if stage == 2 and self.dataset == "cuhk_pedes":
            return CUHK_STAGE2_LOSS_WEIGHTS
        return STAGE_LOSS_WEIGHTS[stage]

    def schedule_for(self, stage: int) -> list[tuple[float, int]]:
        text = self.lr_schedule or (self.stage1_lr_schedule if stage == 1 else self.stage2_lr_schedule)
        return parse_schedule(text)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

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
        """A config.json written by any version of this project (version 1 is migrated)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: train a model into this workdir first "
                                    "(python -m keras_instance.train --workdir ...)")
        try:
            with open(path) as f:
                raw = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {err.lineno}: not valid JSON ({err.msg}); it is "
                             "written by keras_instance.train, restore it or retrain") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict) -> "Config":
        raw = dict(raw)
        if raw.get("config_version", 1) < 2:
            for name, value in V1_VALUES.items():
                raw.setdefault(name, value)
            raw["dataset"] = V1_DATASETS.get(raw.get("dataset"), raw.get("dataset"))
            raw.setdefault("precision", "mixed" if raw.get("mixed_precision") else "float32")
            raw["config_version"] = CONFIG_VERSION
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        return cls(**kwargs)

    @classmethod
    def load(cls, workdir: str) -> "Config":
        return cls.load_from(os.path.join(workdir, "config.json"))


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
