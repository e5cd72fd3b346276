"""Benign-vs-malignant diagnosis of LIDC nodules (``radvlsm train diagnoser --task lidc``): cross-validated and
held-out-test figures with predicted and ground-truth masks, the ablations, and the radiomics grid.

Runs the recipe (:func:`radvlsm.fusion.train.train_diagnoser`, task ``lidc``, segmenter ``ct``) once per mask mode
(``predicted``: the CT segmenter prompted by the nodule's point; ``gt``: the experts' masks) and radiomics
parameters (``iso``: :data:`radvlsm.fusion.volume.CT_PARAMS`, resampled to 1 mm isotropic voxels, what the
shipped head uses; ``native``: radvlsm's default 3-D parameters, each scan's own voxel spacing), each in its own
run folder under ``--runs`` (feature caches are reused), and gathers the reports in one JSON:

    python benchmarks/lidc_diagnosis.py --json benchmarks/results/diagnoser_lidc.json

The choice between ``iso`` and ``native`` is made on the cross-validated figures of folds 1-5 (``train``+``val``)
only; the ``test`` rows are reported for both, and were not used to choose.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import torch

from radvlsm.data.paths import shared_datasets_root
from radvlsm.fusion.head import HeadConfig
from radvlsm.fusion.radiomics_params import DEFAULT_PARAMS
from radvlsm.fusion.tasks import LIDC_TASK
from radvlsm.fusion.train import DiagnoserConfig, MaskMode, train_diagnoser
from radvlsm.stage2_segment.build import load_segmenter

log = logging.getLogger("lidc_diagnosis")

#: Radiomics parameter files compared: ``None`` is the task's own (CT_PARAMS, 1 mm isotropic).
PARAMS = {"iso": None, "native": str(DEFAULT_PARAMS["3d"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", default="predicted,gt")
    ap.add_argument("--params", default="iso,native")
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    seg = load_segmenter("ct")
    out: dict = {"task": LIDC_TASK.name, "segmenter": "ct", "runs": {}}
    for params in (p.strip() for p in args.params.split(",") if p.strip()):
        task = dataclasses.replace(LIDC_TASK, radiomics_params=PARAMS[params])
        for masks in (m.strip() for m in args.masks.split(",") if m.strip()):
            run = args.runs / (f"lidc_{masks}" if params == "iso" else f"lidc_{masks}_{params}")
            cfg = DiagnoserConfig(masks=MaskMode(masks), head=HeadConfig(threads=args.threads), task=task)
            r = train_diagnoser(shared_datasets_root(), run, seg, cfg, segmenter_name="ct")
            out["runs"][f"{masks}/{params}"] = {
                "run": str(run), "recipe": r.recipe, "n_cases": r.n_cases, "n_cv_cases": r.n_cv_cases,
                "missing": list(r.missing), "shipped_features": r.shipped_features,
                "nested_choices": list(r.nested_choices),
                "cv": [dataclasses.asdict(s) for s in r.scores],
                "test": [dataclasses.asdict(s) for s in r.holdout_fold_scores],
                "mask_quality": None if r.mask_quality is None else dataclasses.asdict(r.mask_quality),
            }
            for s in (*r.scores, *r.holdout_fold_scores):
                log.info("%s/%s  %-40s AUC %.3f [%.3f, %.3f]  acc %.3f  bal.acc %.3f", masks, params, s.features,
                         s.positive_auc, s.positive_auc_low, s.positive_auc_high, s.accuracy, s.balanced_accuracy)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
