"""The diagnosis record that crosses from the fusion stage to the pipeline's outputs and the reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    """A diagnosis model's answer for one lesion.

    Attributes:
        label: the predicted class (the most probable one).
        probabilities: each class with its calibrated probability (summing to 1), in the model's class order.
        malignant_probability: summed probability of the malignant classes, ``None`` when the model names none.
        model: the model that gave it, when known.
    """

    label: str
    probabilities: tuple[tuple[str, float], ...]
    malignant_probability: float | None
    model: str | None = None
