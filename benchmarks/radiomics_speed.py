"""Speed of ``radvlsm radiomics``: cases/s with 1 and 2 workers on PH2, and per case next to pyradiomics' CLI.

Measures, on the first N PH2 cases (default 20):

* ``extract_folder`` (the library of ``radvlsm radiomics``) with 1 and with 2 worker processes: wall time of the
  whole run (pool start-up included), cases/s, speed-up over 1 worker (target: >= 1.8x with 2 workers);
* one case (the first) five ways: pyradiomics' own command line (``pyradiomics IMAGE MASK --param FILE`` as a
  subprocess, interpreter start-up included) on the same grayscale image written as a one-slice NRRD;
  ``radvlsm radiomics`` on that one case as a subprocess; and in-process: pyradiomics' ``execute()`` on the same
  SimpleITK images, radvlsm's ``extract()`` on an image already read, radvlsm reading the files and extracting.
  The pyradiomics CLI's values are checked against ours.

Prints markdown tables, the machine's load, and the command to reproduce. Run::

    python benchmarks/radiomics_speed.py --n 20
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813

from radvlsm.data.paths import shared_datasets_root
from radvlsm.fusion.radiomics import RadiomicsExtractor, to_sitk
from radvlsm.fusion.radiomics_folder import extract_folder
from radvlsm.fusion.radiomics_params import DEFAULT_PARAMS
from radvlsm.io import read_image, read_mask


def _median_time(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _script(name: str) -> str:
    """A console script of this interpreter's environment (the venv's ``pyradiomics`` / ``radvlsm``)."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"console script {name!r} not found next to {sys.executable} nor on PATH")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="PH2 cases (default 20)")
    ap.add_argument("--ph2", type=Path, default=None, help="PH2 folder (default: the shared datasets' ph2/)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of each per-case measurement (median)")
    args = ap.parse_args()

    ph2 = args.ph2 or shared_datasets_root() / "ph2"
    cases = sorted(p.stem for p in (ph2 / "images").glob("*.jpg"))[: args.n]
    if not cases:
        raise SystemExit(f"no PH2 images in {ph2 / 'images'}")
    worker_counts = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="radiomics_speed_") as tmp_name:
        tmp = Path(tmp_name)
        images, masks = tmp / "images", tmp / "masks"
        images.mkdir()
        masks.mkdir()
        for c in cases:
            (images / f"{c}.jpg").symlink_to(ph2 / "images" / f"{c}.jpg")
            (masks / f"{c}.png").symlink_to(ph2 / "masks" / f"{c}.png")

        # -- folder throughput ------------------------------------------------------------------------
        folder_rows = []
        base = None
        for w in worker_counts:
            s = extract_folder(images, masks, tmp / f"w{w}" / "features.csv", workers=w)
            if s.failed:
                raise SystemExit(f"{len(s.failed)} case(s) failed: {s.failed[0]}")
            rate = s.written / s.seconds
            base = base or rate
            folder_rows.append((w, s.written, s.seconds, rate, rate / base))
        ref_rows = (tmp / f"w{worker_counts[0]}" / "features.csv").read_bytes()
        same = all((tmp / f"w{w}" / "features.csv").read_bytes() == ref_rows for w in worker_counts)

        # -- one case, five ways ----------------------------------------------------------------------
        case = cases[0]
        img_path, mask_path = images / f"{case}.jpg", masks / f"{case}.png"
        record = read_image(img_path)
        mask = read_mask(mask_path, like=record)
        ex = RadiomicsExtractor(dimension="2d")
        ours = ex.extract(record, mask)  # warm-up
        image_s, mask_s = to_sitk(record.pixels, mask, volume=False)
        nrrd_img, nrrd_mask = tmp / "image.nrrd", tmp / "mask.nrrd"
        sitk.WriteImage(image_s, str(nrrd_img))
        sitk.WriteImage(mask_s, str(nrrd_mask))
        pyrad = ex.pyradiomics_extractor("2d")

        def read_and_extract() -> None:
            rec = read_image(img_path)
            ex.extract(rec, read_mask(mask_path, like=rec))

        pyrad_cmd = [_script("pyradiomics"), str(nrrd_img), str(nrrd_mask), "--param", str(DEFAULT_PARAMS["2d"]),
                     "--format", "csv"]
        one = tmp / "one"
        (one / "images").mkdir(parents=True)
        (one / "masks").mkdir()
        (one / "images" / img_path.name).symlink_to(img_path.resolve())
        (one / "masks" / mask_path.name).symlink_to(mask_path.resolve())
        ours_cmd = [_script("radvlsm"), "-q", "radiomics", str(one / "images"), str(one / "masks"), "-o",
                    str(one / "f.csv"), "--workers", "1", "--overwrite"]

        outputs: list[str] = []

        def run_pyradiomics_cli() -> None:
            done = subprocess.run(pyrad_cmd, capture_output=True, text=True, check=True)
            outputs.append(done.stdout)

        def run_radvlsm_cli() -> None:
            subprocess.run(ours_cmd, capture_output=True, text=True, check=True)

        per_case = [
            ("pyradiomics CLI (subprocess, interpreter start-up included)", _median_time(run_pyradiomics_cli,
                                                                                         args.repeats)),
            ("radvlsm radiomics CLI on 1 case (subprocess, start-up included)", _median_time(run_radvlsm_cli,
                                                                                             args.repeats)),
            ("pyradiomics execute(), in-process", _median_time(lambda: pyrad.execute(image_s, mask_s),
                                                               args.repeats)),
            ("radvlsm extract(), in-process, image already read", _median_time(lambda: ex.extract(record, mask),
                                                                                args.repeats)),
            ("radvlsm read files + extract(), in-process", _median_time(read_and_extract, args.repeats)),
        ]
        row = next(csv.DictReader(io.StringIO(outputs[-1])))
        cli_values = np.array([float(row[k]) for k in ours])
        agree = bool(np.allclose(cli_values, np.array(list(ours.values())), rtol=1e-6, equal_nan=True))

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"## radvlsm radiomics speed: {len(cases)} PH2 cases (765x572 RGB JPEG, built-in 2-D parameters)\n")
    print(f"Machine: {os.cpu_count()} CPU cores; load average before the report {load[0]:.2f} / {load[1]:.2f} / "
          f"{load[2]:.2f} (1 / 5 / 15 min): other processes share the cores when it exceeds 0.\n")
    print("| workers | cases | wall s | cases/s | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for w, n, sec, rate, speedup in folder_rows:
        print(f"| {w} | {n} | {sec:.2f} | {rate:.2f} | {speedup:.2f}x |")
    print(f"\nCSV identical across worker counts: {'yes' if same else 'NO'}. Wall time includes starting the "
          "worker pool.\n")
    print(f"| one case ({case}) | seconds (median of {args.repeats}) |")
    print("| --- | ---: |")
    for label, sec in per_case:
        print(f"| {label} | {sec:.3f} |")
    print(f"\npyradiomics CLI values equal radvlsm's (rtol 1e-6, {len(ours)} features): {'yes' if agree else 'NO'}\n")
    print("Reproduce:\n")
    print(f"    python benchmarks/radiomics_speed.py --n {args.n} --workers {args.workers} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
