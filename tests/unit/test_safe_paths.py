"""The media path check: plain names inside their own camera directory, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from heldar.media.safe_paths import MissingFile, UnsafePath, check_media_name, resolve_media_file

NAME = "20260101T120000Z_abc123.mp4"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "recordings"
    (root / "cam-1").mkdir(parents=True)
    (root / "cam-1" / NAME).write_bytes(b"segment")
    (root / "cam-2").mkdir()
    (root / "cam-2" / NAME).write_bytes(b"other camera")
    (tmp_path / "secret.mp4").write_bytes(b"outside")
    return root


def test_plain_segment_resolves(tree: Path) -> None:
    path = resolve_media_file(tree, "cam-1", NAME)
    assert path == Path(os.path.realpath(tree)) / "cam-1" / NAME
    assert path.read_bytes() == b"segment"


@pytest.mark.parametrize(
    "name",
    [
        "../secret.mp4",
        "..",
        ".",
        "",
        "..%2fsecret.mp4",
        "%2e%2e%2fsecret.mp4",
        "%2e%2e",
        "sub/x.mp4",
        "/etc/passwd",
        "/abs/x.mp4",
        "..\\secret.mp4",
        "a\\b.mp4",
        "x\x00.mp4",
        "x\n.mp4",
        ".hidden.mp4",
        "x..mp4",
        "x.mp4.part",
        "notes.txt",
        "x" * 300 + ".mp4",
    ],
)
def test_unsafe_names_refused_before_disk(tree: Path, name: str) -> None:
    with pytest.raises(UnsafePath):
        resolve_media_file(tree, "cam-1", name)


@pytest.mark.parametrize("camera", ["..", ".", "", "Cam", "a/b", "-x", "%2e%2e", "cam 1"])
def test_bad_camera_ids_refused(tree: Path, camera: str) -> None:
    with pytest.raises(UnsafePath):
        resolve_media_file(tree, camera, NAME)


def test_suffix_case_and_upstream_names_accepted() -> None:
    check_media_name("cam-1", "20260101_120000.mp4")
    check_media_name("cam_1", "X.MP4")


def test_missing_file_and_directory(tree: Path) -> None:
    with pytest.raises(MissingFile):
        resolve_media_file(tree, "cam-1", "20990101T000000Z_x.mp4")
    with pytest.raises(MissingFile):
        resolve_media_file(tree, "cam-9", NAME)
    (tree / "cam-1" / "dir.mp4").mkdir()
    with pytest.raises(MissingFile):
        resolve_media_file(tree, "cam-1", "dir.mp4")
    with pytest.raises(MissingFile):
        resolve_media_file(tree / "nope", "cam-1", NAME)


def test_symlinked_file_out_of_tree_refused(tree: Path) -> None:
    (tree / "cam-1" / "leak.mp4").symlink_to(tree.parent / "secret.mp4")
    with pytest.raises(UnsafePath):
        resolve_media_file(tree, "cam-1", "leak.mp4")


def test_symlinked_file_to_other_camera_refused(tree: Path) -> None:
    (tree / "cam-1" / "cross.mp4").symlink_to(tree / "cam-2" / NAME)
    with pytest.raises(UnsafePath):
        resolve_media_file(tree, "cam-1", "cross.mp4")


def test_symlinked_camera_dir_refused(tree: Path) -> None:
    outside = tree.parent / "elsewhere"
    outside.mkdir()
    (outside / NAME).write_bytes(b"outside footage")
    (tree / "cam-out").symlink_to(outside, target_is_directory=True)
    (tree / "cam-alias").symlink_to(tree / "cam-2", target_is_directory=True)
    with pytest.raises(UnsafePath):
        resolve_media_file(tree, "cam-out", NAME)
    with pytest.raises(UnsafePath):
        resolve_media_file(tree, "cam-alias", NAME)  # would step around camera scope


def test_dangling_symlink_is_missing(tree: Path) -> None:
    (tree / "cam-1" / "gone.mp4").symlink_to(tree / "cam-1" / "nothing.mp4")
    with pytest.raises(MissingFile):
        resolve_media_file(tree, "cam-1", "gone.mp4")


def test_symlinked_root_is_allowed(tree: Path) -> None:
    link = tree.parent / "root-link"
    link.symlink_to(tree, target_is_directory=True)
    assert resolve_media_file(link, "cam-1", NAME).read_bytes() == b"segment"
