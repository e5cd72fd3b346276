"""``radvlsm radiomics``: pyradiomics features of image/mask pairs (or of a DICOM series and an RTSTRUCT ROI) into a
resumable CSV."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from radvlsm.cli.logsetup import case_progress
from radvlsm.errors import RadvlsmError

if TYPE_CHECKING:
    from radvlsm.fusion.resampling import IbsiProcessing

log = logging.getLogger(__name__)

ImagesArg = Annotated[
    Path,
    typer.Argument(
        exists=True, help="An image file or a folder of images (searched recursively): PNG, JPEG, BMP, TIFF, "
        "DICOM, NIfTI. With an RTSTRUCT: the DICOM series folder it was drawn on.",
    ),
]
MasksArg = Annotated[
    Path | None,
    typer.Argument(
        exists=True, help="The mask file or folder of masks, paired with the images by case id (file name "
        "without extension: IMD002.jpg ↔ IMD002.png); or the RTSTRUCT file of the DICOM series IMAGES.",
        show_default=False,
    ),
]
RtstructOpt = Annotated[
    Path | None,
    typer.Option(
        "--rtstruct", exists=True, dir_okay=False,
        help="DICOM RTSTRUCT drawn on the series folder IMAGES (instead of MASKS): its ROI is rasterised onto the "
        "series and extracted in 3-D with the series' voxel spacing; the case id is the folder's name.",
    ),
]
RoiOpt = Annotated[
    str | None,
    typer.Option("--roi", help="The RTSTRUCT's ROI, by name (default: its only ROI; the error lists the names)."),
]
CaseIdOpt = Annotated[
    str | None,
    typer.Option("--case-id", help="Case id of a series with an RTSTRUCT (default: the series folder's name)."),
]
OutputOpt = Annotated[
    Path,
    typer.Option(
        "--output", "-o", dir_okay=False,
        help="Features CSV to write, or to complete when it exists (only missing cases are extracted). "
        "Beside it: <stem>_errors.csv (cases without a row, with the reason) and <stem>_params.yaml.",
    ),
]
ParamsOpt = Annotated[
    Path | None,
    typer.Option(
        "--params", dir_okay=False,
        help="pyradiomics parameter file (YAML/JSON), checked against pyradiomics' schema. Default: radvlsm's "
        "built-in 2-D set (grayscale luma, binWidth 5) or 3-D CT set (binWidth 25 HU, no resampling).",
    ),
]
DimensionOpt = Annotated[
    str,
    typer.Option("--dimension", help="2d, 3d, or auto (3d when the images are mostly .nii/.nii.gz volumes)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Worker processes (default: the number of CPU cores)."),
]
IbsiOpt = Annotated[
    bool,
    typer.Option(
        "--ibsi", help="Process the image IBSI's way before pyradiomics: the parameter file's resampling "
        "(resampledPixelSpacing; interpolator sitkLinear or sitkBSpline) on IBSI's grid centred on the image, "
        "interpolated whole-number intensities (CT HU) rounded, the mask interpolated linearly and kept where "
        ">= 0.5. On the IBSI lung phantom this takes the 3-D configurations from 8-16% of features within IBSI's "
        "tolerance to 78-98% (README).",
    ),
]
RangeFirstOpt = Annotated[
    str | None,
    typer.Option(
        "--ibsi-range-first", metavar="LOW,HIGH",
        help="With --ibsi: a first re-segmentation range (e.g. --ibsi-range-first=-1000,400) applied before the "
        "parameter file's own re-segmentation, which then sees only what is left (IBSI configuration E: the range, "
        "then mean +- 3 SD). Shape features stay on the whole mask.",
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Recompute every case instead of completing an existing CSV.")
]


def radiomics(
    images: ImagesArg,
    output: OutputOpt,
    masks: MasksArg = None,
    params: ParamsOpt = None,
    dimension: DimensionOpt = "auto",
    workers: WorkersOpt = None,
    overwrite: OverwriteOpt = False,
    rtstruct: RtstructOpt = None,
    roi: RoiOpt = None,
    case_id: CaseIdOpt = None,
    ibsi: IbsiOpt = False,
    ibsi_range_first: RangeFirstOpt = None,
) -> None:
    """Extract pyradiomics features of each image's lesion mask: one CSV row per case.

    2-D images are extracted as 2-D (colour converted to grayscale luma), volumes in 3-D with their voxel
    spacing. A DICOM series folder with an RTSTRUCT (radvlsm radiomics SERIES_DIR --rtstruct RS.dcm --roi GTV-1 -o
    f.csv, or SERIES_DIR RS.dcm) is one case in 3-D. Cases already in the CSV are skipped, so an interrupted run
    continues where it stopped. Exit code 2 for an invalid parameter file, input or output, 1 when no case has a
    row.
    """
    from radvlsm.fusion.radiomics_folder import default_workers, extract_folder

    dim = dimension.strip().lower()
    if dim not in ("2d", "3d", "auto"):
        raise typer.BadParameter(f"must be 2d, 3d or auto, not {dimension!r}", param_hint="--dimension")
    processing = _ibsi_processing(ibsi, ibsi_range_first)
    n_workers = workers if workers is not None else default_workers()
    with case_progress("radiomics") as _advance:
        try:
            summary = extract_folder(
                images, masks, output, workers=n_workers, params=params, dimension=dim,  # type: ignore[arg-type]
                overwrite=overwrite, on_progress=_advance, rtstruct=rtstruct, roi=roi, case_id=case_id,
                ibsi=processing,
            )
        except RadvlsmError as exc:
            log.error("%s", exc)
            raise typer.Exit(2) from exc
        except OSError as exc:
            log.error("cannot write %s: %s", output, exc)
            raise typer.Exit(2) from exc

    log.info(
        "%d case(s) extracted, %d already in the CSV, %d failed, in %.1f s (%.2f cases/s, %d worker(s), %s)",
        summary.written, summary.already_done, len(summary.failed), summary.seconds, summary.cases_per_s,
        summary.workers, summary.dimension.upper(),
    )
    if summary.rows:
        log.info("%s: %d row(s) x %d features", summary.features_csv, summary.rows, summary.n_features)
    if summary.failed:
        log.warning("%d case(s) without features, each with its reason: %s", len(summary.failed), summary.errors_csv)
    if not summary.rows:
        log.error("no case has features: nothing written to %s", summary.features_csv)
        raise typer.Exit(1)


def _ibsi_processing(ibsi: bool, range_first: str | None) -> IbsiProcessing | None:
    """``--ibsi`` and ``--ibsi-range-first`` as the library's options (``typer.BadParameter`` when they do not fit)."""
    from radvlsm.fusion.resampling import IbsiProcessing

    if range_first is None:
        return IbsiProcessing() if ibsi else None
    if not ibsi:
        raise typer.BadParameter("needs --ibsi", param_hint="--ibsi-range-first")
    parts = range_first.replace(" ", "").split(",")
    try:
        lo, hi = (float(v) for v in parts)
        return IbsiProcessing(range_first=(lo, hi))
    except ValueError:
        raise typer.BadParameter(
            f"{range_first!r} is not LOW,HIGH with LOW < HIGH (e.g. -1000,400)", param_hint="--ibsi-range-first"
        ) from None
