"""The report's picture: the image with the lesion outline and the two measured diameters drawn on it."""

from __future__ import annotations

import cv2
import numpy as np

from radvlsm.io import ImageRecord, to_display_rgb
from radvlsm.pipeline.overlay import CONTOUR_RGB
from radvlsm.reporting import shape
from radvlsm.reporting.records import CaseFindings

LONGEST_RGB = (255, 210, 0)
PERPENDICULAR_RGB = (0, 220, 255)
MAX_SIDE = 720
MIN_SIDE = 320
THUMB_SIDE = 160


def _display(record: ImageRecord, modality: str, index: int | None) -> np.ndarray:
    window = "lung" if modality == "ct" and record.pixels.dtype.kind in "fi" and not record.is_rgb else None
    return to_display_rgb(record, window, index=index)


def report_picture(record: ImageRecord, mask: np.ndarray, findings: CaseFindings) -> np.ndarray:
    """``(h, w, 3)`` uint8: the image (CT in the lung window; for volumes the measured axial slice) with the
    outline in green, the longest diameter in yellow and the perpendicular one in cyan, scaled to a long side
    between :data:`MIN_SIDE` and :data:`MAX_SIDE`."""
    lesion = findings.lesion
    z: int | None = None
    if record.is_volume:
        z = lesion.slice_index if lesion is not None and lesion.slice_index is not None else mask.shape[0] // 2
        rgb, m2 = _display(record, findings.modality, z), mask[z]
    else:
        rgb, m2 = _display(record, findings.modality, None), mask
    out = np.ascontiguousarray(rgb.copy())
    h, w = m2.shape
    scale = 1.0
    long_side = max(h, w)
    if long_side > MAX_SIDE:
        scale = MAX_SIDE / long_side
    elif long_side < MIN_SIDE:
        scale = float(np.floor(MIN_SIDE / long_side)) or 1.0
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
    t = max(1, round(max(out.shape[:2]) / 360))
    m_small = cv2.resize(m2.astype(np.uint8), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m_small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, CONTOUR_RGB, t, lineType=cv2.LINE_AA)
    if lesion is not None:
        if record.is_volume:
            big = shape.components(mask, lesion.min_component_px).largest()[z]
            sp = (record.geometry.spacing[1], record.geometry.spacing[0])  # type: ignore[union-attr]
        else:
            big = shape.components(mask, lesion.min_component_px).largest()
            sp = None
            if findings.pixel_spacing_mm is not None:
                sp = (findings.pixel_spacing_mm[-2], findings.pixel_spacing_mm[-1])
        d = shape.diameters(big, sp)

        def pt(p: tuple[float, float]) -> tuple[int, int]:
            return round((p[0] + 0.5) * scale - 0.5), round((p[1] + 0.5) * scale - 0.5)

        cv2.line(out, pt(d.endpoints[0]), pt(d.endpoints[1]), LONGEST_RGB, t, lineType=cv2.LINE_AA)
        cv2.line(out, pt(d.perpendicular_endpoints[0]), pt(d.perpendicular_endpoints[1]), PERPENDICULAR_RGB, t,
                 lineType=cv2.LINE_AA)
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def thumbnail_jpeg(rgb: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
