"""Kaggle tables: every bad input gets a one-line error naming the file, the line and the problem."""

import re
import shutil

import pytest
from PIL import Image

from jaguar_reid.data import DataError, load_competition, read_labels, read_pairs, read_submission

from conftest import write_csv


def test_read_labels_strips_and_keeps_order(tmp_path):
    frame = read_labels(write_csv(tmp_path / "train.csv", "filename,ground_truth\nb.png, Ousado\na.png,Marcela\n"))
    assert frame["filename"].tolist() == ["b.png", "a.png"]
    assert frame["ground_truth"].tolist() == ["Ousado", "Marcela"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "train.csv: file is empty"),
        ("filename,identity\na.png,x\n", "train.csv: missing column(s) ground_truth; expected filename,ground_truth, found filename,identity"),
        ("filename,ground_truth\n", "train.csv: no data rows below the header"),
        ("filename,ground_truth\na.png,x\nb.png,y\na.png,z\n", "train.csv line 4: duplicate filename 'a.png' (first on line 2)"),
        ("filename,ground_truth\na.png,x\nb.png,\n", "train.csv line 3: empty ground_truth for 'b.png'"),
        ("filename,ground_truth\n,x\n", "train.csv line 2: empty filename"),
    ],
)
def test_bad_train_csv(tmp_path, text, message):
    path = write_csv(tmp_path / "train.csv", text)
    with pytest.raises(DataError) as error:
        read_labels(path)
    assert str(error.value) == f"{tmp_path}/{message}"
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("row_id,query_image\n1,a.png\n", "test.csv: missing column(s) gallery_image; expected row_id,query_image,gallery_image, found row_id,query_image"),
        ("row_id,query_image,gallery_image\n", "test.csv: no data rows below the header"),
        ("row_id,query_image,gallery_image\n1,a.png,b.png\n2,b.png,a.png\n1,a.png,c.png\n", "test.csv line 4: duplicate row_id '1' (first on line 2)"),
        ("row_id,query_image,gallery_image\n1,a.png,\n", "test.csv line 2: empty gallery_image"),
    ],
)
def test_bad_test_csv(tmp_path, text, message):
    with pytest.raises(DataError) as error:
        read_pairs(write_csv(tmp_path / "test.csv", text))
    assert str(error.value) == f"{tmp_path}/{message}"


def test_pairs_are_encoded_against_sorted_images(tmp_path):
    pairs = read_pairs(write_csv(tmp_path / "test.csv", "row_id,query_image,gallery_image\nr1,b.png,a.png\nr2,a.png,c.png\n"))
    assert pairs.images.tolist() == ["a.png", "b.png", "c.png"]
    assert pairs.query.tolist() == [1, 0] and pairs.gallery.tolist() == [0, 2]
    assert pairs.row_id.to_pylist() == ["r1", "r2"]


@pytest.mark.parametrize("value", ["abc", "nan", "inf", ""])
def test_submission_rejects_non_finite(tmp_path, value):
    path = write_csv(tmp_path / "sub.csv", f"row_id,similarity\n1,0.5\n2,{value}\n")
    with pytest.raises(DataError, match=re.escape(f"sub.csv line 3: similarity '{value}' is not a finite number")):
        read_submission(path)


def _root(tmp_path, rows, nested=True):
    image_dir = tmp_path / "train" / "train" if nested else tmp_path / "train"
    image_dir.mkdir(parents=True)
    for name, _ in rows:
        Image.new("RGB", (8, 8)).save(image_dir / name)
    write_csv(tmp_path / "train.csv", "filename,ground_truth\n" + "".join(f"{n},{g}\n" for n, g in rows))
    return tmp_path


@pytest.mark.parametrize("nested", [True, False])
def test_image_folder_auto_detected(tmp_path, nested):
    root = _root(tmp_path, [("a.png", "x"), ("b.png", "y")], nested)
    competition = load_competition(root)
    assert competition.train_dir == (root / "train" / "train" if nested else root / "train")
    assert competition.pairs is None


def test_missing_train_images_listed_with_count(tmp_path):
    root = _root(tmp_path, [("a.png", "x")])
    with open(root / "train.csv", "a") as handle:
        handle.write("".join(f"m{i}.png,y\n" for i in range(5)))
    with pytest.raises(DataError) as error:
        load_competition(root)
    assert str(error.value) == (
        f"{root}/train.csv: 5 image file(s) not found in {root}/train/train: m0.png, m1.png, m2.png and 2 more"
    )


def test_train_images_override(tmp_path):
    root = _root(tmp_path, [("a.png", "x")])
    elsewhere = tmp_path / "elsewhere"
    shutil.move(root / "train" / "train", elsewhere)
    with pytest.raises(DataError, match="not found"):
        load_competition(root)
    assert load_competition(root, train_images=elsewhere).train_dir == elsewhere


def test_pairs_naming_missing_images(tmp_path):
    root = _root(tmp_path, [("a.png", "x")])
    (root / "test").mkdir()
    Image.new("RGB", (8, 8)).save(root / "test" / "q.png")
    write_csv(root / "test.csv", "row_id,query_image,gallery_image\n1,q.png,q.png\n2,q.png,ghost.png\n")
    with pytest.raises(DataError) as error:
        load_competition(root)
    assert str(error.value) == (
        f"{root}/test.csv line 3: pair names image 'ghost.png', not found in {root}/test (1 image(s) missing in all)"
    )


def test_predict_requires_test_csv(tmp_path):
    root = _root(tmp_path, [("a.png", "x")])
    with pytest.raises(DataError, match="test.csv: file not found"):
        load_competition(root, require_test=True)
