"""Fusion: radiomics + lesion-aware visual features into a diagnosis."""
