"""Retrieval metrics: hand-computed ranks, tie rule, chunking, protocols."""
import numpy as np
import pytest

from keras_instance.retrieval import metrics as R

# Hand example: 3 images (one-hot embeddings) and 6 captions (2 per image), so the
# score of image i vs caption j is exactly CAPTION_SCORES[j, i].
CAPTION_SCORES = np.array([
    [0.9, 0.1, 0.2],   # c0, image 0
    [0.3, 0.8, 0.4],   # c1, image 0
    [0.2, 0.7, 0.6],   # c2, image 1
    [0.3, 0.3, 0.1],   # c3, image 1  (tie with image 0, which wins: lower index)
    [0.4, 0.6, 0.25],  # c4, image 2
    [0.1, 0.2, 0.4],   # c5, image 2  (tie with c1 for image 2; c1 wins)
], dtype=np.float32)
IMAGE_LABELS = np.array([0, 1, 2])
CAPTION_LABELS = np.array([0, 0, 1, 1, 2, 2])
# i2t by hand: img0 -> c0 top (1); img1 -> c1 0.8 beats c2 0.7 (2);
#   img2 -> c5 0.4 after c2 0.6 and tied c1 (earlier index) (3).
HAND_I2T = [1, 2, 3]
# t2i by hand: c0 1; c1 0.3 is lowest (3); c2 1; c3 tie 0.3 lost to image 0 (2); c4 3; c5 1.
HAND_T2I = [1, 3, 1, 2, 3, 1]


def _unit(x):
    """Row-normalise: the evaluator assumes L2-normalised embeddings."""
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_ranks(scores, relevant):
    """Independent rule: stable sort of -score puts lower index first among ties."""
    out = []
    for s, rel in zip(scores, relevant):
        order = np.argsort(-s, kind="stable")
        pos = np.empty(len(s), dtype=int)
        pos[order] = np.arange(1, len(s) + 1)
        out.append(pos[rel].min())
    return np.array(out)


# ----------------------------------------------------------------------------- ranks
def test_tie_rule_lower_index_wins():
    scores = np.array([[0.5, 0.9, 0.5, 0.1]])
    rel = lambda *idx: np.isin(np.arange(4), idx)[None]
    assert R.first_hit_ranks(scores, rel(2)).tolist() == [3]   # index 1 higher, index 0 tie wins
    assert R.first_hit_ranks(scores, rel(0)).tolist() == [2]   # only index 1 is higher
    assert R.first_hit_ranks(scores, rel(3)).tolist() == [4]
    assert R.first_hit_ranks(scores, rel(2, 3)).tolist() == [3]  # min over relevant
    assert R.first_hit_ranks(scores, rel(1, 3)).tolist() == [1]


def test_label_and_callable_forms_match_bool_matrix():
    scores = CAPTION_SCORES.T
    rel = IMAGE_LABELS[:, None] == CAPTION_LABELS[None]
    by_bool = R.first_hit_ranks(scores, rel)
    by_call = R.first_hit_ranks(scores, lambda a, b: rel[a:b], chunk=2)
    by_label = R.first_hit_ranks_by_label(scores, IMAGE_LABELS, CAPTION_LABELS)
    assert by_bool.tolist() == by_call.tolist() == by_label.tolist() == HAND_I2T


def test_chunking_matches_reference_on_random_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(37, 23)).astype(np.float32)  # many ties
    q_lab, g_lab = rng.integers(0, 4, 37), np.arange(23) % 4
    expected = _reference_ranks(scores, q_lab[:, None] == g_lab[None])
    for chunk in (1, 5, 37, 10_000):
        got = R.first_hit_ranks_by_label(scores, q_lab, g_lab, chunk=chunk)
        assert got.tolist() == expected.tolist()


def test_query_without_relevant_item_names_its_index():
    rel = np.array([[True, False], [False, True], [False, False]])
    with pytest.raises(ValueError, match="query 2 "):
        R.first_hit_ranks(np.zeros((3, 2)), rel, chunk=2)
    with pytest.raises(ValueError, match="query 1 "):
        R.first_hit_ranks_by_label(np.zeros((2, 2)), [0, 5], [0, 1])


def test_bad_inputs_rejected():
    with pytest.raises(ValueError, match="NaN"):
        R.first_hit_ranks(np.array([[np.nan, 1.0]]), np.array([[True, False]]))
    with pytest.raises(ValueError, match="bool"):
        R.first_hit_ranks(np.zeros((1, 2)), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="shape"):
        R.first_hit_ranks(np.zeros((1, 2)), np.array([[True]]))


# ----------------------------------------------------------------------------- summary
def test_recall_summary_percent_and_even_median():
    """Med r as the authors' test/evaluate.m: rank = find(CMC > 0.5), Med r = rank(1): the
    first K whose recall passes 50 % (R@2 = 50 % here is not above it), not np.median's 2.5."""
    s = R.recall_summary(np.array([1, 2, 3, 10]))
    assert s == {"r1": 25.0, "r5": 75.0, "r10": 100.0, "medr": 3.0, "meanr": 4.0}
    cmc = [np.mean(np.array([4, 1, 1, 2, 6, 2]) <= k) for k in range(1, 7)]
    assert R.recall_summary(np.array([4, 1, 1, 2, 6, 2]))["medr"] == 1 + next(
        k for k, c in enumerate(cmc) if c > 0.5)
    assert R.recall_summary(np.array([7, 1, 11]), ks=(1, 10)) == {
        "r1": pytest.approx(100 / 3), "r10": pytest.approx(200 / 3), "medr": 7.0, "meanr": 19 / 3}


