"""Word importance: drops equal a direct recomputation; unknown words named; --top ranking."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config

from keras_instance import run_folder
from keras_instance.data import pipeline, readers
from keras_instance.data.demo import generate_demo
from keras_instance.data.records import split_records
from keras_instance.reports import word_importance as explain_words
from keras_instance.text import tokenizer
from keras_instance.training import stages

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNKNOWN = "zzqxv"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("explain")
    data = str(base / "data")
    generate_demo(data, num_train=48, num_val=2, num_test=6, image_size=32, seed=6)
    # max_length 12 < the demo's caption lengths: words past the cut are exercised too.
    config = tiny_config(data, str(base / "run"), max_length=12, test_flip_sum=True)
    stages.train(config, 1, verbose=0, log=lambda *_: None)
    run = run_folder.load_trained(config.workdir)
    return run.config, run.dual, run.vocab


def _direct_score(config, dual, image_path, ids):
    """Cosine of image and caption embeddings computed by hand from the encoders."""
    image = pipeline.load_eval_image(tf.constant(image_path), config.image.image_size)[None]
    img = dual.image_encoder()(image, training=False)["embedding"].numpy()[0]
    img = img + dual.image_encoder()(tf.image.flip_left_right(image),
                                     training=False)["embedding"].numpy()[0]
    row = np.zeros(config.data.max_length, np.int32)
    row[:min(len(ids), config.data.max_length)] = ids[:config.data.max_length]
    n = int((row != 0).sum())
    shifts = np.stack([np.roll(row, k) for k in range(config.data.max_length - n + 1)])
    txt = dual.text_encoder(shifts, training=False)["embedding"].numpy().astype(np.float64).sum(0)
    return float(img @ txt / np.linalg.norm(img) / np.linalg.norm(txt))


def test_drops_equal_direct_recomputation(trained):
    config, dual, vocab = trained
    record = split_records(readers.load(config.data), "test")[0]
    words = vocab.words[vocab.first_word_id:vocab.first_word_id + 14]
    sentence = " ".join(words[:3] + [UNKNOWN.upper()] + words[3:])   # 14 known words + 1 unknown
    expl = explain_words.explain(config, dual, vocab, record.image_path, sentence)
    assert [w.word for w in expl.words] == words[:3] + [UNKNOWN] + words[3:]
    ids = [vocab.index[w] for w in words]
    full = _direct_score(config, dual, record.image_path, ids)
    assert expl.score == pytest.approx(full, abs=1e-4)
    known = [w for w in expl.words if w.word != UNKNOWN]
    for p, w in enumerate(known):
        expected = full - _direct_score(config, dual, record.image_path, ids[:p] + ids[p + 1:])
        assert w.drop == pytest.approx(expected, abs=1e-4), w
    # Words past the 12-token cut: removing one changes nothing the model sees.
    assert [w.note for w in known[12:]] == [explain_words.BEYOND_CUT] * 2
    assert all(w.drop == pytest.approx(0.0, abs=1e-6) for w in known[12:])
    assert any(abs(w.drop) > 1e-6 for w in known[:12])


def test_unknown_word_is_reported_not_silent(trained):
    config, dual, vocab = trained
    record = split_records(readers.load(config.data), "test")[0]
    word = vocab.words[vocab.first_word_id]
    expl = explain_words.explain(config, dual, vocab, record.image_path, f"{word} {UNKNOWN}")
    unknown = expl.words[1]
    assert unknown.word == UNKNOWN and unknown.drop is None
    assert unknown.note == explain_words.NOT_IN_VOCABULARY
    table = explain_words.format_table(expl)
    assert f"{UNKNOWN}" in table and "not in vocabulary" in table
    snippet = explain_words.explanation_html(expl)
    assert "not in vocabulary" in snippet and snippet.count('class="ki-word"') == 2


def test_unk_vocabulary_removes_the_unk_token():
    vocab = tokenizer.Vocabulary(["red", "circle"], use_unk=True)
    s = explain_words.encode_sentences(["a red <b>circle"], vocab)[0]
    assert s.words == ["a", "red", "b", "circle"]
    assert s.ids == [1, vocab.index["red"], 1, vocab.index["circle"]]
    assert s.unk == [True, False, True, False]


def test_removal_variants_repad_and_let_later_words_in():
    rows = explain_words.removal_variants([5, 7, 9, 11], 3)
    assert rows.tolist() == [[5, 7, 9], [7, 9, 11], [5, 9, 11], [5, 7, 11], [5, 7, 9]]


def test_top_words_aggregation_known_answer():
    drops = [("red", 0.3), ("red", 0.1), ("circle", 0.5), ("the", -0.1), ("the", -0.2),
             ("the", 0.0), ("big", 0.2), ("big", 0.2), ("rare", 9.0)]
    rows = explain_words.top_words(drops, top=10, min_count=2)
    assert [(w, round(d, 6), n) for w, d, n in rows] == [("big", 0.2, 2), ("red", 0.2, 2),
                                                        ("the", -0.1, 3)]
    assert [w for w, _, _ in explain_words.top_words(drops, top=1, min_count=1)] == ["rare"]


def test_split_drops_and_program(trained):
    config, dual, vocab = trained
    drops = explain_words.split_word_drops(config, dual, vocab, readers.load(config.data),
                                           "test", max_pairs=6, seed=0)
    assert drops and all(isinstance(d, float) for _, d in drops)
    record = split_records(readers.load(config.data), "test")[1]
    out = os.path.join(config.workdir, "snippet.html")
    proc = subprocess.run(
        [sys.executable, "-m", "keras_instance.cli.explain", f"--workdir={config.workdir}",
         f"--image={record.image_path}", f"--sentence={record.captions[0]} & {UNKNOWN}",
         f"--html_out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "score (cosine):" in proc.stdout and "not in vocabulary" in proc.stdout
    with open(out, encoding="utf-8") as f:
        words = len(tokenizer.tokenize_py([record.captions[0]])[0]) + 1
        assert f.read().count('class="ki-word"') == words
