"""Coordinates map between the original image and the model input exactly, for non-square images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radvlsm.stage2_segment.transforms import ResizeTransform


@pytest.mark.parametrize("mode", ["stretch", "longest_side"])
@pytest.mark.parametrize("hw", [(572, 765), (300, 120), (256, 256)])
def test_boxes_round_trip(mode: str, hw: tuple[int, int]) -> None:
    t = ResizeTransform(256, mode)  # type: ignore[arg-type]
    boxes = np.array([[0.0, 0.0, hw[1], hw[0]], [10.5, 20.25, 100.0, 110.0]])
    model = t.apply_boxes(boxes, hw)
    np.testing.assert_allclose(t.unapply_boxes(model, hw), boxes, rtol=0, atol=1e-9)
    if mode == "stretch":
        np.testing.assert_allclose(model[0], [0, 0, 256, 256])
    else:  # the long side fills the input, the short side keeps the aspect
        s = 256 / max(hw)
        np.testing.assert_allclose(model[0], [0, 0, hw[1] * s, hw[0] * s])


@pytest.mark.parametrize("mode", ["stretch", "longest_side"])
def test_image_and_mask_map_as_a_pair(mode: str) -> None:
    """A rectangle drawn in the original image, resized with the image, and mapped back from a map at any
    model resolution, lands on the same pixels (to within the map's resampling)."""
    hw = (300, 500)
    t = ResizeTransform(128, mode)  # type: ignore[arg-type]
    box = np.array([120.0, 60.0, 360.0, 210.0])  # XYXY edges
    img = np.zeros((*hw, 3), np.uint8)
    img[60:210, 120:360] = 255
    resized = t.apply_image(img)
    assert resized.shape == (128, 128, 3)
    mb = t.apply_boxes(box[None], hw)[0]
    # The resized image's bright region lies where the mapped box says.
    bright = np.argwhere(resized[..., 0] > 127)
    (y0, x0), (y1, x1) = bright.min(0), bright.max(0) + 1
    np.testing.assert_allclose([x0, y0, x1, y1], mb, atol=1.0)
    # A logit map over the model input (at half resolution) maps back onto the original rectangle.
    for res in (64, 128):
        yy, xx = np.mgrid[0:res, 0:res] + 0.5
        sc = 128 / res
        inside = (xx * sc >= mb[0]) & (xx * sc < mb[2]) & (yy * sc >= mb[1]) & (yy * sc < mb[3])
        logits = torch.from_numpy(np.where(inside, 10.0, -10.0)).float()[None]
        back = t.maps_to_original(logits, hw)[0].numpy() > 0
        assert back.shape == hw
        ys, xs = np.nonzero(back)
        tol = 500 / res + 1  # one cell of the map, in original pixels
        np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=tol)
