"""Reading only a subset: the same images as reading everything and then selecting, with
only the kept images decoded."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from bnstudy.core.preprocessing import stratified_subset
from bnstudy.data import cifar10, image_folder
from tests.conftest import tar_folder, write_image_folder


def stratified(sizes: dict[str, int], seed: int = 5) -> cifar10.RowSelector:
    return lambda split, labels: stratified_subset(labels, sizes[split], seed)


@pytest.fixture
def tree(tmp_path, small_arrays):
    return write_image_folder(small_arrays, tmp_path / "tree")


@pytest.mark.parametrize("form", ["directory", "tar.gz", "zip"])
def test_selection_equals_full_read_then_select_and_decodes_only_the_kept(tmp_path, tree, form, monkeypatch):
    if form == "tar.gz":
        source = tar_folder(tree, tmp_path / "t.tar.gz")
    elif form == "zip":
        source = tmp_path / "t.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for file in sorted(tree.rglob("*.png")):
                archive.write(file, file.relative_to(tree).as_posix())
    else:
        source = tree
    select = stratified({"train": 13, "test": 7})
    expected = cifar10.select_rows(cifar10.read_image_folder(source), select)
    decoded = []
    real_decode = image_folder.decode_image
    monkeypatch.setattr(image_folder, "decode_image", lambda *a: decoded.append(a[1]) or real_decode(*a))

    arrays = cifar10.read_image_folder(source, select=select)

    assert len(decoded) == 13 + 7
    for split in ("train", "test"):
        np.testing.assert_array_equal(arrays.subset[split].rows, expected.subset[split].rows)
        np.testing.assert_array_equal(arrays.labels(split), expected.labels(split))
    np.testing.assert_array_equal(arrays.train_images, expected.train_images)
    np.testing.assert_array_equal(arrays.test_images, expected.test_images)


def test_selected_rows_are_those_of_the_sorted_file_order(tree, small_arrays):
    # Files sort class-major, which is the order make_arrays produced: row r of the split
    # is small_arrays' row r.
    arrays = cifar10.read_image_folder(tree, select=lambda split, labels: np.array([0, 5, 39][: 3 if split == "train" else 2]))

    np.testing.assert_array_equal(arrays.train_images, small_arrays.train_images[[0, 5, 39]])
    np.testing.assert_array_equal(arrays.train_labels, [0, 1, 9])
    np.testing.assert_array_equal(arrays.test_images, small_arrays.test_images[[0, 5]])


def test_selecting_everything_is_no_subset(tree, small_arrays):
    arrays = cifar10.read_image_folder(tree, select=lambda split, labels: np.arange(labels.size))

    assert arrays.subset is None
    np.testing.assert_array_equal(arrays.train_images, small_arrays.train_images)


@pytest.mark.parametrize("rows", [[3, 1], [0, 0], [-1], [40], [[1, 2]], [0.5]])
def test_bad_selections_are_rejected(tree, rows):
    with pytest.raises(cifar10.Cifar10ParameterError, match="row selection for 'train'"):
        cifar10.read_image_folder(tree, select=lambda split, labels: np.asarray(rows))


def test_an_image_outside_the_subset_is_not_decoded(tree):
    (tree / "train" / "truck" / "0039.png").write_bytes(b"not an image")  # the last train row

    arrays = cifar10.read_image_folder(tree, select=lambda split, labels: np.arange(labels.size - 1))

    assert arrays.train_images.shape[0] == 39
    with pytest.raises(cifar10.Cifar10FormatError, match=r"train/truck/0039\.png"):
        cifar10.read_image_folder(tree)
