"""Real sample photos from scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlab.data import load_photo


@pytest.mark.parametrize("name", ["china", "flower"])
@pytest.mark.parametrize("size", [224, 33, 600])
def test_shape_dtype_range(name, size):
    photo = load_photo(name, size)
    assert photo.shape == (3, size, size) and photo.dtype == torch.float32
    assert 0.0 <= float(photo.min()) and float(photo.max()) <= 1.0
    assert float(photo.std()) > 0.05  # a real picture, not a constant


def test_native_size_is_the_exact_centre_crop():
    from sklearn.datasets import load_sample_image

    pixels = load_sample_image("china.jpg")  # (427, 640, 3)
    side = min(pixels.shape[:2])
    left = (pixels.shape[1] - side) // 2
    expected = pixels[:, left:left + side].transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(load_photo("china", side).numpy(), expected, atol=1e-6)


def test_downsampling_is_antialiased_and_deterministic():
    full = load_photo("flower", 427)
    small = load_photo("flower", 32)
    assert torch.equal(small, load_photo("flower", 32))
    torch.testing.assert_close(small.mean(dim=(1, 2)), full.mean(dim=(1, 2)), atol=0.01, rtol=0)
    assert not torch.equal(load_photo("china", 32), small)


@pytest.mark.parametrize("kwargs, error, text", [
    ({"name": "lena"}, ValueError, "unknown photo"), ({"name": "china.jpg"}, ValueError, "unknown photo"),
    ({"size": 0}, ValueError, "size"), ({"size": -5}, ValueError, "size"), ({"size": 10_000}, ValueError, "size"),
    ({"size": 2.5}, TypeError, "size"), ({"size": True}, TypeError, "size")])
def test_bad_input(kwargs, error, text):
    with pytest.raises(error, match=text):
        load_photo(**kwargs)
