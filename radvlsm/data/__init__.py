"""Datasets: readers for the shared layouts and for user folders, and the committed splits."""
