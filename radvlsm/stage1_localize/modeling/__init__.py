"""Neural-network modules of the localizer, one per file."""

from __future__ import annotations

from radvlsm.stage1_localize.modeling.branch import ImageBranch
from radvlsm.stage1_localize.modeling.context import MapContextBlock
from radvlsm.stage1_localize.modeling.localizer import LocalizerOutput, TextPromptedLocalizer
from radvlsm.stage1_localize.modeling.qformer import PromptQFormer, qformer_config

__all__ = [
    "ImageBranch", "LocalizerOutput", "MapContextBlock", "PromptQFormer", "TextPromptedLocalizer", "qformer_config",
]
