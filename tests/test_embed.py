"""Embedding shards and the embedding job (issue 20, item 1): the shard format, embeddings equal to
the served SavedModels' from both encoder sources, every item source, corrupt images skipped by
path, a refused rerun with another encoder, and a job killed with SIGKILL part-way that finishes
on rerun with every item exactly once."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT

from keras_instance.retrieval import embedding_shards as es


def _unit_rows(n, d=4, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _table(ids, fingerprint="f1", kind="image"):
    return es.EmbeddingTable(_unit_rows(len(ids)), list(ids), [f"{i}.jpg" for i in ids],
                             [f"caption {i}" for i in ids],
                             [["beach", "2026"] if n % 2 else [] for n in range(len(ids))],
                             kind, {"encoder": {"fingerprint": fingerprint, "description": {}},
                                    "command": "python -m keras_instance.cli.embed --out=X"})


def test_shard_format_round_trip_and_refusals(tmp_path):
    table = _table([f"i{n}" for n in range(10)])
    es.write_table(str(tmp_path / "a"), table, chunk_size=4)
    files = sorted(os.listdir(tmp_path / "a"))
    assert files == ["chunk-00000.npz", "chunk-00001.npz", "chunk-00002.npz", es.HEADER_FILE]
    with np.load(tmp_path / "a" / "chunk-00002.npz", allow_pickle=False) as z:  # no pickle
        assert z["ids"].tolist() == ["i8", "i9"] and z["tags"].tolist() == ["", "beach,2026"]
    back = es.read_shards(str(tmp_path / "a"))
    assert back.ids == table.ids and back.paths == table.paths
    assert back.captions == table.captions and back.tags == table.tags
    np.testing.assert_array_equal(back.embeddings, table.embeddings)
    assert back.header["dim"] == 4 and back.header["num_chunks"] == 3 and back.kind == "image"

    es.write_table(str(tmp_path / "b"), _table(["j0", "j1", "j2"]), chunk_size=2)
    both = es.read_shards([str(tmp_path / "a"), str(tmp_path / "b")])
    assert both.ids == table.ids + ["j0", "j1", "j2"] and len(both.embeddings) == 13

    es.write_table(str(tmp_path / "dup"), _table(["i3", "x"]))
    with pytest.raises(ValueError, match="more than once.*'i3'"):
        es.read_shards([str(tmp_path / "a"), str(tmp_path / "dup")])
    es.write_table(str(tmp_path / "other"), _table(["y"], fingerprint="f2"))
    with pytest.raises(ValueError, match="differ in encoder"):
        es.read_shards([str(tmp_path / "a"), str(tmp_path / "other")])
    with pytest.raises(FileExistsError):
        es.write_table(str(tmp_path / "a"), table)
    os.remove(tmp_path / "a" / "chunk-00001.npz")
    with pytest.raises(ValueError, match=r"1 of 3 chunks missing \(chunk-00001.npz\).*rerunning: "
                                         r"python -m keras_instance.cli.embed --out=X"):
        es.read_shards(str(tmp_path / "a"))


def test_progress_is_one_line_per_chunk_in_a_log_and_a_redrawn_line_on_a_terminal(capsys):
    from keras_instance.embedding.local_job import Progress, duration
    assert [duration(s) for s in (7, 130, 7380)] == ["7s", "2m10s", "2h03m"]
    lines = []
    log = Progress(10, 2, 3, lines.append, terminal=False)
    log.batch_done(2)
    log.chunk_done(1, 4, 1)
    assert len(lines) == 1 and re.fullmatch(r"chunk 2/3: 4 items \(1 skipped\), \d+ items/s, "
                                            r"ETA \S+", lines[0]), lines
    assert capsys.readouterr().out == ""
    bar = Progress(10, 2, 3, lines.append, terminal=True)
    bar.batch_done(3)
    bar.log("skipped bad.jpg: empty (zero bytes)")
    out = capsys.readouterr().out
    # drawn, cleared for the message, drawn again
    line = r"\r\x1b\[K5/10 items, \d+ items/s, ETA \S+"
    assert re.fullmatch(line + r"\r\x1b\[K" + line, out), repr(out)
    assert lines[-1] == "skipped bad.jpg: empty (zero bytes)"


# --- the job ------------------------------------------------------------------------------------

def _gallery(folder, trained_run, copies=1):
    """The trained run's demo images (PNG) under `copies` names each."""
    os.makedirs(folder, exist_ok=True)
    for record in trained_run["records"]:
        for c in range(copies):
            shutil.copy(record.image_path, os.path.join(folder, f"{c}_{record.image_id}.png"))
    return str(folder)


