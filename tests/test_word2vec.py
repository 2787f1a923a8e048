"""word2vec initialisation of the first text layer: trained, loaded, and missing-word handling."""
import numpy as np
import pytest
from gensim.models import KeyedVectors

from keras_instance.text import tokenizer, word2vec

SENTENCES = [["a", "red", "circle"], ["a", "blue", "square"], ["two", "red", "squares"]] * 20


def test_trained_vectors_cover_the_caption_words():
    vectors = word2vec.train_word2vec(SENTENCES, dim=8, seed=1)
    assert vectors.vector_size == 8
    assert {"a", "red", "circle", "blue", "square", "two", "squares"} <= set(vectors.key_to_index)
    again = word2vec.train_word2vec(SENTENCES, dim=8, seed=1)
    np.testing.assert_allclose(vectors["red"], again["red"])  # one worker: reproducible


def test_embedding_matrix_copies_known_words_and_draws_missing_ones(tmp_path):
    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(["red", "blue"], np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.float32))
    vocab = tokenizer.Vocabulary(["red", "green", "blue"])
    matrix, missing = word2vec.embedding_matrix(vocab, kv, dim=4, seed=0)
    assert missing == 1 and matrix.shape == (4, 4)
    np.testing.assert_array_equal(matrix[0], 0)                      # padding row
    np.testing.assert_array_equal(matrix[vocab.index["red"]], [1, 2, 3, 4])
    np.testing.assert_array_equal(matrix[vocab.index["blue"]], [5, 6, 7, 8])
    green = matrix[vocab.index["green"]]
    assert not np.allclose(green, 0) and np.all(np.abs(green - 4.5) < 6 * 2.3)  # mean/std scale
    with pytest.raises(ValueError, match="--word_dim=4"):
        word2vec.embedding_matrix(vocab, kv, dim=300)


@pytest.mark.parametrize("suffix, binary", [(".txt", False), (".bin", True), (".kv", None)])
def test_load_word2vec_formats(tmp_path, suffix, binary):
    kv = KeyedVectors(vector_size=3)
    kv.add_vectors(["dog", "cat"], np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    path = str(tmp_path / f"vectors{suffix}")
    if binary is None:
        kv.save(path)
    else:
        kv.save_word2vec_format(path, binary=binary)
    loaded = word2vec.load_word2vec(path)
    np.testing.assert_allclose(loaded["cat"], [0, 1, 0])


def test_load_word2vec_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        word2vec.load_word2vec(str(tmp_path / "nope.bin"))
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not a word2vec file\n")
    with pytest.raises(ValueError, match="bad.txt"):
        word2vec.load_word2vec(str(bad))


def test_trained_vectors_are_the_same_in_every_process():
    """Workers of a multi-worker run (and reruns) must start from the same word vectors, though
    each process salts Python's str hash differently."""
    import os
    import subprocess
    import sys
    script = ("from keras_instance.text.word2vec import train_word2vec;"
              "v = train_word2vec([['a', 'red', 'dog'], ['a', 'blue', 'cat']] * 5, 8, seed=1);"
              "print(v['red'].tolist())")
    outputs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.add(proc.stdout.strip().splitlines()[-1])
    assert len(outputs) == 1
