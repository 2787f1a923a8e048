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
    image_size: int = 224
    image_head_units: tuple = (2048,)      # hidden fc widths before the embedding fc (VGG19: 4096)
    random_flip: bool = True
    crop_scale: tuple = (0.8, 1.0)
    # Text branch
    text_widths: tuple = (256, 512, 1024, 2048)
    text_blocks: tuple = (3, 4, 6, 1)
    text_pooling: str = "max"
    embed_dim: int = 2048
    dropout: float = 0.75
    position_shift: bool = True
    sync_batchnorm: bool = True             # BN statistics over the global batch, as on one device
    # Losses
    loss_weights: Optional[tuple] = None   # rank, image, text; None → per-stage defaults
    margin: float = 1.0
    negatives: str = "hardest_of_pool"      # or "hardest_in_batch"
    negative_pool: int = 256
    # Optimisation
    optimizer: str = "sgd"
    lr_schedule: Optional[str] = None       # "lr:epochs,lr:epochs"; None → per-stage defaults
    stage1_lr_schedule: str = "0.1:240"
    stage2_lr_schedule: str = "0.1:40,0.01:20"
    lr_multipliers: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_LR_MULTIPLIERS))
    weight_decay: float = 1e-4
    momentum: float = 0.9
    batch_size: int = 32
    mixed_precision: bool = False           # mixed_float16 on GPU, mixed_bfloat16 on CPU
    jit_compile: bool = False               # XLA-compile the training step
    steps_per_execution: int = 1            # steps per compiled call: fewer Python round trips
    stage1_freeze_backbone: bool = True
    stage2_freeze_backbone: bool = False    # CPU-sized runs: keep the backbone frozen in Stage II
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
    eval_batch_size: int = 64

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
        if self.test_feature not in TEST_FEATURES:
            raise ValueError(f"test_feature must be {' or '.join(map(repr, TEST_FEATURES))}, got "
                             f"{self.test_feature!r}")
        if self.labels not in ("instance", "kmeans"):
            raise ValueError(f"labels must be 'instance' or 'kmeans', got {self.labels!r}")
        if self.labels == "kmeans" and self.num_clusters < 2:
            raise ValueError(f"labels='kmeans' needs num_clusters >= 2, got {self.num_clusters}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got "
                             f"{self.crop_scale}")
        return self

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

    def save(self, workdir: Optional[str] = None) -> str:
        path = os.path.join(workdir or self.workdir, "config.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, workdir: str) -> "Config":
        path = os.path.join(workdir, "config.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} not found: train a model into this workdir first "
                                    "(python -m keras_instance.train --workdir ...)")
        with open(path) as f:
            raw = json.load(f)
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k in known}
        return cls(**kwargs)


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