def _jpeg(seed):
    from PIL import Image
    out = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def _specs(trained_run, kind="image"):
    from keras_instance.embedding.encoder import EncoderSpec
    return (EncoderSpec(kind, workdir=trained_run["config"].workdir),
            EncoderSpec(kind, export_dir=trained_run["exports"]))


def _served(trained_run, model, inputs):
    import tensorflow as tf
    loaded = tf.saved_model.load(os.path.join(trained_run["exports"], model, "1"))
    name = "images" if model == "image_encoder" else "sentences"
    return loaded.signatures["serving_default"](**{name: tf.constant(inputs)})["embedding"].numpy()


def test_run_folder_and_export_embeddings_equal_the_saved_models(trained_run, tmp_path):
    from keras_instance.embedding import items, local_job
    folder = _gallery(tmp_path / "gallery", trained_run)
    source = items.open_source(f"folder:{folder}", tags=["demo"])
    served = _served(trained_run, "image_encoder", [open(i.path, "rb").read()
                                                    for i in source.items])
    for n, spec in enumerate(_specs(trained_run)):
        out = str(tmp_path / f"images{n}")
        local_job.run(out, source, spec, chunk_size=24, batch_size=5, log=lambda m: None)
        table = es.read_shards(out)
        assert table.ids == [i.id for i in source.items] and table.tags[0] == ["demo"]
        assert table.header["encoder"]["description"]["source"] == ("run", "export")[n]
        np.testing.assert_allclose(table.embeddings, served, atol=1e-5)

    captions = items.open_source("split:test", kind="caption", records=trained_run["records"])
    assert captions.items[0].id == f"{trained_run['test'][0].image_id}#0"
    served = _served(trained_run, "text_encoder", [i.caption for i in captions.items])
    for n, spec in enumerate(_specs(trained_run, "caption")):
        out = str(tmp_path / f"captions{n}")
        local_job.run(out, captions, spec, chunk_size=16, log=lambda m: None)
        table = es.read_shards(out)
        assert table.kind == "caption" and table.paths[0] == ""
        assert table.captions == [i.caption for i in captions.items]
        np.testing.assert_allclose(table.embeddings, served, atol=1e-5)


def test_corrupt_images_are_skipped_by_path_and_a_rerun_with_another_encoder_is_refused(
        trained_run, tmp_path):
    from keras_instance.embedding import items, local_job
    folder = tmp_path / "gallery"
    folder.mkdir()
    for record in trained_run["test"][:5]:
        shutil.copy(record.image_path, folder / f"{record.image_id}.png")
    (folder / "b_text.jpg").write_text("this is not an image")
    (folder / "c_empty.jpg").write_bytes(b"")
    (folder / "d_truncated.jpg").write_bytes(_jpeg(1)[:300])
    (folder / "e_good.jpg").write_bytes(_jpeg(2))
    source = items.open_source(f"folder:{folder}")
    log = []
    run_spec, export_spec = _specs(trained_run)
    local_job.run(str(tmp_path / "out"), source, run_spec, chunk_size=4, batch_size=8,
                  log=log.append)
    table = es.read_shards(str(tmp_path / "out"))
    bad = {"b_text.jpg": "not a JPEG", "c_empty.jpg": "empty", "d_truncated.jpg": "truncated"}
    assert len(table.ids) == 6 and "e_good.jpg" in table.ids
    assert {os.path.basename(s["path"]): s["error"] for s in table.skipped}.keys() == bad.keys()
    for s in table.skipped:
        assert bad[os.path.basename(s["path"])] in s["error"], s
        lines = [line for line in log if s["path"] in line]
        assert len(lines) == 1 and lines[0].startswith("skipped "), log
    good = [i.path for i in source.items if os.path.basename(i.path) not in bad]
    np.testing.assert_allclose(table.embeddings, _served(
        trained_run, "image_encoder", [open(p, "rb").read() for p in good]), atol=1e-5)

    for spec, says in ((export_spec, r"encoder run .* -> export .*image_encoder/1"),
                       (type(run_spec)("image", run_spec.workdir, (("test_feature", "relu"),)),
                        "encoder.test_feature 'embedding' -> 'relu'")):
        with pytest.raises(ValueError, match=f"holds embeddings of other settings.*{says}.*"
                                             "write to a new --out"):
            local_job.run(str(tmp_path / "out"), source, spec, log=log.append)


