"""Readers and dataset validation, on tiny generated datasets plus the real Flickr8k if present."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from PIL import Image

from keras_instance.data.readers import (
    DATASET_READERS,
    read_coco_captions,
    read_cuhk_pedes,
    read_dataset,
    read_flickr8k,
    read_flickr30k,
    read_karpathy_json,
    read_manifest,
)
from keras_instance.data.records import DatasetError, Record, split_records, validate_records

REPO = Path(__file__).resolve().parents[1]
REAL_FLICKR8K = REPO.parent / "shared/data/flickr8k"


def write_image(path: Path, fmt: str = "PNG", color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format=fmt)
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def splits_of(records):
    return collections.Counter(r.split for r in records)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture
def flickr8k_dir(tmp_path):
    """6 images: 2 train, 1 dev, 1 test, 1 in no list, captions listed out of #N order."""
    root = tmp_path / "flickr8k"
    names = [f"img{i}.jpg" for i in range(5)]
    for name in names:
        write_image(root / "Flicker8k_Dataset" / name, "JPEG")
    lines = []
    for name in names:
        for n in (2, 0, 1):
            lines.append(f"{name}#{n}\t{name} caption {n} .")
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("img0.jpg\nimg1.jpg\n")
    (root / "Flickr_8k.devImages.txt").write_text("img2.jpg\n")
    (root / "Flickr_8k.testImages.txt").write_text("img3.jpg\n\n")
    return root


def karpathy_entry(name, split, captions, filepath=None):
    entry = {"filename": name, "split": split, "imgid": 0,
             "sentences": [{"raw": c, "tokens": c.lower().split()} for c in captions]}
    if filepath:
        entry["filepath"] = filepath
    return entry


def good_records(tmp_path, n=3):
    return [Record(f"id{i}", str(write_image(tmp_path / f"im{i}.png")), (f"caption {i}",), i,
                   "train") for i in range(n)]


# ----------------------------------------------------------------------------- Flickr8k

def test_flickr8k_reads_splits_captions_labels(flickr8k_dir):
    records = read_flickr8k(flickr8k_dir)
    assert [r.image_id for r in records] == ["img0.jpg", "img1.jpg", "img2.jpg", "img3.jpg"]
    assert [r.split for r in records] == ["train", "train", "val", "test"]
    assert [r.label for r in records] == [0, 1, 2, 3]
    assert records[0].captions == tuple(f"img0.jpg caption {n} ." for n in range(3))
    assert records[2].image_path == str(flickr8k_dir / "Flicker8k_Dataset" / "img2.jpg")
    validate_records(records, str(flickr8k_dir))


def test_flickr8k_accepts_corrected_folder_spelling(flickr8k_dir):
    (flickr8k_dir / "Flicker8k_Dataset").rename(flickr8k_dir / "Flickr8k_Dataset")
    records = read_flickr8k(flickr8k_dir)
    assert Path(records[0].image_path).parent.name == "Flickr8k_Dataset"


def test_flickr8k_bad_token_line_names_file_and_line(flickr8k_dir):
    token = flickr8k_dir / "Flickr8k.token.txt"
    token.write_text("img0.jpg#0\tok caption\nimg0.jpg#1 no tab here\n")
    with pytest.raises(DatasetError) as err:
        read_flickr8k(flickr8k_dir)
    msg = str(err.value)
    assert "Flickr8k.token.txt, line 2" in msg and "IMAGE.jpg#N<TAB>caption" in msg


def test_flickr8k_missing_split_list_and_image_folder(flickr8k_dir):
    (flickr8k_dir / "Flickr_8k.devImages.txt").unlink()
    with pytest.raises(DatasetError, match="Flickr_8k.devImages.txt"):
        read_flickr8k(flickr8k_dir)
    (flickr8k_dir / "Flicker8k_Dataset").rename(flickr8k_dir / "pics")
    with pytest.raises(DatasetError, match="Flicker8k_Dataset/ or Flickr8k_Dataset/"):
        read_flickr8k(flickr8k_dir)


