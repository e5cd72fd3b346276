"""Modality-specific descriptors: breast-ultrasound BI-RADS mass descriptors and CT attenuation / size.

Ultrasound (ACR BI-RADS Atlas, 5th edition, 2013, ultrasound lexicon: mass shape, orientation, margin),
decided from the mask alone, so only what the outline supports:

* **shape**: ``irregular`` when the outline is neither round nor oval (solidity below
  :data:`US_IRREGULAR_SOLIDITY` or border irregularity above :data:`US_IRREGULAR_BORDER`); otherwise ``round``
  when the minor/major principal-axis ratio is at least :data:`US_ROUND_AXIS_RATIO`, else ``oval``.
* **orientation**: ``not parallel`` when the lesion is taller than wide (vertical extent over horizontal
  extent above 1, the image top taken as the skin surface), else ``parallel``.
* **margin**: ``circumscribed`` when the border irregularity is at most :data:`US_CIRCUMSCRIBED_BORDER` and
  the solidity at least :data:`US_CIRCUMSCRIBED_SOLIDITY`, else ``not circumscribed``. The subtypes
  (indistinct, angular, microlobulated, spiculated) need the image, not the mask, and are not reported.

These cut-offs were set a priori on geometric grounds (an ellipse with two or three gentle undulations is
still oval and circumscribed) and are not validated against expert descriptors: no data set available to
the project carries BI-RADS descriptors per lesion.

CT: mean and standard deviation of the attenuation (HU) inside the mask, the volume (volumes with spacing),
and the Fleischner Society 2017 size category of solid nodules (MacMahon et al., Radiology 2017;284:228-243):
``<6 mm``, ``6-8 mm``, ``>8 mm``, from the mean of the longest and perpendicular diameters on the axial slice of
largest cross-section, and the matching volume category (``<100 mm³``, ``100-250 mm³``, ``>250 mm³``).
"""

from __future__ import annotations

import numpy as np

from radvlsm.metrics.symmetry import principal_axes
from radvlsm.reporting import shape
from radvlsm.reporting.records import CtFindings, UltrasoundDescriptors

US_IRREGULAR_SOLIDITY = 0.90
US_IRREGULAR_BORDER = 0.12
US_ROUND_AXIS_RATIO = 0.90
US_CIRCUMSCRIBED_BORDER = 0.05
US_CIRCUMSCRIBED_SOLIDITY = 0.95


def ultrasound_descriptors(mask: np.ndarray, spacing: tuple[float, float] | None = None) -> UltrasoundDescriptors:
    """BI-RADS shape, orientation and margin of the (largest) lesion in a 2-D ``mask``."""
    m = np.asarray(mask, dtype=bool)
    sol = shape.solidity(m)
    irr = shape.border_irregularity(m, spacing)
    axes = principal_axes(m, spacing)
    major, minor = axes.spreads
    axis_ratio = float(minor / major) if major > 0 else 1.0
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    sy, sx = (spacing if spacing is not None else (1.0, 1.0))
    height = (rows[-1] - rows[0] + 1) * sy if len(rows) else 0.0
    width = (cols[-1] - cols[0] + 1) * sx if len(cols) else 0.0
    hw = float(height / width) if width > 0 else 0.0
    if sol < US_IRREGULAR_SOLIDITY or irr > US_IRREGULAR_BORDER:
        shape_name = "irregular"
    elif axis_ratio >= US_ROUND_AXIS_RATIO:
        shape_name = "round"
    else:
        shape_name = "oval"
    margin = "circumscribed" if irr <= US_CIRCUMSCRIBED_BORDER and sol >= US_CIRCUMSCRIBED_SOLIDITY \
        else "not circumscribed"
    return UltrasoundDescriptors(
        shape=shape_name,
        orientation="not parallel" if hw > 1.0 else "parallel",
        margin=margin,
        height_width_ratio=round(hw, 3),
        axis_ratio=round(axis_ratio, 3),
    )


def fleischner_size_category(mean_diameter_mm: float) -> str:
    """Fleischner 2017 solid-nodule size category from the mean diameter, rounded to the nearest mm as the
    guideline asks: ``<6 mm``, ``6-8 mm`` or ``>8 mm``."""
    d = round(mean_diameter_mm)
    if d < 6:
        return "<6 mm"
    if d <= 8:
        return "6-8 mm"
    return ">8 mm"


def fleischner_volume_category(volume_mm3: float) -> str:
    """Fleischner 2017 volume categories: ``<100 mm³``, ``100-250 mm³``, ``>250 mm³``."""
    if volume_mm3 < 100:
        return "<100 mm³"
    if volume_mm3 <= 250:
        return "100-250 mm³"
    return ">250 mm³"


def ct_findings(
    hu: np.ndarray,
    mask: np.ndarray,
    *,
    volume_mm3: float | None,
    mean_diameter_mm: float | None,
) -> CtFindings:
    """Attenuation inside ``mask`` of the HU array ``hu`` (same shape), with the size category."""
    vals = np.asarray(hu, dtype=np.float64)[np.asarray(mask, dtype=bool)]
    vals = vals[np.isfinite(vals)]
    mean = float(vals.mean()) if len(vals) else float("nan")
    std = float(vals.std()) if len(vals) else float("nan")
    return CtFindings(
        mean_hu=round(mean, 1),
        hu_std=round(std, 1),
        volume_mm3=None if volume_mm3 is None else round(volume_mm3, 1),
        mean_diameter_mm=None if mean_diameter_mm is None else round(mean_diameter_mm, 2),
        size_category=None if mean_diameter_mm is None else fleischner_size_category(mean_diameter_mm),
        volume_category=None if volume_mm3 is None else fleischner_volume_category(volume_mm3),
    )
