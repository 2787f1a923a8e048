"""Caption tokeniser, vocabulary and the id encoding shared by training and serving."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_instance.text.tokenizer import (
    PAD_ID,
    UNK_TOKEN,
    Vocabulary,
    encode_captions,
    token_ids,
    tokenize,
    tokenize_py,
)

# ----------------------------------------------------------------------------- tokenize

@pytest.mark.parametrize("sentence, expected", [
    ("A Dog RUNS", ["a", "dog", "runs"]),
    ("Über den Fluß", ["über", "den", "fluss"]),          # Unicode case folding, not ASCII only
    ("ÉCOLE élève", ["école", "élève"]),
    ("ＡＢＣ ｄｅｆ １２", ["abc", "def", "12"]),            # NFKC: full-width → ASCII
    ("ﬁsh", ["fish"]),                                     # NFKC ligature
    ("dog,cat", ["dog", "cat"]),
    ("a dog. a cat! (two) [pets]; yes?", ["a", "dog", "a", "cat", "two", "pets", "yes"]),
    ("well-known x/y", ["well", "known", "x", "y"]),
    ("the man's hat", ["the", "man's", "hat"]),            # inner apostrophe kept
    ("rock''n roll", ["rock''n", "roll"]),
    ("'quoted' words'", ["quoted", "words"]),              # edge apostrophes stripped
    ("''x''", ["x"]),
    ("say 'hi", ["say", "hi"]),
    ("'", []),
    ("  lots \t of\n  space  ", ["lots", "of", "space"]),
    ("a\u00a0b", ["a", "b"]),                              # no-break space separates
    ("3 dogs", ["3", "dogs"]),
    ("", []),
    ("   ", []),
    ("\t\n", []),
    ("...!!", []),
])
def test_tokenize_py(sentence, expected):
    assert tokenize_py([sentence]) == [expected]


def test_tokenize_strips_apostrophes_of_adjacent_quoted_words():
    # Each word's edge apostrophes are stripped, wherever the word is in the sentence.
    assert tokenize_py(["'stop' 'go'"]) == [["stop", "go"]]
    assert tokenize_py(["the players' 'best' moment"]) == [["the", "players", "best", "moment"]]


def test_tokenize_batch_and_ragged_shape():
    out = tokenize(tf.constant(["One two", "", "three"]))
    assert isinstance(out, tf.RaggedTensor)
    assert out.to_list() == [[b"one", b"two"], [], [b"three"]]
    assert tokenize_py([]) == []
    assert tokenize_py(["x", "Y z"]) == [["x"], ["y", "z"]]


def test_tokenize_invalid_utf8_does_not_raise():
    out = tokenize(tf.constant([b"ab\xffcd ef", b"caf\xe9 au lait", b"\xc3\x28", b"good"]))
    rows = [[t.decode("utf-8") for t in row] for row in out.to_list()]  # all valid UTF-8 now
    assert rows[0] == ["ab", "cd", "ef"]
    assert rows[1][-2:] == ["au", "lait"]
    assert rows[1][0].startswith("caf")
    assert rows[2] == []
    assert rows[3] == ["good"]


# ----------------------------------------------------------------------------- Vocabulary

CORPUS = [["a", "b", "a", "d"], ["c", "b", "a"], ["d", "e"]]
# counts: a 3, b 2, d 2, c 1, e 1


def test_build_orders_by_frequency_then_alphabet():
    v = Vocabulary.build(CORPUS)
    assert v.words == ["<pad>", "a", "b", "d", "c", "e"]
    assert v.index["<pad>"] == PAD_ID == 0
    assert v.index["a"] == 1 and v.index["e"] == 5
    assert len(v) == 6 and v.first_word_id == 1 and not v.use_unk


def test_build_min_count_and_allowed():
    assert Vocabulary.build(CORPUS, min_count=2).words == ["<pad>", "a", "b", "d"]
    assert Vocabulary.build(CORPUS, min_count=3).words == ["<pad>", "a"]
    assert Vocabulary.build(CORPUS, min_count=4).words == ["<pad>"]
    v = Vocabulary.build(CORPUS, allowed={"b", "c", "zzz"})
    assert v.words == ["<pad>", "b", "c"]
    assert Vocabulary.build(CORPUS, min_count=2, allowed={"b", "c"}).words == ["<pad>", "b"]


def test_build_use_unk_ids():
    v = Vocabulary.build(CORPUS, use_unk=True)
    assert v.words == ["<pad>", UNK_TOKEN, "a", "b", "d", "c", "e"]
    assert v.index[UNK_TOKEN] == 1 and v.index["a"] == 2
    assert v.first_word_id == 2 and len(v) == 7


@pytest.mark.parametrize("use_unk", [False, True])
def test_save_load_round_trip(tmp_path, use_unk):
    v = Vocabulary.build(CORPUS + [["über", "man's"]], use_unk=use_unk)
    path = tmp_path / "vocab.txt"
    v.save(str(path))
    first = path.read_text(encoding="utf-8").split("\n")[0]
    assert first == ("#use_unk" if use_unk else "#drop_unknown")
    w = Vocabulary.load(str(path))
    assert w.words == v.words
    assert w.index == v.index
    assert w.use_unk == use_unk


@pytest.mark.parametrize("content", ["a\nb\nc\n", "", "#use_UNK\na\n"])
def test_load_rejects_non_vocabulary_file(tmp_path, content):
    path = tmp_path / "words.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="vocabulary") as err:
        Vocabulary.load(str(path))
    assert f"{path}:1" in str(err.value)


# ----------------------------------------------------------------------------- ids

def vocab(use_unk):
    return Vocabulary(["a", "dog", "runs", "cat"], use_unk=use_unk)


def test_token_ids_drop_mode():
    v = vocab(False)  # a=1 dog=2 runs=3 cat=4
    table = v.lookup_table()
    ids = token_ids(tf.constant(["A dog runs", "zebra dog, unknown CAT", "", "zebra"]), table, 5)
    assert ids.dtype == tf.int32
    np.testing.assert_array_equal(ids.numpy(), [
        [1, 2, 3, 0, 0],
        [2, 4, 0, 0, 0],       # OOV words removed, the rest close up
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ])


def test_token_ids_unk_mode():
    v = vocab(True)  # <unk>=1 a=2 dog=3 runs=4 cat=5
    ids = token_ids(tf.constant(["zebra dog, unknown CAT"]), v.lookup_table(), 5)
    np.testing.assert_array_equal(ids.numpy(), [[1, 3, 1, 5, 0]])


def test_token_ids_truncates_kept_words():
    v = vocab(False)
    # Truncation counts KEPT words: the two OOV words do not use up positions.
    ids = token_ids(tf.constant(["x a y dog runs cat a dog"]), v.lookup_table(), 4)
    np.testing.assert_array_equal(ids.numpy(), [[1, 2, 3, 4]])
    ids = token_ids(tf.constant(["a dog"]), v.lookup_table(), 1)
    np.testing.assert_array_equal(ids.numpy(), [[1]])


@pytest.mark.parametrize("use_unk", [False, True])
def test_encode_captions_matches_reference(use_unk):
    v = vocab(use_unk)
    captions = ["A dog runs.", "the cat", "CAT, cat; cat cat cat cat", "", "dog'", "Ａ ＤＯＧ"]
    out = encode_captions(captions, v, max_length=4, batch_size=2)  # several chunks
    assert out.dtype == np.int32 and out.shape == (6, 4)
    unk = 1
    expected = []
    for words in tokenize_py(captions):
        ids = [v.index.get(w, unk if use_unk else None) for w in words]
        ids = [i for i in ids if i is not None][:4]
        expected.append(ids + [0] * (4 - len(ids)))
    np.testing.assert_array_equal(out, np.array(expected, np.int32))
    a, dog = v.index["a"], v.index["dog"]
    np.testing.assert_array_equal(out[5], [a, dog, 0, 0])
    np.testing.assert_array_equal(out[4], [dog, 0, 0, 0])


def test_encode_captions_empty_list():
    out = encode_captions([], vocab(False), max_length=7)
    assert out.shape == (0, 7) and out.dtype == np.int32
