"""Stage 2: SAM-based box-prompted multitask segmenter with multi-candidate aggregation."""
