"""Channel statistics, normalization and stratified subsets against naive references."""

from __future__ import annotations

import numpy as np
import pytest

from bnstudy.core import preprocessing


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(37, 8, 8, 3), dtype=np.uint8)


def test_channel_stats_match_naive_float64_over_chunks(images):
    naive = images.astype(np.float64) / 255.0

    mean, std = preprocessing.channel_stats(images, chunk=5)  # 37 = 7 full chunks + 2

    np.testing.assert_allclose(mean, naive.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, naive.std(axis=(0, 1, 2)), rtol=1e-10)


def test_channel_stats_of_constant_channels_are_exact():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[..., 1] = 255
    images[:2, ..., 2] = 51  # half the images 0.2, half 0

    mean, std = preprocessing.channel_stats(images)

    np.testing.assert_allclose(mean, [0.0, 1.0, 0.1], atol=1e-15)
    np.testing.assert_allclose(std, [0.0, 0.0, 0.1], atol=1e-12)


def test_normalize_gives_zero_mean_unit_std_float32(images):
    mean, std = preprocessing.channel_stats(images)

    normalized = preprocessing.normalize(images, mean, std)

    assert normalized.dtype == np.float32 and normalized.shape == images.shape
    np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized.std(axis=(0, 1, 2)), 1.0, rtol=1e-5)
    expected = (images[3, 2, 1, 2] / 255.0 - mean[2]) / std[2]
    assert normalized[3, 2, 1, 2] == pytest.approx(expected, rel=1e-6)


def test_normalize_rejects_bad_stats(images):
    with pytest.raises(ValueError, match="one value per channel"):
        preprocessing.normalize(images, np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="positive"):
        preprocessing.normalize(images, np.zeros(3), np.array([1.0, 0.0, 1.0]))


class TestStratifiedSubset:
    labels = np.repeat(np.arange(10), 50)  # balanced, like CIFAR-10

    def test_balanced_classes_get_equal_shares(self):
        indices = preprocessing.stratified_subset(self.labels, 120, seed=0)

        assert indices.size == 120 and np.unique(indices).size == 120
        assert np.all(np.diff(indices) > 0)
        assert np.bincount(self.labels[indices]).tolist() == [12] * 10

    def test_uneven_size_uses_largest_remainder(self):
        labels = np.array([0] * 6 + [1] * 3 + [2] * 1)  # fractions .6 .3 .1

        counts = np.bincount(labels[preprocessing.stratified_subset(labels, 5, seed=3)], minlength=3)

        # exact shares 3.0, 1.5, 0.5: floors 3,1,0; one left over goes to the first largest remainder (class 1)
        assert counts.tolist() == [3, 2, 0]

    def test_is_deterministic_given_seed_and_varies_with_it(self):
        a = preprocessing.stratified_subset(self.labels, 100, seed=7)
        b = preprocessing.stratified_subset(self.labels, 100, seed=7)
        c = preprocessing.stratified_subset(self.labels, 100, seed=8)

        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_none_means_everything(self):
        np.testing.assert_array_equal(preprocessing.stratified_subset(self.labels, None, 0), np.arange(500))

    @pytest.mark.parametrize("size", [0, 501])
    def test_out_of_range_size_is_explained(self, size):
        with pytest.raises(ValueError, match="between 1 and the number of examples"):
            preprocessing.stratified_subset(self.labels, size, seed=0)
