"""Atomic writes and the PNG writers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radvlsm.io import atomic_path, atomic_write, read_image, read_mask, write_png_image, write_png_mask


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_atomic_write_text_and_bytes(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "r.json") as fh:
        json.dump({"dice": 0.91, "case": "läsion"}, fh, ensure_ascii=False)
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8")) == {"dice": 0.91, "case": "läsion"}
    with atomic_write(tmp_path / "b.bin", "wb") as fh:
        fh.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with atomic_write(tmp_path / "e.csv", newline="") as fh:
        csv.writer(fh).writerows([["path", "reason"], ["a,b.png", "empty"]])
    assert (tmp_path / "e.csv").read_bytes() == b'path,reason\r\n"a,b.png",empty\r\n'
    assert _leftovers(tmp_path) == []


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("half-writ")
        raise RuntimeError("disk full")
    assert target.read_text(encoding="utf-8") == "old"
    assert _leftovers(tmp_path) == []


def test_atomic_write_permissions_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_write_exclusive_and_bad_mode(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError), atomic_write(tmp_path / "a.txt", "x"):
        pass
    with pytest.raises(ValueError, match="mode"), atomic_write(tmp_path / "b.txt", "a"):
        pass
    assert _leftovers(tmp_path) == []


def test_atomic_path_keeps_extension_and_cleans_up(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "vol.nii.gz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tmp.nii.gz") and tmp.exists()
        tmp.write_bytes(b"data")
    assert (tmp_path / "vol.nii.gz").read_bytes() == b"data"
    with pytest.raises(OSError), atomic_path(tmp_path / "x.png") as tmp:
        tmp.write_bytes(b"partial")
        raise OSError("writer crashed")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(FileNotFoundError, match="left no file"), atomic_path(tmp_path / "y.png") as tmp:
        tmp.unlink()
    assert _leftovers(tmp_path) == []


def test_write_png_mask(tmp_path: Path) -> None:
    mask = np.zeros((7, 9), bool)
    mask[2:4, 3:8] = True
    out = write_png_mask(tmp_path / "case_mask.png", mask)
    img = Image.open(out)
    assert img.mode == "L" and img.size == (9, 7)
    assert set(np.unique(np.asarray(img)).tolist()) == {0, 255}
    np.testing.assert_array_equal(read_mask(out), mask)
    write_png_mask(tmp_path / "empty.png", np.zeros((3, 3), np.uint8))
    assert not read_mask(tmp_path / "empty.png").any()


def test_write_png_mask_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must be written as \.png"):
        write_png_mask(tmp_path / "m.jpg", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="2-D"):
        write_png_mask(tmp_path / "m.png", np.zeros((2, 2, 3)))
    assert list(tmp_path.iterdir()) == []


def test_write_png_image(tmp_path: Path, make) -> None:
    rgb = make.rgb(5, 6)
    out = write_png_image(tmp_path / "overlay.png", rgb)
    np.testing.assert_array_equal(read_image(out).pixels, rgb)
    gray = write_png_image(tmp_path / "gray.png", rgb[..., 0])
    assert read_image(gray).pixels.shape == (5, 6)
    with pytest.raises(ValueError, match="uint8"):
        write_png_image(tmp_path / "f.png", rgb.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        write_png_image(tmp_path / "f.png", np.zeros((2, 2, 2), np.uint8))


def test_writer_into_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_png_mask(tmp_path / "no" / "such" / "m.png", np.zeros((2, 2)))
