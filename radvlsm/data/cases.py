"""Cases of a segmentation dataset laid out as ``images/``, ``masks/`` and an optional ``labels.csv``."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from radvlsm.data.boxes import mask_to_box
from radvlsm.errors import InputError
from radvlsm.io.reader import read_mask
from radvlsm.io.record import case_stem

log = logging.getLogger(__name__)

#: File endings a dataset folder may hold images and masks in.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii.gz", ".nii", ".dcm")


@dataclass(frozen=True)
class LesionCase:
    """One image with its lesion mask and labels.

    Attributes:
        case_id: the file stem shared by image and mask.
        image_path: the image file.
        mask_path: the mask file, ``None`` when the folder has no mask for this case.
        diagnosis: the ``diagnosis`` column of ``labels.csv`` when present.
        labels: every column of the case's ``labels.csv`` row, read-only, as written there.
    """

    case_id: str
    image_path: Path
    mask_path: Path | None
    diagnosis: str | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class LesionDataset:
    """A folder of cases. ``unpaired`` lists image files that have no mask (they are kept out of ``cases``
    only when ``require_masks`` was asked for)."""

    root: Path
    name: str
    cases: tuple[LesionCase, ...]
    unpaired: tuple[Path, ...] = ()

    def __len__(self) -> int:
        return len(self.cases)

    def by_id(self) -> dict[str, LesionCase]:
        return {c.case_id: c for c in self.cases}

    def subset(self, case_ids: set[str] | frozenset[str]) -> LesionDataset:
        return LesionDataset(self.root, self.name, tuple(c for c in self.cases if c.case_id in case_ids))


def _files_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if not p.name.lower().endswith(IMAGE_SUFFIXES):
            continue
        stem = case_stem(p)
        if stem in found:
            raise InputError(p, f"two files share the case id {stem!r} (the other is {found[stem].name})")
        found[stem] = p
    return found


def read_labels(path: Path) -> dict[str, dict[str, str]]:
    """Rows of a ``labels.csv`` keyed by its ``case_id`` column."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "case_id" not in reader.fieldnames:
            raise InputError(path, "labels file has no 'case_id' column")
        rows: dict[str, dict[str, str]] = {}
        for row in reader:
            rows[row["case_id"]] = {k: (v or "") for k, v in row.items() if k is not None}
    return rows


def read_dataset(root: str | Path, name: str | None = None, require_masks: bool = True) -> LesionDataset:
    """Read a dataset folder: ``images/<case>.<ext>``, ``masks/<case>.<ext>``, optional ``labels.csv``.

    Images and masks are paired by case id (the file stem). With ``require_masks``, images without a
    mask are listed in ``unpaired`` (and logged) instead of becoming cases; a mask without an image is
    logged and ignored.

    Raises:
        InputError: the folder or its ``images/`` subfolder is missing, or two files share a case id.
    """
    root = Path(root)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        raise InputError(root, "not a dataset folder: it has no images/ subfolder")
    images = _files_by_stem(images_dir)
    masks = _files_by_stem(masks_dir) if masks_dir.is_dir() else {}
    labels_path = root / "labels.csv"
    labels = read_labels(labels_path) if labels_path.is_file() else {}
    cases: list[LesionCase] = []
    unpaired: list[Path] = []
    for cid, img in images.items():
        mask = masks.get(cid)
        if mask is None and require_masks:
            unpaired.append(img)
            continue
        row = labels.get(cid, {})
        cases.append(
            LesionCase(
                case_id=cid,
                image_path=img,
                mask_path=mask,
                diagnosis=row.get("diagnosis") or None,
                labels=MappingProxyType(dict(row)),
            )
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        log.warning("%s: %d mask(s) without an image, ignored (e.g. %s)", masks_dir, len(orphans), orphans[0])
    if unpaired:
        log.warning("%s: %d image(s) without a mask (e.g. %s)", images_dir, len(unpaired), unpaired[0].name)
    return LesionDataset(root=root, name=name or root.name, cases=tuple(cases), unpaired=tuple(unpaired))


def write_gt_boxes_csv(cases: Sequence[LesionCase], path: Path) -> Path:
    """Write the box of each case's ground-truth mask as a ``--boxes`` CSV (``image,x0,y0,x1,y1``, pixel
    edges); cases whose mask is empty (no lesion) or missing get no row."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "x0", "y0", "x1", "y1"])
        for c in cases:
            box = mask_to_box(read_mask(c.mask_path)) if c.mask_path is not None else None
            if box is not None:
                w.writerow([c.case_id, *box.tolist()])
    return path
