"""The embedding job as an Apache Beam pipeline (issue 20, item 2): the DirectRunner in
multi-process mode (2 workers) writes the same rows as the single-machine job, and a rerun after
a lost chunk writes only that chunk. Skipped where Beam is not installed (`.[beam]`)."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from keras_instance.retrieval import embedding_shards as es  # noqa: E402

MULTI = ["--runner=DirectRunner", "--direct_num_workers=2",
         "--direct_running_mode=multi_processing"]


@pytest.mark.slow
def test_beam_pipeline_writes_the_single_machine_rows_and_resumes(trained_run, tmp_path):
    from keras_instance.embedding import beam_job, items, local_job
    from keras_instance.embedding.encoder import EncoderSpec
    folder = tmp_path / "gallery"
    folder.mkdir()
    for record in trained_run["records"][:22]:
        shutil.copy(record.image_path, folder / f"{record.image_id}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    source = items.open_source(f"folder:{folder}", tags=["beam"])
    spec = EncoderSpec("image", workdir=trained_run["config"].workdir)
    local, beam = str(tmp_path / "local"), str(tmp_path / "beam")
    local_job.run(local, source, spec, chunk_size=4, log=lambda m: None)
    log = []
    beam_job.run(beam, source, spec, chunk_size=4, pipeline_args=MULTI, log=log.append)
    assert any(line.startswith("chunk ") and "items/s" in line for line in log), log

    want, got = es.read_shards(local), es.read_shards(beam)
    assert got.ids == want.ids and len(got.ids) == 22
    assert got.paths == want.paths and got.tags == want.tags
    np.testing.assert_allclose(got.embeddings, want.embeddings, atol=1e-6)
    assert [s["path"] for s in got.skipped] == [str(folder / "broken.jpg")]
    assert sorted(os.listdir(beam)) == sorted(os.listdir(local))

    # a lost chunk: the rerun writes it alone (the others keep their files)
    os.remove(os.path.join(beam, es.chunk_name(2)))
    kept = {n: os.stat(os.path.join(beam, n)).st_mtime_ns for n in os.listdir(beam)}
    log.clear()
    beam_job.run(beam, source, spec, pipeline_args=["--direct_running_mode=in_memory"],
                 log=log.append)
    assert "5 already done, 1 to do" in log[0], log
    assert {n: os.stat(os.path.join(beam, n)).st_mtime_ns for n in kept} == kept
    again = es.read_shards(beam)
    assert again.ids == want.ids
    np.testing.assert_allclose(again.embeddings, want.embeddings, atol=1e-6)