def test_flickr8k_image_in_two_lists(flickr8k_dir):
    (flickr8k_dir / "Flickr_8k.testImages.txt").write_text("img0.jpg\n")
    with pytest.raises(DatasetError, match=r"testImages.txt, line 1: img0.jpg is already listed"):
        read_flickr8k(flickr8k_dir)


def test_read_dataset_flickr8k_validates(flickr8k_dir):
    (flickr8k_dir / "Flicker8k_Dataset" / "img1.jpg").unlink()
    with pytest.raises(DatasetError, match="missing image file: 1"):
        read_dataset("flickr8k", flickr8k_dir)
    assert len(read_dataset("flickr8k", flickr8k_dir, check_images=False)) == 4


# ----------------------------------------------------------------------------- Karpathy

def test_karpathy_flickr_style_uses_images_subfolder(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write_image(tmp_path / "images" / name, "JPEG")
    data = {"dataset": "flickr30k", "images": [
        karpathy_entry("a.jpg", "train", ["A dog .", "A cat ."]),
        karpathy_entry("b.jpg", "restval", ["Rest ."]),
        karpathy_entry("c.jpg", "val", ["Val ."])]}
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps(data))
    records = read_karpathy_json(path)
    assert [(r.image_id, r.split, r.label) for r in records] == [
        ("a.jpg", "train", 0), ("b.jpg", "train", 1), ("c.jpg", "val", 2)]
    assert records[0].captions == ("A dog .", "A cat .")
    assert records[0].image_path == str(tmp_path / "images" / "a.jpg")
    dropped = read_karpathy_json(path, restval_to_train=False)
    assert [r.image_id for r in dropped] == ["a.jpg", "c.jpg"] and dropped[1].label == 1
    assert [r.image_id for r in read_dataset("flickr30k_karpathy", tmp_path)] == [
        "a.jpg", "b.jpg", "c.jpg"]


def test_karpathy_coco_style_filepath_and_explicit_root(tmp_path):
    images = tmp_path / "coco_images"
    write_image(images / "val2014" / "COCO_val2014_1.jpg", "JPEG")
    write_image(images / "train2014" / "COCO_train2014_2.jpg", "JPEG")
    entry_t = karpathy_entry("COCO_train2014_2.jpg", "train", ["t"], filepath="train2014")
    entry_v = karpathy_entry("COCO_val2014_1.jpg", "test", [], filepath="val2014")
    entry_v["sentences"] = [{"tokens": ["only", "tokens"]}]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": [entry_t, entry_v]}))
    records = read_karpathy_json(path, image_root=images)
    assert records[1].image_id == "val2014/COCO_val2014_1.jpg"
    assert records[1].image_path == str(images / "val2014" / "COCO_val2014_1.jpg")
    assert records[1].captions == ("only tokens",) and records[1].split == "test"


def test_karpathy_malformed(tmp_path):
    path = tmp_path / "dataset_x.json"
    path.write_text('{"images": [\n{"filename": "a.jpg",\n}]}')
    with pytest.raises(DatasetError, match=r"dataset_x.json, line 3 column 1: invalid JSON"):
        read_karpathy_json(path)
    path.write_text(json.dumps({"images": [{"filename": "a.jpg", "sentences": []}]}))
    with pytest.raises(DatasetError, match=r"images\[0\] \(filename='a.jpg'\) lacks 'split'"):
        read_karpathy_json(path)
    path.write_text(json.dumps({"pictures": []}))
    with pytest.raises(DatasetError, match="no 'images' list"):
        read_karpathy_json(path)


def test_read_dataset_karpathy_needs_exactly_one_json(tmp_path):
    with pytest.raises(DatasetError, match="found none"):
        read_dataset("karpathy", tmp_path)
    (tmp_path / "dataset_a.json").write_text("{}")
    (tmp_path / "dataset_b.json").write_text("{}")
    with pytest.raises(DatasetError, match="dataset_a.json, dataset_b.json"):
        read_dataset("karpathy", tmp_path)


