"""Neural-network modules of the segmenter, one per file."""

from __future__ import annotations

from radvlsm.stage2_segment.modeling.compact_encoder import CompactImageEncoder
from radvlsm.stage2_segment.modeling.mask_decoder import BatchedMaskDecoder, DecoderOutput
from radvlsm.stage2_segment.modeling.segmenter import ImageFeatures, LesionSegmenter

__all__ = ["BatchedMaskDecoder", "CompactImageEncoder", "DecoderOutput", "ImageFeatures", "LesionSegmenter"]
