"""Regenerate ``data/samples/`` from the shared datasets (run from the repository root).

Picks cases the default models did not train on: the first PH2 case of each diagnosis in the hold-out fold,
the first three Kvasir-SEG test cases and the first BUS-BRA case of each diagnosis in official fold 1.
Masks are written as 0/255 PNG (Kvasir-SEG's JPEG masks thresholded at 128); ``boxes.csv`` holds each
mask's tight box (XYXY pixels, x1/y1 exclusive edges). ``ct/`` holds two LIDC nodule volumes of a ``test``
patient (:data:`CT_CASES`, one benign and one malignant) with their masks, their labels and ``points.csv``
(``study,x,y,z,diameter_mm``: the input of ``radvlsm segment|diagnose --points``).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from radvlsm.data.boxes import mask_to_box
from radvlsm.data.cases import read_dataset
from radvlsm.data.paths import shared_datasets_root
from radvlsm.data.splits import PH2_HOLDOUT_FOLD, kvasir_split, lidc_split, ph2_folds
from radvlsm.io import read_mask, write_png_mask

OUT = Path(__file__).parent / "samples"
#: LIDC nodules of a patient of the split's ``test`` part: benign 12.5 mm, malignant 15.4 mm.
CT_CASES = ("LIDC-IDRI-0043_R_2", "LIDC-IDRI-0043_R_3")


def ct_samples(root: Path) -> None:
    """Copy :data:`CT_CASES` (volumes and masks unchanged) and write their labels and ``points.csv``."""
    test = lidc_split().ids("test")
    lidc = read_dataset(root / "lidc-nodules").by_id()
    out = OUT / "ct"
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    points, labels = [], []
    for cid in CT_CASES:
        if cid not in test:
            raise SystemExit(f"{cid} is not in the LIDC test split: pick another")
        case = lidc[cid]
        shutil.copyfile(case.image_path, out / "images" / case.image_path.name)
        shutil.copyfile(case.mask_path, out / "masks" / case.mask_path.name)
        lab = case.labels
        points.append([cid, lab["coordX"], lab["coordY"], lab["coordZ"], lab["diameter_mm"]])
        labels.append([cid, lab["patient_id"], case.diagnosis, lab["malignancy_1to5"], lab["diameter_mm"]])
    with (out / "points.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["study", "x", "y", "z", "diameter_mm"])
        w.writerows(points)
    with (out / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["case_id", "patient_id", "diagnosis", "malignancy_1to5", "diameter_mm"])
        w.writerows(labels)


def main() -> None:
    root = shared_datasets_root()
    picks = []
    ph2 = read_dataset(root / "ph2").subset(ph2_folds().ids(str(PH2_HOLDOUT_FOLD)))
    for diagnosis in ("common_nevus", "atypical_nevus", "melanoma"):
        picks.append(("ph2", next(c for c in ph2.cases if c.diagnosis == diagnosis)))
    kv = read_dataset(root / "kvasir-seg").subset(kvasir_split().ids("test"))
    picks += [("kvasir-seg", c) for c in kv.cases[:3]]
    bb = read_dataset(root / "bus-bra")
    for diagnosis in ("benign", "malignant"):
        picks.append(("bus-bra", next(c for c in bb.cases if c.labels["fold5"] == "1" and c.diagnosis == diagnosis)))
    for sub in ("images", "masks"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    labels, boxes = [], []
    for dataset, case in picks:
        shutil.copyfile(case.image_path, OUT / "images" / case.image_path.name)
        mask = read_mask(case.mask_path)
        write_png_mask(OUT / "masks" / f"{case.case_id}.png", mask)
        labels.append([case.case_id, dataset, case.diagnosis or "", case.image_path.name])
        x0, y0, x1, y1 = mask_to_box(mask)
        boxes.append([case.image_path.name, int(x0), int(y0), int(x1), int(y1)])
    with (OUT / "labels.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["case_id", "dataset", "diagnosis", "image"])
        w.writerows(labels)
    with (OUT / "boxes.csv").open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["image", "x0", "y0", "x1", "y1"])
        w.writerows(boxes)
    shutil.copyfile(root / "bus-bra" / "LICENSE.txt", OUT / "LICENSE-BUS-BRA.txt")
    ct_samples(root)


if __name__ == "__main__":
    main()