# ----------------------------------------------------------------------------- Flickr30k

# Photo id -> the split Karpathy's JSON gives it, chosen to differ from the authors' split.
F30K_KARPATHY = {"1000268201": "train", "1001773457": "val", "1002674143": "train",
                 "1003163366": "test", "1007129816": "train", "101654506": "val"}
# Flickr8k lists: 1002674143 is in both (the authors' code makes it test); 999999999 is a
# Flickr8k photo that is not in Flickr30k (ignored).
F8K_DEV = ["1000268201_693b08cb0e.jpg", "1002674143_1b742ab4b8.jpg", "999999999_0123456789.jpg"]
F8K_TEST = ["1001773457_577c3a7d70.jpg", "1002674143_1b742ab4b8.jpg"]
F30K_AUTHORS = {"1000268201": "val", "1001773457": "test", "1002674143": "test",
                "1003163366": "train", "1007129816": "train", "101654506": "train"}


@pytest.fixture
def flickr30k_dir(tmp_path):
    """Six Flickr30k images in flickr30k-images/, Karpathy's JSON, Flickr8k's dev/test lists."""
    root = tmp_path / "flickr30k"
    for photo in F30K_KARPATHY:
        write_image(root / "flickr30k-images" / f"{photo}.jpg", "JPEG")
    (root / "dataset_flickr30k.json").write_text(json.dumps({"dataset": "flickr30k", "images": [
        karpathy_entry(f"{photo}.jpg", split, [f"json {photo} a .", f"json {photo} b ."])
        for photo, split in F30K_KARPATHY.items()]}))
    (root / "Flickr_8k.devImages.txt").write_text("\n".join(F8K_DEV) + "\n")
    (root / "Flickr_8k.testImages.txt").write_text("\n".join(F8K_TEST) + "\n\n")
    return root


def photo_splits(records):
    return {Path(r.image_id).stem: r.split for r in records}


def test_flickr30k_default_is_authors_split_from_flickr8k_lists(flickr30k_dir):
    records = read_dataset("flickr30k", flickr30k_dir)
    assert photo_splits(records) == F30K_AUTHORS
    assert [r.image_id for r in records] == [f"{p}.jpg" for p in F30K_KARPATHY]   # JSON order
    assert [r.label for r in records] == list(range(6))
    assert records[0].captions == ("json 1000268201 a .", "json 1000268201 b .")
    assert records[0].image_path == str(flickr30k_dir / "flickr30k-images" / "1000268201.jpg")
    assert read_flickr30k(flickr30k_dir) == records


def test_flickr30k_karpathy_option_keeps_json_splits(flickr30k_dir):
    for name in ("Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"):
        (flickr30k_dir / name).unlink()   # Karpathy's split does not need the Flickr8k lists
    records = read_dataset("flickr30k_karpathy", flickr30k_dir)
    assert photo_splits(records) == F30K_KARPATHY
    assert read_flickr30k(flickr30k_dir, split="karpathy") == records
    with pytest.raises(ValueError, match="authors, karpathy"):
        read_flickr30k(flickr30k_dir, split="official")


@pytest.mark.parametrize("remove", [["Flickr_8k.testImages.txt"],
                                    ["Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"]])
def test_flickr30k_missing_flickr8k_list_says_which_and_where(flickr30k_dir, remove):
    for name in remove:
        (flickr30k_dir / name).unlink()
    with pytest.raises(DatasetError) as err:
        read_dataset("flickr30k", flickr30k_dir)
    msg = str(err.value)
    assert "Flickr_8k.devImages.txt and Flickr_8k.testImages.txt" in msg   # both named
    assert f"{' and '.join(remove)} not found in {flickr30k_dir}" in msg
    assert str(flickr30k_dir / "Flickr8k_text") in msg
    assert "ship with Flickr8k" in msg and "'flickr30k_karpathy'" in msg