def test_every_item_source_gives_the_same_rows(trained_run, tmp_path):
    """A manifest (with its own tags), prepare's TFRecord shards and the dataset split name the
    same test images: same ids, paths, captions, embeddings."""
    from keras_instance.data.shards import write_shards
    from keras_instance.embedding import items, local_job
    test = trained_run["test"]
    manifest = tmp_path / "gallery.jsonl"
    manifest.write_text("".join(json.dumps({"image": r.image_path, "captions": list(r.captions),
                                            "split": "test", "id": r.image_id,
                                            "tags": [f"n{n % 2}"]}) + "\n"
                                for n, r in enumerate(test)))
    write_shards(test, str(tmp_path / "shards"), "test", num_shards=3, log=None)
    run_spec, _ = _specs(trained_run)
    tables = {}
    for spec in (f"manifest:{manifest}", f"shards:{tmp_path / 'shards'}", "split:test"):
        source = items.open_source(spec, tags=["g"], records=trained_run["records"])
        out = str(tmp_path / spec.split(":")[0])
        local_job.run(out, source, run_spec, chunk_size=5, log=lambda m: None)
        tables[spec.split(":")[0]] = es.read_shards(out)
    want = [r.image_id for r in test]
    for name, table in tables.items():
        assert table.ids == want, name
        assert table.paths == [r.image_path for r in test], name
        assert table.captions == [r.captions[0] for r in test], name
        np.testing.assert_allclose(table.embeddings, tables["split"].embeddings, atol=1e-6)
    assert tables["manifest"].tags[:2] == [["g", "n0"], ["g", "n1"]]
    assert tables["shards"].tags[0] == ["g"]


def _embed_command(workdir, folder, out):
    return [sys.executable, "-m", "keras_instance.cli.embed", f"--workdir={workdir}",
            f"--images=folder:{folder}", f"--out={out}", "--chunk_size=4", "--batch_size=4"]


@pytest.mark.slow
def test_a_job_killed_part_way_finishes_on_rerun_with_every_item_once(trained_run, tmp_path):
    from keras_instance.embedding import items, local_job
    folder = _gallery(tmp_path / "gallery", trained_run, copies=2)  # 128 images, 32 chunks
    workdir, out = trained_run["config"].workdir, str(tmp_path / "out")
    proc = subprocess.Popen(_embed_command(workdir, folder, out), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = os.path.join(out, "chunk-00000.npz")
    deadline = time.monotonic() + 300
    while not os.path.exists(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = [n for n in os.listdir(out) if re.fullmatch(r"chunk-\d{5}\.npz", n)]
    assert 1 <= len(written) < 32, f"not killed part-way: {len(written)} chunks written"
    with pytest.raises(ValueError, match="incomplete.*finish it by rerunning: python -m "
                                         "keras_instance.cli.embed"):
        es.read_shards(out)

    rerun = subprocess.run(_embed_command(workdir, folder, out), cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{len(written)} already done, {32 - len(written)} to do" in rerun.stdout
    # a redirected log: one plain line per chunk, with items/s and ETA
    lines = re.findall(r"^chunk (\d+)/32: 4 items, \d+ items/s, ETA \S+$", rerun.stdout, re.M)
    assert len(lines) == 32 - len(written) and "\x1b[" not in rerun.stdout

    assert not [n for n in os.listdir(out) if ".tmp-" in n]  # a half-written chunk is removed
    resumed = es.read_shards(out)
    source = items.open_source(f"folder:{folder}")
    assert len(resumed.ids) == 128 == len(set(resumed.ids))
    assert resumed.ids == [i.id for i in source.items]
    whole = str(tmp_path / "uninterrupted")
    local_job.run(whole, source, _specs(trained_run)[0], chunk_size=4, batch_size=4,
                  log=lambda m: None)
    expected = es.read_shards(whole)
    assert expected.ids == resumed.ids
    np.testing.assert_allclose(resumed.embeddings, expected.embeddings, atol=1e-6)
