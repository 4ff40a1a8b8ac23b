"""Data augmentation: shapes, seeding, the statistics each function promises, and clear errors."""
import random

import numpy as np
import pytest
import torch

from mmlab.preprocess import augment


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_resized_crop_shapes_seeding_and_full_scale():
    images = torch.rand(6, 3, 20, 16, generator=_gen())
    a = augment.random_resized_crop(images, 12, generator=_gen(1))
    b = augment.random_resized_crop(images, 12, generator=_gen(1))
    assert a.shape == (6, 3, 12, 12) and torch.equal(a, b)
    assert not torch.equal(a, augment.random_resized_crop(images, 12, generator=_gen(2)))
    # scale 1 and the image's own aspect: the whole image, only resized
    square = torch.rand(2, 3, 16, 16, generator=_gen())
    whole = augment.random_resized_crop(square, 16, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=_gen())
    torch.testing.assert_close(whole, square)
    # a crop that cannot fit (aspect 4 on a square image at full area) falls back to the centred crop
    wide = augment.random_resized_crop(square, 8, scale=(1.0, 1.0), ratio=(4.0, 4.0), generator=_gen())
    expected = torch.nn.functional.interpolate(square[:, :, 6:10, :], size=(8, 8), mode="bilinear",
                                               align_corners=False)
    torch.testing.assert_close(wide, expected)
    with pytest.raises(ValueError, match="scale"):
        augment.random_resized_crop(images, 12, scale=(0.5, 0.2))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        augment.random_resized_crop(images[0], 12)


def test_random_flip_mirrors_about_half():
    images = torch.arange(2 * 4).float().reshape(1, 1, 2, 4).repeat(2000, 1, 1, 1)
    out = augment.random_flip(images, generator=_gen())
    flipped = (out != images).flatten(1).any(1)
    assert torch.equal(out[flipped], images[flipped].flip(-1))
    assert abs(flipped.float().mean().item() - 0.5) < 0.04  # 2000 draws: std 0.011
    assert torch.equal(augment.random_flip(images, p=0.0), images)


def test_rand_augment_ops_and_magnitude():
    images = torch.rand(8, 3, 16, 16, generator=_gen())
    assert torch.equal(augment.rand_augment(images, ops=["identity"], generator=_gen()), images)
    every_op = ["brightness", "contrast", "solarize", "rotate", "translate_x", "translate_y"]
    zero = augment.rand_augment(images, magnitude=0, ops=every_op, generator=_gen())
    torch.testing.assert_close(zero, images, atol=1e-5, rtol=0)  # magnitude 0 leaves every op the identity
    out = augment.rand_augment(images, num_ops=2, magnitude=9, generator=_gen(3))
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1 and not torch.equal(out, images)
    assert torch.equal(out, augment.rand_augment(images, num_ops=2, magnitude=9, generator=_gen(3)))
    # translate by 0.25 of the width moves the content 4 pixels on a 16-pixel image
    spot = torch.zeros(1, 1, 16, 16)
    spot[0, 0, 8, 4] = 1.0
    moved = augment._affine(spot[0], tx=0.25)
    assert moved[0, 8, 8] == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown RandAugment operations \\['blur'\\]"):
        augment.rand_augment(images, ops=["blur"])
    with pytest.raises(ValueError, match="magnitude"):
        augment.rand_augment(images, magnitude=31)


def test_token_masking_rate_and_what_it_never_touches():
    ids = torch.randint(5, 100, (400, 30), generator=_gen())
    ids[:, 0] = 101  # [CLS]
    mask = torch.arange(30)[None] < torch.randint(5, 31, (400, 1), generator=_gen(1))
    ids = ids.masked_fill(~mask, 0)
    out = augment.token_masking(ids, mask, 0.15, mask_id=103, keep_ids=[101], generator=_gen(2))
    hit = out != ids
    assert (out[hit] == 103).all() and not hit[~mask].any() and not hit[:, 0].any()
    eligible = mask.clone()
    eligible[:, 0] = False
    assert abs(hit[eligible].float().mean().item() - 0.15) < 0.01
    with pytest.raises(ValueError, match="both be \\(B, L\\)"):
        augment.token_masking(ids, mask[:, :5], 0.1, 103)


def test_synonym_replacement():
    rng = random.Random(0)
    synonyms = {"red": ["crimson", "scarlet"], "big": ["large"]}
    outs = [augment.synonym_replacement("a big red circle", synonyms, 1.0, rng) for _ in range(50)]
    assert all(o.split()[0] == "a" and o.split()[1] == "large" and o.split()[3] == "circle" for o in outs)
    assert {o.split()[2] for o in outs} == {"crimson", "scarlet"}
    assert augment.synonym_replacement("a big red circle", synonyms, 0.0, rng) == "a big red circle"


SR = 8000


def _sine(freq, seconds=1.0):
    t = np.arange(int(SR * seconds)) / SR
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * SR / len(x)


def test_time_stretch_and_pitch_shift():
    x = _sine(440.0)
    fast = augment.time_stretch(x, 1.25)
    assert abs(len(fast) - len(x) / 1.25) <= 2 and abs(_peak_hz(fast) - 440) < 5  # shorter, same pitch
    up = augment.pitch_shift(x, SR, 12)
    assert len(up) == len(x) and abs(_peak_hz(up) - 880) < 10  # an octave up, same length
    with pytest.raises(ValueError, match="rate"):
        augment.time_stretch(x, 0.0)
    with pytest.raises(ValueError, match="finite 1-D"):
        augment.pitch_shift(np.stack([x, x]), SR, 2)


def test_add_noise_reaches_the_requested_snr():
    x = _sine(300.0)
    out = augment.add_noise(x, 10.0, np.random.default_rng(0))
    noise = out.astype(np.float64) - x
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert snr == pytest.approx(10.0, abs=0.01)
    with pytest.raises(ValueError, match="silent"):
        augment.add_noise(np.zeros(100), 10.0, np.random.default_rng(0))


def test_mixup_mixes_every_modality_with_one_coefficient_and_pairing():
    image, audio = torch.randn(16, 3, 4, 4, generator=_gen()), torch.randn(16, 10, generator=_gen(1))
    targets = torch.nn.functional.one_hot(torch.arange(16) % 4, 4).float()
    mixed, soft, lam = augment.mixup({"image": image, "audio": audio}, targets, alpha=0.4, generator=_gen(2))
    assert 0 <= lam <= 1
    g = _gen(2)
    torch.randint(2**62, (1,), generator=g)  # the draw that seeds lam
    pair = torch.randperm(16, generator=g)
    torch.testing.assert_close(mixed["image"], lam * image + (1 - lam) * image[pair])
    torch.testing.assert_close(mixed["audio"], lam * audio + (1 - lam) * audio[pair])
    torch.testing.assert_close(soft.sum(1), torch.ones(16))
    lams = [augment.mixup({"a": audio}, targets, alpha=0.2, generator=_gen(s))[2] for s in range(400)]
    assert abs(np.mean(lams) - 0.5) < 0.05 and np.mean([min(v, 1 - v) < 0.1 for v in lams]) > 0.5  # Beta(0.2, 0.2)
    with pytest.raises(ValueError, match="modality 'ids' must be a float tensor"):
        augment.mixup({"ids": torch.zeros(16, 3, dtype=torch.long)}, targets)
    with pytest.raises(ValueError, match="alpha"):
        augment.mixup({"a": audio}, targets, alpha=0.0)