def test_flickr30k_lists_in_flickr8k_text_subfolder(flickr30k_dir):
    (flickr30k_dir / "Flickr8k_text").mkdir()
    for name in ("Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"):
        (flickr30k_dir / name).rename(flickr30k_dir / "Flickr8k_text" / name)
    assert photo_splits(read_dataset("flickr30k", flickr30k_dir)) == F30K_AUTHORS


def test_flickr30k_token_file_is_preferred_and_covers_every_image(flickr30k_dir):
    write_image(flickr30k_dir / "flickr30k-images" / "1009434119.jpg", "JPEG")   # not in JSON
    photos = ["1009434119", *F30K_KARPATHY]
    (flickr30k_dir / "results_20130124.token").write_text("".join(
        f"{p}.jpg#{n}\ttoken {p} {n} .\n" for p in photos for n in (1, 0)))
    records = read_dataset("flickr30k", flickr30k_dir)
    assert [r.image_id for r in records] == [f"{p}.jpg" for p in photos]   # token-file order
    assert photo_splits(records) == {"1009434119": "train", **F30K_AUTHORS}
    assert records[1].captions == ("token 1000268201 0 .", "token 1000268201 1 .")
    assert records[0].image_path == str(flickr30k_dir / "flickr30k-images" / "1009434119.jpg")


def test_flickr30k_authors_split_refuses_json_without_every_image(flickr30k_dir):
    write_image(flickr30k_dir / "flickr30k-images" / "1009434119.jpg", "JPEG")
    with pytest.raises(DatasetError) as err:
        read_dataset("flickr30k", flickr30k_dir)
    msg = str(err.value)
    assert "dataset_flickr30k.json lists 6 images" in msg and "1 more .jpg files" in msg
    assert "1009434119.jpg" in msg and "results_20130124.token" in msg
    assert len(read_dataset("flickr30k_karpathy", flickr30k_dir)) == 6


def test_flickr30k_bad_or_foreign_list(flickr30k_dir):
    dev = flickr30k_dir / "Flickr_8k.devImages.txt"
    dev.write_text("1000268201_693b08cb0e.jpg\n1002674143.jpg\n")
    with pytest.raises(DatasetError, match=r"devImages.txt, line 2: expected a Flickr8k image "
                                           r"name .* got '1002674143.jpg'"):
        read_dataset("flickr30k", flickr30k_dir)
    dev.write_text("2090545563_a4e66ec76b.jpg\n")
    with pytest.raises(DatasetError, match=r"devImages.txt: none of its 1 photo ids"):
        read_dataset("flickr30k", flickr30k_dir)
    (flickr30k_dir / "dataset_flickr30k.json").unlink()
    with pytest.raises(DatasetError, match="No Flickr30k captions.*results_20130124.token"):
        read_dataset("flickr30k", flickr30k_dir)


def test_flickr30k_config_states_the_split():
    text = (REPO / "configs" / "flickr30k.flags").read_text()
    assert "--dataset=flickr30k\n" in text
    assert "29,783 / 1,000 / 1,000" in text and "--dataset=flickr30k_karpathy" in text
    for config in sorted((REPO / "configs").glob("*.flags")):
        for line in config.read_text().splitlines():
            if line.startswith("--dataset="):
                assert line.partition("=")[2] in DATASET_READERS, config.name


# ----------------------------------------------------------------------------- COCO

def write_coco_part(root, part, ids):
    images = [{"id": i, "file_name": f"COCO_{part}_{i:012d}.jpg"} for i in ids]
    for im in images:
        write_image(root / part / im["file_name"], "JPEG")
    anns = [{"id": 1000 + 2 * i + k, "image_id": i, "caption": f"{part} {i} cap {k}"}
            for i in ids for k in (1, 0)]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"captions_{part}.json").write_text(
        json.dumps({"images": images, "annotations": anns[::-1]}))


