"""Segmentation, detection and classification metrics. Knows no model."""
