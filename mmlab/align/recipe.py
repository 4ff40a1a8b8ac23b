"""A small CLIP-style dual encoder for Shapes-World, trained in seconds on a CPU: what the deployment lesson,
the search command and the deployment benchmark export, quantise and index.

    trained = train_shapes_dual_encoder(ShapesRecipe(steps=200))
    trained.model.encode_text(trained.tokenize(["a small red circle"]))

The model, the loss and the classes are those of `mmlab.align.shapes_recipe` (the recipe of lessons 06 and 08:
`tiny_dual_encoder`, `clip_loss` with same shape/colour/size pairs as positives, AdamW through `mmlab.train.fit`,
the temperature clipped after each step). What this module adds for deployment: a config, one training call, a
word-level vocabulary built from the training captions (`SimpleVocab`: words outside it become [UNK]), whose
tokens are all the model needs at serving time, and a single-file save/load of model + vocabulary + recipe.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmlab import validation
from mmlab.align.model import DualEncoder, clamp_logit_scale
from mmlab.align.shapes_recipe import attribute_classes, clip_loss, tiny_dual_encoder
from mmlab.checkpoint import CheckpointError, load_checkpoint, load_model_state, save_checkpoint
from mmlab.data.shapes_world import ShapesWorld
from mmlab.encoders import ViTConfig
from mmlab.preprocess.text import SimpleVocab
from mmlab.train import TrainConfig, fit

RECIPE_KEY = "shapes_recipe"


@dataclass
class ShapesRecipe:
    """Towers of width `dim` and `depth` blocks (4 heads, 64-d joint space: `tiny_dual_encoder`), and the run."""

    dim: int = 64
    depth: int = 2
    image_size: int = 32
    patch_size: int = 8
    max_length: int = 16
    train_size: int = 2000
    steps: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "depth", "image_size", "patch_size", "train_size", "steps", "batch_size"):
            validation.positive_int(f"ShapesRecipe.{name}", getattr(self, name))
        validation.int_at_least("ShapesRecipe.max_length", self.max_length, 4)
        validation.finite_float("ShapesRecipe.lr", self.lr, 0, low_open=True)
        validation.non_negative_int("ShapesRecipe.seed", self.seed)
        ViTConfig(dim=self.dim, heads=4, image_size=self.image_size, patch_size=self.patch_size)  # checks


@dataclass
class ShapesDualEncoder:
    """A trained (or loaded) model with its vocabulary and recipe; `tokenize(texts)` -> encode_text's dict."""

    model: DualEncoder
    vocab: SimpleVocab
    recipe: ShapesRecipe
    history: dict[str, Any] | None = None

    def tokenize(self, texts: str | list[str]) -> dict[str, Tensor]:
        """Texts -> {"input_ids", "attention_mask"} (B, T), padded to the longest, at most max_length."""
        texts = validation.str_list("texts", texts)
        return self.vocab.encode(texts, max_length=self.recipe.max_length, padding="longest")


def caption_vocabulary(recipe: ShapesRecipe) -> SimpleVocab:
    """The words of the recipe's training captions (deterministic: Shapes-World is generated from its seed)."""
    captions = ShapesWorld("train", size=recipe.train_size, with_audio=False).batch(range(recipe.train_size))
    return SimpleVocab.build(c for caps in captions["captions"] for c in caps)


def build_dual_encoder(recipe: ShapesRecipe, vocab_size: int) -> DualEncoder:
    """An untrained DualEncoder of the recipe's size (`shapes_recipe.tiny_dual_encoder`)."""
    r = recipe
    return tiny_dual_encoder(vocab_size, max_length=r.max_length, dim=r.dim, depth=r.depth, image_size=r.image_size,
                             patch_size=r.patch_size)


def train_shapes_dual_encoder(recipe: ShapesRecipe | None = None, progress: bool = False) -> ShapesDualEncoder:
    """Train the recipe's model on Shapes-World "train" (one random caption of the 4 per image per step;
    pairs with equal shape, colour and size count as positives). Returns it in eval mode."""
    recipe = ShapesRecipe() if recipe is None else recipe
    if not isinstance(recipe, ShapesRecipe):
        raise TypeError(f"recipe must be a ShapesRecipe, got {type(recipe).__name__}")
    validation.boolean("progress", progress)
    data = ShapesWorld("train", size=recipe.train_size, with_audio=False).batch(range(recipe.train_size))
    vocab = SimpleVocab.build(c for caps in data["captions"] for c in caps)
    captions = [c for caps in data["captions"] for c in caps]  # image i -> rows 4i..4i+3
    encoded = vocab.encode(captions, max_length=recipe.max_length, padding="max_length")
    classes = attribute_classes(data)  # the 48 shape/colour/size combinations
    n = recipe.train_size
    torch.manual_seed(recipe.seed)
    model = build_dual_encoder(recipe, len(vocab))

    def batch(step: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (recipe.batch_size,), generator=g)
        rows = idx * 4 + torch.randint(0, 4, (recipe.batch_size,), generator=g)
        length = int(encoded["attention_mask"][rows].sum(1).max())
        return {"image": data["image"][idx],
                "text": {"input_ids": encoded["input_ids"][rows, :length],
                         "attention_mask": encoded["attention_mask"][rows, :length]},
                "positive": classes[idx][:, None] == classes[idx][None, :]}  # (B, B)

    history = fit(model, clip_loss, batch, TrainConfig(steps=recipe.steps, lr=recipe.lr, seed=recipe.seed,
                                                  progress=progress), callbacks=(clamp_logit_scale,))
    return ShapesDualEncoder(model.eval(), vocab, recipe, history)


def save_shapes_model(path: str | os.PathLike, trained: ShapesDualEncoder) -> Path:
    """Write model weights, vocabulary and recipe to one checkpoint file (atomically, via mmlab.checkpoint)."""
    if not isinstance(trained, ShapesDualEncoder):
        raise TypeError(f"trained must be a ShapesDualEncoder, got {type(trained).__name__}")
    path = validation.writable_path("path", path)
    return save_checkpoint(path, {"model": trained.model.state_dict(), RECIPE_KEY: asdict(trained.recipe),
                                  "vocab": list(trained.vocab.itos)})


def load_shapes_model(path: str | os.PathLike) -> ShapesDualEncoder:
    """Read what `save_shapes_model` wrote; a file of another kind is a CheckpointError naming it."""
    state = load_checkpoint(path)
    if RECIPE_KEY not in state or "vocab" not in state or "model" not in state:
        raise CheckpointError(f"checkpoint {path} is not a Shapes-World dual encoder (no '{RECIPE_KEY}', 'vocab' "
                              "or 'model' entry); write one with mmlab.align.recipe.save_shapes_model")
    recipe = ShapesRecipe(**state[RECIPE_KEY])
    vocab = SimpleVocab(state["vocab"])
    model = build_dual_encoder(recipe, len(vocab))
    load_model_state(model, state["model"], path)
    return ShapesDualEncoder(model.eval(), vocab, recipe)