def test_coco_captions_split_rule(tmp_path, monkeypatch):
    from keras_instance.data.readers import coco
    monkeypatch.setattr(coco, "COCO_VAL_SIZE", 2)
    monkeypatch.setattr(coco, "COCO_TEST_SIZE", 2)
    write_coco_part(tmp_path, "train2014", [9, 3])
    write_coco_part(tmp_path, "val2014", [50, 10, 40, 20, 30])
    records = read_coco_captions(tmp_path)
    by_id = {r.image_id: r for r in records}
    assert [r.split for r in records] == ["train"] * 2 + ["val", "val", "test", "test", "train"]
    assert by_id["val2014/COCO_val2014_000000000010.jpg"].split == "val"
    assert by_id["val2014/COCO_val2014_000000000050.jpg"].split == "train"
    assert records[0].captions == ("train2014 3 cap 0", "train2014 3 cap 1")
    assert [r.label for r in records] == list(range(7))
    validate_records(records, str(tmp_path))
    assert len(read_dataset("coco", tmp_path)) == 7   # no dataset_coco.json -> raw captions


def test_coco_prefers_karpathy_json(tmp_path):
    write_image(tmp_path / "val2014" / "x.jpg", "JPEG")
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": [
        karpathy_entry("x.jpg", "train", ["c"], filepath="val2014")]}))
    assert [r.image_id for r in read_dataset("coco", tmp_path)] == ["val2014/x.jpg"]


def test_coco_missing_annotations(tmp_path):
    with pytest.raises(DatasetError, match="captions_train2014.json"):
        read_coco_captions(tmp_path)


# ----------------------------------------------------------------------------- CUHK-PEDES

def test_cuhk_pedes_labels_are_person_ids_and_split_by_id(tmp_path):
    entries = [{"file_path": "CUHK01/a.png", "captions": ["red coat"], "id": 5},
               {"file_path": "CUHK01/b.png", "captions": ["red coat again"], "id": 5},
               {"file_path": "CUHK03/c.png", "captions": ["blue"], "id": 11500},
               {"file_path": "test_query/d.png", "captions": ["green"], "id": 12500},
               {"file_path": "Market/e.png", "captions": ["x"], "id": 7, "split": "test"}]
    for e in entries:
        write_image(tmp_path / "imgs" / e["file_path"])
    (tmp_path / "reid_raw.json").write_text(json.dumps(entries))
    records = read_cuhk_pedes(tmp_path)
    assert [r.label for r in records] == [5, 5, 11500, 12500, 7]
    assert [r.split for r in records] == ["train", "train", "val", "test", "test"]
    assert records[0].image_id == "CUHK01/a.png"
    assert records[0].image_path == str(tmp_path / "imgs" / "CUHK01" / "a.png")
    assert len(read_dataset("cuhk_pedes", tmp_path)) == 5


def test_cuhk_pedes_fallback_root_and_errors(tmp_path):
    write_image(tmp_path / "CUHK01" / "a.png")
    (tmp_path / "reid_raw.json").write_text(json.dumps(
        [{"file_path": "CUHK01/a.png", "captions": ["c"], "id": 1}]))
    assert read_cuhk_pedes(tmp_path)[0].image_path == str(tmp_path / "CUHK01" / "a.png")
    (tmp_path / "reid_raw.json").write_text(json.dumps([{"file_path": "a.png", "id": 1}]))
    with pytest.raises(DatasetError, match=r"reid_raw.json: entry \[0\] lacks"):
        read_cuhk_pedes(tmp_path)
    (tmp_path / "reid_raw.json").write_text(json.dumps(
        [{"file_path": "a.png", "captions": ["c"], "id": 20000}]))
    with pytest.raises(DatasetError, match="outside 1-13003"):
        read_cuhk_pedes(tmp_path)


# ----------------------------------------------------------------------------- manifest

def test_manifest_paths_ids_labels(tmp_path):
    write_image(tmp_path / "pics" / "a.png")
    absolute = write_image(tmp_path / "elsewhere" / "b.png")
    path = write_jsonl(tmp_path / "manifest.jsonl", [
        {"image": "pics/a.png", "captions": [" first ", "second"], "split": "train"},
        "",
        {"image": str(absolute), "captions": ["third"], "split": "test", "id": "bee"}])
    records = read_manifest(path)
    assert records[0] == Record("pics/a.png", str(tmp_path / "pics" / "a.png"),
                                ("first", "second"), 0, "train")
    assert (records[1].image_id, records[1].image_path,
            records[1].label) == ("bee", str(absolute), 1)
    assert read_dataset("demo", tmp_path) == records
    assert read_dataset("manifest", path) == records


