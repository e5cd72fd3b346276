"""Segmentation, detection and classification metrics, and the symmetry of a mask. Knows no model.

Submodules (imported on first use, so that importing one does not pull in the others' dependencies):

* :mod:`radvlsm.metrics.segmentation`: Dice, IoU, HD95, ASSD of binary masks (2-D/3-D, px or mm);
* :mod:`radvlsm.metrics.detection`: box IoU, recall@k of ranked box candidates;
* :mod:`radvlsm.metrics.classification`: ROC AUC with a bootstrap interval, accuracy, balanced accuracy,
  confusion matrix;
* :mod:`radvlsm.metrics.folder`: a folder of predicted masks against a folder of ground truths (per-case CSV);
* :mod:`radvlsm.metrics.symmetry`: principal axes of a 2-D mask, and how far the mask and the image values in
  it are from their mirror images about those axes.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SegmentationScores": "segmentation",
    "score_masks": "segmentation",
    "dice": "segmentation",
    "iou": "segmentation",
    "hd95": "segmentation",
    "assd": "segmentation",
    "hausdorff_distance": "segmentation",
    "surface_distances": "segmentation",
    "box_iou": "detection",
    "box_iou_matrix": "detection",
    "recall_at_k": "detection",
    "AucInterval": "classification",
    "roc_auc_ci": "classification",
    "accuracy": "classification",
    "balanced_accuracy": "classification",
    "confusion_matrix": "classification",
    "FolderEvaluation": "folder",
    "CaseResult": "folder",
    "evaluate_folders": "folder",
    "PrincipalAxes": "symmetry",
    "principal_axes": "symmetry",
    "reflection_overlap": "symmetry",
    "mirror_difference": "symmetry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
