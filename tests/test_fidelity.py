"""Fidelity to the authors' MatConvNet code (layumi/Image-Text-Embedding), issue 23.

Each test names the file of theirs whose behaviour it pins.
"""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_instance.config import BACKBONE_KIND_GROUPS, DEFAULT_LR_MULTIPLIERS, Config
from keras_instance.model.dual_path import build_dual_path
from keras_instance.training import step

ROOT = Path(__file__).resolve().parents[1]


def flagfile_lines(name: str) -> list[str]:
    """The flags of configs/<name>.flags, with the flagfiles it includes first (later wins)."""
    out = []
    for line in (ROOT / "configs" / f"{name}.flags").read_text().splitlines():
        line = line.strip()
        if line.startswith("--flagfile="):
            out.extend(flagfile_lines(Path(line.split("=", 1)[1]).stem))
        elif line.startswith("--"):
            out.append(line)
    return out


def flag_value(name: str, flag: str):
    """The last setting of --flag in a flagfile: its text, True / False for --flag / --noflag,
    or None when the flagfile leaves it alone."""
    value = None
    for line in flagfile_lines(name):
        key, _, text = line[2:].partition("=")
        if key == flag:
            value = text if text else True
        elif key == f"no{flag}" and not text:
            value = False
    return value


# --- item 1: Stage II backbone learning rates -----------------------------------------------

def _resnet_trainer(multipliers):
    config = Config.flat(backbone="resnet50", backbone_weights=None, image_head_units=(16,),
                         text_widths=(8, 16, 16, 32), text_blocks=(1, 1, 1, 1), embed_dim=16,
                         word_dim=8, max_length=8, dropout=0.0)
    keras.utils.set_random_seed(0)
    dual = build_dual_path(config, 5, 20, backbone_weights=None)
    dual.backbone.trainable = True
    return dual, step.InstanceTrainer(dual, image_input="image", loss_weights=(2, 1, 0.1),
                                      lr_multipliers=multipliers, weight_decay=0.0)


def _effective_rates(dual, trainer, global_lr=0.1):
    """{variable path: effective learning rate} for the backbone's trainable variables."""
    variables = dual.backbone.trainable_variables
    grads = [tf.ones_like(v) for v in variables]
    return {v.path: float(np.asarray(g).reshape(-1)[0]) * global_lr
            for v, g in zip(variables, trainer._adjust(grads, variables))}


@pytest.fixture(scope="module")
def resnet():
    return _resnet_trainer(Config().optim.lr_multipliers)


def test_stage2_backbone_rates_per_kind_are_the_authors(resnet):
    """resnet52_new_hope_word_Rankloss.m: params 1-213 of their ResNet-50 at 0.02 (even) /
    0.001 (odd), param 1 at 1e-4; dagnn's order conv1 filter, conv1 bias, then per BN
    multiplier, bias, moments and per later conv its filter: at global lr 0.1, conv kernels
    2e-3, BN γ 1e-4, BN β 2e-3, the first conv's kernel 1e-5."""
    dual, trainer = resnet
    rates = _effective_rates(dual, trainer)
    kinds = {"stem": [], "kernel": [], "bias": [], "gamma": [], "beta": []}
    for path, rate in rates.items():
        name = path.split("/")[-1]
        if path.endswith("conv1_conv/kernel"):
            kinds["stem"].append(rate)
        elif name in kinds:
            kinds[name].append(rate)
        else:
            raise AssertionError(f"backbone variable of no kind: {path}")
    expected = {"stem": 1e-5, "kernel": 2e-3, "bias": 2e-3, "gamma": 1e-4, "beta": 2e-3}
    counts = {"stem": 1, "kernel": 52, "bias": 53, "gamma": 53, "beta": 53}
    for kind, values in kinds.items():
        assert len(values) == counts[kind], kind
        np.testing.assert_allclose(values, expected[kind], rtol=1e-6, err_msg=kind)


