"""Where the tests look for the real CIFAR-10, and that CI fails rather than skips without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    DEFAULT_REAL_ARCHIVE,
    real_cifar10_archive,
    real_cifar10_source,
    require_real_cifar10,
)


def test_the_path_comes_from_the_environment_variable_when_set(tmp_path):
    assert real_cifar10_archive({"BNSTUDY_CIFAR10_PATH": str(tmp_path / "c.tar.gz")}) == tmp_path / "c.tar.gz"
    assert real_cifar10_archive({}) == DEFAULT_REAL_ARCHIVE
    assert DEFAULT_REAL_ARCHIVE.parts[-3:] == ("shared", "datasets", "cifar10-jpeg.tar.gz")


def test_the_source_kind_follows_the_environment_for_local_kinds_only():
    assert real_cifar10_source({"BNSTUDY_CIFAR10_SOURCE": "python_archive"}) == "python_archive"
    assert real_cifar10_source({"BNSTUDY_CIFAR10_SOURCE": "download"}) == "image_folder"
    assert real_cifar10_source({}) == "image_folder"


def test_an_existing_archive_is_returned(tmp_path):
    archive = tmp_path / "c.tar.gz"
    archive.write_bytes(b"x")

    assert require_real_cifar10({"BNSTUDY_CIFAR10_PATH": str(archive), "CI": "true"}) == archive


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_a_missing_archive_fails_under_ci(tmp_path, ci):
    missing = tmp_path / "none.tar.gz"

    with pytest.raises(pytest.fail.Exception, match=f"CI is set but this test needs the real CIFAR-10 at {missing}"):
        require_real_cifar10({"BNSTUDY_CIFAR10_PATH": str(missing), "CI": ci})


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_a_missing_archive_skips_outside_ci(tmp_path, environ):
    missing = Path(tmp_path / "none.tar.gz")

    with pytest.raises(pytest.skip.Exception, match="set BNSTUDY_CIFAR10_PATH"):
        require_real_cifar10({"BNSTUDY_CIFAR10_PATH": str(missing), **environ})