def test_hand_example_both_directions():
    res = R.evaluate_retrieval(np.eye(3), CAPTION_SCORES, IMAGE_LABELS, CAPTION_LABELS)
    assert res["i2t"] == {"r1": pytest.approx(100 / 3), "r5": 100.0, "r10": 100.0,
                          "medr": 2.0, "meanr": 2.0}
    assert res["t2i"] == {"r1": 50.0, "r5": 100.0, "r10": 100.0,
                          "medr": 2.0, "meanr": pytest.approx(11 / 6)}  # R@1 = 50 %: not > 50
    assert res["rsum"] == pytest.approx(100 / 3 + 200 + 50 + 200)
    assert (res["num_images"], res["num_captions"]) == (3, 6)
    assert res == R.evaluate_retrieval(np.eye(3), CAPTION_SCORES, IMAGE_LABELS, CAPTION_LABELS,
                                       chunk=1)


def test_perfect_and_random_embeddings():
    n = 50
    img = np.eye(n)
    res = R.evaluate_protocol("1k", img, np.repeat(img, 5, axis=0), np.arange(n),
                              np.repeat(np.arange(n), 5))
    assert res["i2t"]["r1"] == res["t2i"]["r1"] == 100.0 and res["rsum"] == 600.0
    rng = np.random.default_rng(1)
    n = 400
    res = R.evaluate_retrieval(_unit(rng.normal(size=(n, 256))), _unit(rng.normal(size=(n, 256))),
                               np.arange(n), np.arange(n))
    for d in ("i2t", "t2i"):  # chance: R@10 = 2.5 %, mean rank = 200.5
        assert res[d]["r10"] < 8.0
        assert abs(res[d]["meanr"] - (n + 1) / 2) < 30


# ----------------------------------------------------------------------------- protocols
def _coco_like(n_img=10, per=2, seed=2):
    rng = np.random.default_rng(seed)
    img = _unit(rng.normal(size=(n_img, 8)))
    txt = _unit(np.repeat(img, per, axis=0) + rng.normal(size=(n_img * per, 8)))
    return img, txt, np.arange(n_img) + 100, np.repeat(np.arange(n_img) + 100, per)


def test_coco_1k_is_mean_over_five_folds():
    img, txt, il, tl = _coco_like()
    res = R.evaluate_protocol("coco_1k", img, txt, il, tl)
    manual = [R.evaluate_retrieval(img[2 * f:2 * f + 2], txt[4 * f:4 * f + 4],
                                   il[2 * f:2 * f + 2], tl[4 * f:4 * f + 4]) for f in range(5)]
    assert res["protocol"] == "coco_1k" and len(res["folds"]) == 5
    for d in ("i2t", "t2i"):
        for k in ("r1", "r5", "r10", "medr", "meanr"):
            assert res[d][k] == pytest.approx(np.mean([m[d][k] for m in manual]))
    assert res["rsum"] == pytest.approx(np.mean([m["rsum"] for m in manual]))
    # Caption order must not matter: folds are found by label.
    perm = np.random.default_rng(3).permutation(len(txt))
    shuffled = R.evaluate_protocol("coco_1k", img, txt[perm], il, tl[perm])
    assert shuffled["i2t"] == pytest.approx(res["i2t"])
    assert shuffled["t2i"] == pytest.approx(res["t2i"])
    # Whole-set protocol is a different (harder) gallery.
    assert R.evaluate_protocol("coco_5k", img, txt, il, tl)["protocol"] == "coco_5k"


def test_coco_1k_requires_divisible_image_count():
    img, txt, il, tl = _coco_like(n_img=11)
    with pytest.raises(ValueError, match="divisible by 5"):
        R.evaluate_protocol("coco_1k", img, txt, il, tl)


def test_cuhk_any_image_of_the_person_counts():
    # Images: persons 7, 7, 8, 9 and a distractor person 10 nobody describes.
    img_labels = np.array([7, 7, 8, 9, 10])
    scores = np.array([   # caption x image
        [0.1, 0.9, 0.2, 0.3, 0.0],   # person 7: second image of person 7 is top -> 1
        [0.5, 0.1, 0.4, 0.2, 0.0],   # person 8: one image higher -> 2
        [0.6, 0.6, 0.1, 0.6, 0.0],   # person 9: tied, two lower indices win -> 3
    ], dtype=np.float32)
    res = R.evaluate_protocol("cuhk", np.eye(5), scores, img_labels, [7, 8, 9])
    assert res["i2t"] is None and res["protocol"] == "cuhk"
    assert res["t2i"] == {"r1": pytest.approx(100 / 3), "r5": 100.0, "r10": 100.0,
                          "medr": 2.0, "meanr": 2.0}
    assert res["rsum"] == pytest.approx(100 / 3 + 200)
    # image->text would need a caption of person 10
    with pytest.raises(ValueError, match="query 4 "):
        R.evaluate_protocol("1k", np.eye(5), scores, img_labels, [7, 8, 9])


def test_unknown_protocol_and_table():
    with pytest.raises(ValueError, match="unknown protocol"):
        R.evaluate_protocol("flickr", np.eye(3), CAPTION_SCORES, IMAGE_LABELS, CAPTION_LABELS)
    args = (np.eye(3), CAPTION_SCORES, IMAGE_LABELS, CAPTION_LABELS)
    table = R.format_table(R.evaluate_protocol("1k", *args))
    assert "image→text" in table and "text→image" in table
    assert "33.33" in table and "483.33" in table
    cuhk = R.format_table(R.evaluate_protocol("cuhk", *args))
    assert "image→text" not in cuhk and "text→image" in cuhk and "R@10" in cuhk
