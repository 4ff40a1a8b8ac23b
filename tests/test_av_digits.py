"""AV-Digits: checksums, splits, pairing, noise knobs, and that the spoken digits are distinguishable."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmlab.data import AVDigits, verify_assets
from mmlab.data.assets import AssetError, sha256_file
from mmlab.data.av_digits import (
    ASSET_FILE,
    AUDIO_SAMPLES,
    EXPECTED_SHA256,
    MANIFEST_FILE,
    SAMPLE_RATE,
    default_root,
    image_split_indices,
    load_speech,
    speaker_info,
)


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((default_root() / MANIFEST_FILE).read_text())


def test_committed_assets_verify(manifest):
    report = verify_assets()
    assert [r["ok"] for r in report] == [True, True]
    assert all(r["actual"] == r["expected"] for r in report)
    asset = default_root() / ASSET_FILE
    assert manifest["sha256"] == EXPECTED_SHA256[ASSET_FILE] == sha256_file(asset)
    assert manifest["bytes"] == asset.stat().st_size < 4 * 2**20
    assert manifest["sample_rate"] == SAMPLE_RATE
    audio, start, length, _ = load_speech()
    assert audio.dtype == np.int16 and start.shape == length.shape == (len(manifest["speakers"]), 10)
    assert (length > 0).all() and (length < AUDIO_SAMPLES).all()
    assert (start + length).max() == len(audio)


@pytest.mark.parametrize("victim", [ASSET_FILE, MANIFEST_FILE])
def test_corrupted_copy_is_refused_and_left_alone(tmp_path, victim):
    for name in (ASSET_FILE, MANIFEST_FILE):
        shutil.copy(default_root() / name, tmp_path / name)
    path = tmp_path / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    mtime = path.stat().st_mtime_ns
    with pytest.raises(AssetError) as err:
        AVDigits("train", root=tmp_path)
    message = str(err.value)
    assert str(path) in message and EXPECTED_SHA256[victim] in message and "corrupted" in message
    report = {r["file"]: r for r in verify_assets(tmp_path, strict=False)}
    assert report[str(path)]["ok"] is False and report[str(path)]["actual"] == sha256_file(path)
    assert path.read_bytes() == bytes(data) and path.stat().st_mtime_ns == mtime  # nothing overwritten


def test_missing_asset_names_file_and_checksum(tmp_path):
    shutil.copy(default_root() / MANIFEST_FILE, tmp_path / MANIFEST_FILE)
    with pytest.raises(AssetError, match="missing data file .*av_digits.npz.*" + EXPECTED_SHA256[ASSET_FILE]):
        verify_assets(tmp_path)
    assert not (tmp_path / ASSET_FILE).exists()


def test_splits_are_disjoint(manifest):
    splits = manifest["splits"]
    ids = [s["id"] for s in manifest["speakers"]]
    assert 24 <= len(ids) == len(set(ids)) <= 30
    assert sorted(sum(splits.values(), [])) == sorted(ids)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [20, 5, 5]
    params = {(s["voice"], s["variant"], s["speed_wpm"], s["pitch"]) for s in manifest["speakers"]}
    assert len(params) == len(ids)
    images = {s: set(image_split_indices(s).tolist()) for s in ("train", "val", "test")}
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert not images["val"] & images["test"]
    assert len(images["train"] | images["val"] | images["test"]) == 1797
    for split in ("train", "val", "test"):
        ds = AVDigits(split, size=60)
        assert {ds[i]["speaker"] for i in range(len(ds))} <= set(splits[split])


_DIGEST = """
import hashlib
from mmlab.data import AVDigits
t = AVDigits("val", image_noise=0.2, image_occlusion=0.25, audio_noise=0.5, seed=1).tensors()
print(hashlib.sha256(b"".join(t[k].numpy().tobytes() for k in ("image", "audio", "label"))).hexdigest())
"""


def test_same_seed_same_bytes_in_a_new_process():
    t = AVDigits("val", image_noise=0.2, image_occlusion=0.25, audio_noise=0.5, seed=1).tensors()
    here = hashlib.sha256(b"".join(t[k].numpy().tobytes() for k in ("image", "audio", "label"))).hexdigest()
    there = subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def test_speaker_info_matches_splits(manifest):
    info = speaker_info()
    assert [s["id"] for s in info] == [s["id"] for s in manifest["speakers"]]
    for split in ("train", "val", "test"):
        assert AVDigits(split, size=1).speakers == [s["id"] for s in info if s["split"] == split]


def test_item_and_tensor_layout():
    ds = AVDigits("val")
    item = ds[3]
    assert item["image"].shape == (1, 8, 8) and item["image"].dtype == torch.float32
    assert item["audio"].shape == (AUDIO_SAMPLES,) and item["audio"].dtype == torch.float32
    assert isinstance(item["label"], int) and 0 <= item["label"] <= 9 and isinstance(item["speaker"], str)
    t = ds.tensors()
    n = len(ds)
    assert t["image"].shape == (n, 1, 8, 8) and t["audio"].shape == (n, AUDIO_SAMPLES)
    assert t["label"].shape == (n,) and t["label"].dtype == torch.int64
    assert 0.0 <= t["image"].min() and t["image"].max() <= 1.0 and t["image"].max() == 1.0
    assert t["audio"].abs().max() <= 0.9 + 1e-4 and set(t["label"].tolist()) == set(range(10))
    for i in (0, 7, n - 1):
        item = ds[i]
        assert torch.equal(t["image"][i], item["image"]) and torch.equal(t["audio"][i], item["audio"])
        assert t["label"][i] == item["label"]
    assert torch.equal(ds[-1]["audio"], ds[n - 1]["audio"])


def test_image_and_audio_carry_the_same_label():
    from sklearn.datasets import load_digits

    digits = load_digits()
    ds = AVDigits("test", size=40, seed=3)
    bank, start, length, manifest = load_speech()
    ids = [s["id"] for s in manifest["speakers"]]
    for i in range(len(ds)):
        item = ds[i]
        row = ds.digit_indices[i]
        assert item["label"] == digits.target[row]
        np.testing.assert_allclose(item["image"][0].numpy(), digits.images[row] / 16.0, atol=1e-6)
        s = ids.index(item["speaker"])
        clip = bank[start[s, item["label"]]:start[s, item["label"]] + length[s, item["label"]]] / 32767.0
        audio = item["audio"].numpy()
        at = np.flatnonzero(audio)[0] - np.flatnonzero(clip)[0]  # where the clip was placed
        np.testing.assert_allclose(audio[at:at + len(clip)], clip, atol=1e-6)
        assert np.count_nonzero(audio[:at]) == np.count_nonzero(audio[at + len(clip):]) == 0


def test_same_seed_same_bytes_and_noise_knobs():
    kw = dict(image_noise=0.3, image_occlusion=0.5, audio_noise=0.5, size=50)
    a, b = AVDigits("train", seed=7, **kw).tensors(), AVDigits("train", seed=7, **kw).tensors()
    for key in a:
        assert a[key].numpy().tobytes() == b[key].numpy().tobytes()
    clean = AVDigits("train", seed=7, size=50).tensors()
    other = AVDigits("train", seed=8, **kw).tensors()
    assert not torch.equal(a["image"], other["image"]) and not torch.equal(a["audio"], other["audio"])
    assert torch.equal(a["label"], clean["label"])  # the knobs never change labels or images chosen
    assert not torch.equal(a["image"], clean["image"]) and not torch.equal(a["audio"], clean["audio"])
    # each knob touches only its modality
    audio_only = AVDigits("train", seed=7, audio_noise=0.5, size=50).tensors()
    assert torch.equal(audio_only["image"], clean["image"])
    assert torch.equal(audio_only["audio"], a["audio"])
    # the noise pattern is fixed by the seed; the level scales it; std relative to clip RMS
    louder = AVDigits("train", seed=7, audio_noise=1.0, size=50).tensors()
    torch.testing.assert_close(louder["audio"] - clean["audio"], 2 * (a["audio"] - clean["audio"]),
                               rtol=1e-4, atol=1e-5)
    silent = clean["audio"][0] == 0
    clip_rms = clean["audio"][0][~silent].pow(2).mean().sqrt()
    assert abs(float((louder["audio"][0][silent]).std() / clip_rms) - 1.0) < 0.05
    # occlusion: a 4x4 black square in every image
    occluded = AVDigits("train", seed=7, image_occlusion=0.5, size=50).tensors()["image"][:, 0]
    zero4 = torch.nn.functional.avg_pool2d((occluded == 0).float()[:, None], 4, stride=1).amax(dim=(1, 2, 3))
    assert bool((zero4 == 1).all())
    assert float(AVDigits("train", image_occlusion=1.0, size=5).tensors()["image"].abs().max()) == 0.0


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown split"):
        AVDigits("dev")
    for kwargs, text in [({"image_noise": -0.1}, "image_noise"), ({"audio_noise": float("nan")}, "audio_noise"),
                         ({"image_occlusion": 1.5}, "image_occlusion"), ({"seed": -1}, "seed"),
                         ({"size": 0}, "size"), ({"size": 10_000}, r"size must be in \[1, \d+\], got 10000")]:
        with pytest.raises(ValueError, match=text):
            AVDigits("train", **kwargs)
    ds = AVDigits("val", size=5)
    with pytest.raises(IndexError):
        ds[5]


def _band_features(audio: np.ndarray, n_fft: int = 400, hop: int = 160, n_bands: int = 24) -> np.ndarray:
    """Log band energies averaged over 4 equal time segments of the voiced region: (N, 4 * bands)."""
    n = (audio.shape[1] - n_fft) // hop + 1
    frames = audio[:, np.arange(n)[:, None] * hop + np.arange(n_fft)] * np.hanning(n_fft)  # (N, F, n_fft)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2  # (N, F, bins)
    edges = np.unique(np.geomspace(2, power.shape[-1], n_bands + 1).astype(int))
    bands = np.log(np.stack([power[..., a:b].sum(-1) for a, b in zip(edges[:-1], edges[1:])], -1) + 1e-8)
    out = []
    for x in bands:  # (F, K)
        loud = np.flatnonzero(x.max(-1) > x.max() - 6.0)
        out.append(np.concatenate([s.mean(0) for s in np.array_split(x[loud[0]:loud[-1] + 1], 4)]))
    return np.stack(out)


def test_spoken_digits_are_distinguishable_across_speakers():
    """A linear classifier on crude spectral features, trained on train speakers, works on unseen test speakers."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = AVDigits("train", size=600).tensors(), AVDigits("test").tensors()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(_band_features(train["audio"].numpy().astype(np.float64)), train["label"].numpy())
    clean = clf.score(_band_features(test["audio"].numpy().astype(np.float64)), test["label"].numpy())
    assert clean > 0.8, clean  # chance is 0.1
    noisy = AVDigits("test", audio_noise=3.0).tensors()
    degraded = clf.score(_band_features(noisy["audio"].numpy().astype(np.float64)), noisy["label"].numpy())
    assert degraded < clean - 0.3, (clean, degraded)  # the audio_noise knob really hides the digit