def test_manifest_default_labels_skip_explicit_ones(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [
        {"image": "a.png", "captions": ["x"], "split": "train", "label": 4},
        {"image": "b.png", "captions": ["x"], "split": "train"}])
    assert [r.label for r in read_manifest(path)] == [4, 6]


@pytest.mark.parametrize("line, expected", [
    ('{"image": "a.png", "captions": ["x"], "split": "train"', "line 2: invalid JSON"),
    ('{"image": "a.png", "split": "train"}', "line 2: missing key(s) 'captions'"),
    ('{"image": "a.png", "captions": "one string", "split": "train"}',
     "line 2: 'captions' must be a list of strings"),
    ('{"image": "a.png", "captions": ["x"], "split": "train", "label": "7"}',
     "line 2: 'label' must be an integer"),
])
def test_manifest_malformed_line_reports_line_number(tmp_path, line, expected):
    path = write_jsonl(tmp_path / "data.jsonl", [
        {"image": "ok.png", "captions": ["fine"], "split": "train"}, line])
    with pytest.raises(DatasetError) as err:
        read_manifest(path)
    assert "data.jsonl" in str(err.value) and expected in str(err.value)
    assert "one JSON object per line" in str(err.value)


# ----------------------------------------------------------------------------- validation

def test_validate_collects_every_problem_in_one_error(tmp_path):
    good = good_records(tmp_path, 2)
    zero = tmp_path / "zero.png"
    zero.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_bytes(b"this is not an image at all")
    img = str(write_image(tmp_path / "ok.jpg", "JPEG"))
    broken = [
        Record("missing1", str(tmp_path / "nope1.jpg"), ("c",), 10, "train"),
        Record("missing2", str(tmp_path / "nope2.jpg"), ("c",), 11, "train"),
        Record("zero", str(zero), ("c",), 12, "train"),
        Record("text", str(text), ("c",), 13, "train"),
        Record("nocap", img, (), 14, "val"),
        Record("blank", img, ("fine", "   "), 15, "test"),
        Record("id0", img, ("dup",), 16, "train"),
        Record("weird", img, ("c",), 17, "dev"),
    ]
    with pytest.raises(DatasetError) as err:
        validate_records(good + broken, source="/data/set.jsonl")
    msg = str(err.value)
    assert "/data/set.jsonl" in msg and "(10 records)" in msg
    assert "missing image file: 2" in msg and "nope1.jpg" in msg and "'missing2'" in msg
    assert "zero-byte image file: 1" in msg and "zero.png" in msg
    assert "unreadable image file: 1" in msg and "text.jpg" in msg
    assert "record without captions: 1" in msg and "'nocap'" in msg
    assert "empty or whitespace-only caption: 1" in msg and "'blank'" in msg
    assert "caption #1" in msg
    assert "duplicate image_id: 1" in msg and "id='id0' used 2 times" in msg
    assert "unknown split name" in msg and "split='dev'" in msg
    assert "Fix or remove these entries" in msg


def test_validate_lists_first_five_offenders_only(tmp_path):
    records = good_records(tmp_path, 1) + [
        Record(f"gone{i}", str(tmp_path / f"gone{i}.png"), ("c",), i + 1, "train")
        for i in range(8)]
    with pytest.raises(DatasetError) as err:
        validate_records(records, "src")
    msg = str(err.value)
    assert "missing image file: 8" in msg and "gone4" in msg and "gone5" not in msg
    assert "and 3 more" in msg


def test_validate_needs_train_and_records(tmp_path):
    with pytest.raises(DatasetError, match="no records"):
        validate_records([], "empty.jsonl")
    records = [Record("a", str(write_image(tmp_path / "a.png")), ("c",), 0, "test")]
    with pytest.raises(DatasetError, match="no record has split 'train'"):
        validate_records(records, "src")


