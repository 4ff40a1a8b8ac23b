"""Saved text-to-image runs: a folder with the generator, the two judges and MANIFEST.json.

MANIFEST.json records the SHA-256 of every weights file, the command that trained them, the wall time, the machine,
the library versions and the metrics the run measured. Loading checks every file against its recorded digest
(and each tensor against the digests mmlab.checkpoint stores), so a file from another run or a corrupted one is a
CheckpointError naming it; weights that do not fit the recorded model are one too.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mmlab import validation
from mmlab.align.recipe import load_shapes_model, save_shapes_model
from mmlab.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from mmlab.data.assets import data_root, sha256_file
from mmlab.diffusion.dit import DiT
from mmlab.diffusion.model import TextToImage
from mmlab.diffusion.reader import AttributeReader
from mmlab.diffusion.recipe import TextToImageRecipe, TrainedTextToImage
from mmlab.diffusion.text_condition import CaptionEmbedder

MANIFEST = "MANIFEST.json"
FILES = {"generator": "generator.safetensors", "reader": "attribute_reader.safetensors",
         "dual_encoder": "dual_encoder.safetensors"}
COMMITTED = "text_to_image"  # the trained run committed under data/
# The committed manifest's own digest, pinned here so that a replaced manifest cannot vouch for replaced weights
# (data/train_text_to_image.py prints it after a run).
COMMITTED_MANIFEST_SHA256 = "e7a3ca20706ff6fba5f71ab77efa84388ec82c0a5faab87b38f6f7e94ebdd499"


def committed_run() -> Path:
    """The folder of the run committed with the repository (data/text_to_image)."""
    return data_root() / COMMITTED


def save_run(folder: str | os.PathLike, trained: TrainedTextToImage, provenance: dict[str, Any]) -> Path:
    """Write the three weights files, then MANIFEST.json (atomically, last: a folder whose manifest lists digests
    is complete). `provenance`: command, seconds, machine, versions, metrics... stored as given."""
    if not isinstance(trained, TrainedTextToImage):
        raise TypeError(f"trained must be a TrainedTextToImage, got {type(trained).__name__}")
    folder = validation.writable_path("folder", folder, folder=True)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / FILES["generator"], {"dit": trained.generator.dit.state_dict(),
                                                  "recipe": asdict(trained.recipe)})
    save_checkpoint(folder / FILES["reader"], {"reader": trained.reader.state_dict()})
    save_shapes_model(folder / FILES["dual_encoder"], trained.dual_encoder)
    manifest = {"recipe": asdict(trained.recipe), **provenance,
                "sha256": {name: sha256_file(folder / f) for name, f in FILES.items()}}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / MANIFEST)
    return folder


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    path = validation.as_path("folder", folder) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: {folder} is not a saved text-to-image run (mmlab.diffusion."
                              "weights.save_run writes one)")
    return json.loads(path.read_text())


def load_run(folder: str | os.PathLike | None = None, embedder: CaptionEmbedder | None = None) -> TrainedTextToImage:
    """Load a saved run (default: the committed one), after checking every file's SHA-256 against the manifest."""
    committed = folder is None
    folder = committed_run() if committed else validation.as_path("folder", folder)
    manifest = read_manifest(folder)
    if committed and sha256_file(folder / MANIFEST) != COMMITTED_MANIFEST_SHA256:
        raise CheckpointError(f"{folder / MANIFEST} is not the committed manifest (SHA-256 "
                              f"{sha256_file(folder / MANIFEST)}, mmlab pins {COMMITTED_MANIFEST_SHA256}); restore "
                              "data/text_to_image from the repository, or pass the folder of your own run")
    for name, file in FILES.items():
        path, expected = folder / file, manifest.get("sha256", {}).get(name)
        if not path.is_file():
            raise CheckpointError(f"{path} is missing from the saved run {folder}")
        actual = sha256_file(path)
        if actual != expected:
            raise CheckpointError(f"{path} does not match its recorded checksum: MANIFEST.json says SHA-256 "
                                  f"{expected}, the file has {actual} (another run's file, or corrupted)")
    state = load_checkpoint(folder / FILES["generator"])
    recipe = TextToImageRecipe(**state["recipe"])
    if asdict(recipe) != manifest["recipe"]:
        raise CheckpointError(f"{folder / FILES['generator']} was trained with another recipe than MANIFEST.json "
                              "records")
    dit = DiT(recipe.dit)
    load_model_state(dit, state["dit"], folder / FILES["generator"])
    reader = AttributeReader()
    load_model_state(reader, load_checkpoint(folder / FILES["reader"])["reader"], folder / FILES["reader"])
    dual = load_shapes_model(folder / FILES["dual_encoder"])
    history = {"manifest": manifest}
    return TrainedTextToImage(TextToImage(dit.eval(), embedder), reader.eval(), dual, recipe, history)