def test_stage2_backbone_rates_old_single_multiplier_as_a_flag():
    """Today's rule before issue 23 (every backbone variable at `backbone`, 0.001): the kind
    groups set to that value, e.g. --lr_multipliers=backbone_stem=0.001,backbone_kernel=0.001,
    backbone_bias=0.001,backbone_gamma=0.001,backbone_beta=0.001."""
    old = {**DEFAULT_LR_MULTIPLIERS, **{g: 0.001 for g in BACKBONE_KIND_GROUPS}}
    dual, trainer = _resnet_trainer(old)
    rates = _effective_rates(dual, trainer)
    np.testing.assert_allclose(list(rates.values()), 1e-4, rtol=1e-6)


def test_vgg_kernels_take_the_odd_numbered_rate():
    """resnet52_new_hope_word_Rankloss_vgg19.m: params 1-36 (16 convs + fc6 + fc7, filter and
    bias each): filters odd-numbered (0.001), biases even (0.02), param 1 (conv1_1's filter)
    1e-4. A VGG-shaped stand-in under the vgg19 name."""
    x = inputs = keras.Input((8, 8, 3))
    for i in range(2):
        x = keras.layers.Conv2D(4, 3, name=f"block1_conv{i + 1}")(x)
    x = keras.layers.Dense(4, name="fc2")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, x)
    kinds = step.backbone_kinds(model, "vgg19")
    by_path = {v.path: kinds[id(v)] for v in model.weights}
    assert by_path == {"block1_conv1/kernel": "backbone_stem", "block1_conv1/bias": "backbone_bias",
                       "block1_conv2/kernel": "backbone", "block1_conv2/bias": "backbone_bias",
                       "fc2/kernel": "backbone", "fc2/bias": "backbone_bias"}
    mult = DEFAULT_LR_MULTIPLIERS
    assert [step.group_multiplier(mult, g) for g in ("backbone_stem", "backbone", "backbone_bias")
            ] == [1e-4, 0.001, 0.02]


@pytest.mark.parametrize("frozen", [False, True])
def test_runs_saved_before_the_kind_groups_load_with_their_rule(frozen):
    """A config.json whose multipliers predate the kind groups: a run that trained its backbone
    keeps its single `backbone` multiplier for every kind; a frozen one gets today's groups
    (never read), so rerunning a finished frozen recipe is not refused over them."""
    saved = {k: v for k, v in DEFAULT_LR_MULTIPLIERS.items() if k not in BACKBONE_KIND_GROUPS}
    saved["backbone"] = 0.05
    raw = Config().to_dict()
    raw["optim"]["lr_multipliers"] = saved
    raw["optim"]["stage2_freeze_backbone"] = frozen
    loaded = Config.from_dict(raw).optim.lr_multipliers
    for group in BACKBONE_KIND_GROUPS:
        assert loaded[group] == (DEFAULT_LR_MULTIPLIERS[group] if frozen else 0.05), group
    assert loaded["backbone"] == 0.05


def test_cpu_recipes_that_train_a_backbone_keep_their_single_multiplier():
    """configs/demo.flags (backbone=1) and configs/flickr8k_finetune.flags (backbone=0.1) pin
    every kind group to the value they trained with before issue 23."""
    for name, value in (("demo", 1.0), ("flickr8k_finetune", 0.1),
                        ("flickr8k_finetune_stage1", 0.1)):
        text = flag_value(name, "lr_multipliers")
        groups = dict(item.split("=") for item in text.split(","))
        for group in (*BACKBONE_KIND_GROUPS, "backbone"):
            assert float(groups[group]) == value, (name, group)


# --- item 3: MSCOCO's classifier --------------------------------------------------------------

def test_coco_classifier_has_no_bias_flickr30k_and_cuhk_have_one():
    """coco_word2_pool.m: fc_img / fc_txt 'hasBias', false; resnet52_new_hope_word2_pool.m
    (Flickr30k) and cuhk_word2_pool.m: true (the library default)."""
    assert flag_value("coco", "classifier_bias") is False
    assert Config().model.classifier_bias is True
    for name in ("flickr30k", "cuhk_pedes"):
        assert flag_value(name, "classifier_bias") in (None, True), name
