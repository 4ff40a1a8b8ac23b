"""Render the spoken digits of AV-Digits with espeak-ng, once, and write the committed asset.

Run once by a maintainer (users and CI never need espeak-ng):

    apt-get install espeak-ng          # or your system's package
    python data/build_av_digits.py     # writes data/av_digits/{av_digits.npz,manifest.json}

What it does, deterministically:
1. For each of the SPEAKERS below (an espeak-ng voice, a voice variant, a speed in
   words per minute and a pitch 0-99) it renders the words "zero" ... "nine" to WAV.
2. Each clip is converted to mono float, resampled from espeak-ng's 22050 Hz to 16 kHz
   (polyphase filter, scipy.signal.resample_poly with up=320, down=441), trimmed of
   leading/trailing silence (frames more than 40 dB below the clip's peak), and
   peak-normalised to 0.9.
3. All clips are stored as int16, concatenated into one array, with a (speaker, digit)
   table of start offsets and lengths, in a zip (.npz) written with fixed timestamps so
   the same espeak-ng version gives the same bytes.
4. manifest.json records the speakers and their parameters, the split of speakers into
   train/val/test, the espeak-ng version, the sample rate, and the file's size and SHA-256.

After a rebuild, copy the printed SHA-256 values into mmlab/data/av_digits.py (the
loader pins them, so a corrupted manifest cannot vouch for a corrupted asset).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tempfile
import wave
import zipfile
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SAMPLE_RATE = 16000
ESPEAK_RATE = 22050
TRIM_DB = 40.0
PEAK = 0.9
ASSET_NAME = "av_digits.npz"
OUT_DIR = Path(__file__).resolve().parent / "av_digits"

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
VARIANTS = ("m1", "f1", "m2", "f2", "m3", "f3", "m4", "f4", "m5", "f5", "m6", "m7", "klatt", "klatt3")
SPEEDS = (140, 160, 175, 190, 205)
PITCHES = (30, 40, 50, 60, 70, 80)
N_SPEAKERS = 30


def speaker_table() -> list[dict]:
    """30 distinct (voice, variant, speed, pitch) combinations, cycled with co-prime periods."""
    speakers = []
    for k in range(N_SPEAKERS):
        split = "train" if k % 6 < 4 else ("val" if k % 6 == 4 else "test")  # 20 / 5 / 5
        speakers.append({
            "id": f"spk{k:02d}",
            "voice": ACCENTS[k % len(ACCENTS)],
            "variant": VARIANTS[(3 * k + k // len(VARIANTS)) % len(VARIANTS)],
            "speed_wpm": SPEEDS[k % len(SPEEDS)],
            "pitch": PITCHES[(k // 2) % len(PITCHES)],
            "split": split,
        })
    keys = {(s["voice"], s["variant"], s["speed_wpm"], s["pitch"]) for s in speakers}
    assert len(keys) == N_SPEAKERS, "speaker parameter combinations must be distinct"
    return speakers


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("Data at")[0].strip()


def render(word: str, speaker: dict, workdir: Path) -> np.ndarray:
    """One spoken word as float64 mono at ESPEAK_RATE."""
    wav_path = workdir / "clip.wav"
    voice = f"{speaker['voice']}+{speaker['variant']}"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speaker["speed_wpm"]), "-p", str(speaker["pitch"]),
                    "-w", str(wav_path), word], check=True, capture_output=True)
    with wave.open(str(wav_path)) as w:
        if w.getframerate() != ESPEAK_RATE or w.getsampwidth() != 2:
            raise RuntimeError(f"unexpected espeak-ng output: {w.getframerate()} Hz, {8 * w.getsampwidth()} bit")
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return raw.mean(axis=1) / 32768.0


def trim_and_normalise(x: np.ndarray) -> np.ndarray:
    """Drop leading/trailing 10 ms frames quieter than TRIM_DB below the peak; keep 20 ms margins."""
    frame = SAMPLE_RATE // 100
    n_frames = len(x) // frame
    energy = np.sqrt((x[: n_frames * frame].reshape(n_frames, frame) ** 2).mean(axis=1) + 1e-20)
    loud = np.flatnonzero(20 * np.log10(energy / energy.max()) > -TRIM_DB)
    start = max(0, (loud[0] - 2) * frame)
    stop = min(len(x), (loud[-1] + 3) * frame)
    y = x[start:stop]
    return y * (PEAK / np.abs(y).max())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz that np.load reads, with fixed timestamps so the bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out_dir: Path, force: bool) -> dict:
    asset, manifest_path = out_dir / ASSET_NAME, out_dir / "manifest.json"
    if not force and (asset.exists() or manifest_path.exists()):
        raise SystemExit(f"{out_dir} already holds AV-Digits files; pass --force to rebuild them")
    speakers = speaker_table()
    clips, starts, lengths = [], np.zeros((N_SPEAKERS, 10), np.int64), np.zeros((N_SPEAKERS, 10), np.int64)
    offset = 0
    with tempfile.TemporaryDirectory() as tmp:
        for s, speaker in enumerate(speakers):
            for d, word in enumerate(WORDS):
                x = resample_poly(render(word, speaker, Path(tmp)), 320, 441)  # 22050 -> 16000 Hz
                y = np.round(trim_and_normalise(x) * 32767).astype(np.int16)
                clips.append(y)
                starts[s, d], lengths[s, d] = offset, len(y)
                offset += len(y)
    audio = np.concatenate(clips)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp_asset = out_dir / (ASSET_NAME + ".tmp")
    write_npz(tmp_asset, {"audio": audio, "start": starts, "length": lengths})
    tmp_asset.replace(asset)
    manifest = {
        "name": "AV-Digits spoken digits",
        "file": ASSET_NAME,
        "sha256": sha256(asset),
        "bytes": asset.stat().st_size,
        "sample_rate": SAMPLE_RATE,
        "dtype": "int16 (divide by 32767 for [-1, 1])",
        "layout": "audio: all clips concatenated; start/length: (speaker, digit) int64 tables into audio",
        "words": list(WORDS),
        "espeak_ng_version": espeak_version(),
        "build": ("python data/build_av_digits.py: espeak-ng -v VOICE+VARIANT -s SPEED -p PITCH -w out.wav WORD; "
                  f"mono, resample_poly 22050->16000 Hz, trim frames < -{TRIM_DB:.0f} dB of peak "
                  f"(20 ms margins), peak-normalise to {PEAK}, int16"),
        "clip_seconds": {"min": round(float(lengths.min()) / SAMPLE_RATE, 3),
                         "max": round(float(lengths.max()) / SAMPLE_RATE, 3)},
        "splits": {split: [s["id"] for s in speakers if s["split"] == split] for split in ("train", "val", "test")},
        "speakers": speakers,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.force)
    print(f"{manifest['file']}: {manifest['bytes']} bytes, sha256 {manifest['sha256']}")
    print(f"manifest.json sha256 {sha256(args.out / 'manifest.json')}")
    print(f"clips {manifest['clip_seconds']} s; {manifest['espeak_ng_version']}")


if __name__ == "__main__":
    sys.exit(main())