def test_validate_skips_image_checks_on_request(tmp_path):
    records = [Record("a", str(tmp_path / "absent.png"), ("c",), 0, "train")]
    validate_records(records, "src", check_images=False)
    with pytest.raises(DatasetError, match="missing image file"):
        validate_records(records, "src")


def test_split_records_and_record_captions_tuple(tmp_path):
    records = good_records(tmp_path, 2) + [Record("v", "v.png", ["c"], 9, "val")]
    assert records[-1].captions == ("c",)
    assert [r.image_id for r in split_records(records, "val")] == ["v"]
    with pytest.raises(ValueError, match="train, val, test"):
        split_records(records, "dev")


def test_read_dataset_errors(tmp_path):
    with pytest.raises(ValueError) as err:
        read_dataset("imagenet", tmp_path)
    assert all(name in str(err.value) for name in DATASET_READERS)
    with pytest.raises(DatasetError, match=r"nowhere.*does not exist.*manifest.jsonl"):
        read_dataset("demo", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"Expected a JSON-Lines manifest.*manifest.jsonl"):
        read_dataset("manifest", tmp_path)


# ----------------------------------------------------------------------------- real Flickr8k

def _real_flickr8k():
    if not (REAL_FLICKR8K / "Flickr8k.token.txt").is_file():
        pytest.skip(f"real Flickr8k not found at {REAL_FLICKR8K}")
    return REAL_FLICKR8K


def test_real_flickr8k_official_split():
    records = read_dataset("flickr8k", _real_flickr8k())   # validates, images included (~1 s)
    assert splits_of(records) == {"train": 6000, "val": 1000, "test": 1000}
    assert all(len(r.captions) == 5 for r in records)
    assert len({r.label for r in records}) == 8000


def test_real_flickr8k_karpathy_json():
    path = _real_flickr8k() / "dataset_flickr8k.json"
    records = read_karpathy_json(path, restval_to_train=False)
    assert splits_of(records) == {"train": 6000, "val": 1000, "test": 1000}
    assert all(len(r.captions) == 5 for r in records)
    validate_records(records, str(path), check_images=False)
    assert Path(records[0].image_path).parent.name == "Flicker8k_Dataset"
    assert len(read_karpathy_json(path)) == 8091   # restval -> train


def test_real_flickr8k_lists_give_the_authors_flickr30k_counts(tmp_path):
    """With every Flickr30k photo (31,783; the 2,000 Flickr8k dev/test photos among them), the
    real Flickr8k lists give the paper's 29,783 / 1,000 / 1,000 (captions only, no images)."""
    real = _real_flickr8k()
    names = [line.strip() for f in ("Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt")
             for line in (real / f).read_text().splitlines() if line.strip()]
    photos = [name.rpartition("_")[0] for name in names]
    photos += [str(10 ** 11 + k) for k in range(31783 - len(photos))]   # stand-in train photos
    (tmp_path / "Flickr8k_text").symlink_to(real, target_is_directory=True)
    (tmp_path / "results_20130124.token").write_text(
        "".join(f"{p}.jpg#0\tA photo .\n" for p in photos))
    records = read_dataset("flickr30k", tmp_path, check_images=False)
    assert splits_of(records) == {"train": 29783, "val": 1000, "test": 1000}


def test_manifest_problems_name_the_file_and_line(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    lines = [{"image": "a.png", "captions": ["a red square"], "split": "train"},
             {"image": "missing.png", "captions": ["a blue circle"], "split": "train"},
             {"image": "a.png", "id": "b", "captions": ["  "], "split": "test"}]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines[:1]) + "\n\n"
                    + "\n".join(json.dumps(line) for line in lines[1:]) + "\n")
    with pytest.raises(DatasetError) as err:
        validate_records(read_manifest(path), str(path))
    message = str(err.value)
    assert f"missing.png ({path}, line 3)" in message, message  # line 2 is blank
    assert f"({path}, line 4) caption #0" in message, message
