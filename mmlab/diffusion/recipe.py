"""The text-to-image recipe: a DiT trained by flow matching on Shapes-World "train" captions, plus the two judges
its lesson needs (the attribute reader and the CLIP-score dual encoder), all through `mmlab.train.fit`.

    recipe = TextToImageRecipe(steps=3000)
    trained = train_text_to_image(recipe)          # minutes on a CPU; data/text_to_image holds a trained one
    trained.generator.generate(["a small red circle"])
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from mmlab import validation
from mmlab.align.recipe import ShapesDualEncoder, ShapesRecipe, train_shapes_dual_encoder
from mmlab.data.shapes_world import ShapesWorld
from mmlab.diffusion.config import DiTConfig
from mmlab.diffusion.dit import DiT
from mmlab.diffusion.evaluation import PromptSet, score_images
from mmlab.diffusion.flow import flow_matching_loss
from mmlab.diffusion.model import TextToImage, to_model_range
from mmlab.diffusion.reader import AttributeReader, attribute_targets, reader_loss
from mmlab.diffusion.text_condition import CaptionEmbedder
from mmlab.train import TrainConfig, fit


@dataclass
class TextToImageRecipe:
    """Model size, the flow-matching run (AdamW, linear warm-up then cosine, an EMA of the weights) and the judges'
    runs. `drop_prob`: share of captions replaced by the null caption during training (classifier-free guidance)."""

    dit: DiTConfig = field(default_factory=DiTConfig)
    steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    drop_prob: float = 0.1
    ema_decay: float = 0.999
    train_size: int = 20000
    seed: int = 0
    reader_steps: int = 1000
    dual_encoder_steps: int = 300

    def __post_init__(self) -> None:
        if isinstance(self.dit, dict):
            self.dit = DiTConfig(**self.dit)
        if not isinstance(self.dit, DiTConfig):
            raise TypeError(f"TextToImageRecipe.dit must be a DiTConfig, got {type(self.dit).__name__}")
        if (self.dit.image_size, self.dit.channels) != (32, 3):
            raise ValueError("TextToImageRecipe trains on 32 x 32 RGB Shapes-World images: DiTConfig.image_size "
                             f"must be 32 and channels 3, got {self.dit.image_size} and {self.dit.channels}")
        for name in ("steps", "batch_size", "train_size", "reader_steps", "dual_encoder_steps"):
            validation.positive_int(f"TextToImageRecipe.{name}", getattr(self, name))
        validation.non_negative_int("TextToImageRecipe.warmup_steps", self.warmup_steps)
        validation.non_negative_int("TextToImageRecipe.seed", self.seed)
        validation.finite_float("TextToImageRecipe.lr", self.lr, 0, low_open=True)
        validation.finite_float("TextToImageRecipe.drop_prob", self.drop_prob, 0.0, 1.0)
        validation.finite_float("TextToImageRecipe.ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)


@dataclass
class TrainedTextToImage:
    generator: TextToImage
    reader: AttributeReader
    dual_encoder: ShapesDualEncoder
    recipe: TextToImageRecipe
    history: dict[str, Any]


def training_data(recipe: TextToImageRecipe) -> dict[str, Any]:
    """Shapes-World "train" items 0..train_size-1 (images, 4 captions each, attributes)."""
    return ShapesWorld("train", size=recipe.train_size, with_audio=False).batch(range(recipe.train_size))


def ema_callback(model: DiT, decay: float) -> tuple[torch.optim.swa_utils.AveragedModel, Callable]:
    """An exponential moving average of `model`'s weights, updated after every optimizer step by the callback."""
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay))

    def update(step: int, trained: torch.nn.Module, history: dict) -> None:
        ema.update_parameters(trained)

    return ema, update


def train_generator(recipe: TextToImageRecipe, data: dict[str, Any], embedder: CaptionEmbedder,
                    progress: bool = False, evaluate: Callable[[DiT], dict] | None = None,
                    eval_every: int = 0) -> tuple[DiT, dict[str, Any]]:
    """Flow matching on (image, one of its 4 captions) pairs drawn per step from a seeded generator; returns the EMA
    model and fit's history (plus "evals": `evaluate(ema_model)` every `eval_every` steps and at the end, with the
    step and the wall seconds since training started)."""
    n = len(data["image"])
    images = to_model_range(data["image"])  # (N, 3, 32, 32) in [-1, 1]
    captions = embedder([c for caps in data["captions"] for c in caps])  # (4N, 384): image i -> rows 4i..4i+3
    torch.manual_seed(recipe.seed)
    model = DiT(recipe.dit)
    ema, update_ema = ema_callback(model, recipe.ema_decay)
    evals: list[dict] = []
    start = time.perf_counter()

    def batch(step: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (recipe.batch_size,), generator=g)
        rows = idx * 4 + torch.randint(0, 4, (recipe.batch_size,), generator=g)
        return {"image": images[idx], "caption": captions[rows], "generator": g}

    def loss(m: DiT, b: dict[str, Any]) -> Tensor:
        return flow_matching_loss(m, b["image"], b["caption"], recipe.drop_prob, b["generator"])

    def maybe_evaluate(step: int, trained: torch.nn.Module, history: dict) -> None:
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == recipe.steps):
            row = {"step": step, "seconds": round(time.perf_counter() - start, 1)}
            row.update(evaluate(ema.module))
            evals.append(row)

    config = TrainConfig(steps=recipe.steps, lr=recipe.lr, seed=recipe.seed, progress=progress, schedule="cosine",
                         warmup_steps=recipe.warmup_steps)
    history = fit(model, loss, batch, config, callbacks=(update_ema, maybe_evaluate))
    history["evals"] = evals
    return ema.module.eval(), history


def train_reader(recipe: TextToImageRecipe, data: dict[str, Any], progress: bool = False) -> AttributeReader:
    """The attribute reader, trained on the same real training images."""
    targets = attribute_targets(data)
    n = len(data["image"])
    torch.manual_seed(recipe.seed)
    reader = AttributeReader()

    def batch(step: int) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (128,), generator=g)
        return {"image": data["image"][idx], **{a: t[idx] for a, t in targets.items()}}

    fit(reader, reader_loss, batch, TrainConfig(steps=recipe.reader_steps, lr=2e-3, seed=recipe.seed,
                                                progress=progress))
    return reader.eval()


def train_text_to_image(recipe: TextToImageRecipe | None = None, progress: bool = False,
                        monitor: PromptSet | None = None, eval_every: int = 0,
                        embedder: CaptionEmbedder | None = None) -> TrainedTextToImage:
    """Train the judges, then the generator. With `monitor`, the EMA generator is scored on its prompts (guidance
    3, 16 Euler steps, seed 0) by the judges every `eval_every` steps: history["evals"]."""
    recipe = TextToImageRecipe() if recipe is None else recipe
    if not isinstance(recipe, TextToImageRecipe):
        raise TypeError(f"recipe must be a TextToImageRecipe, got {type(recipe).__name__}")
    embedder = embedder or CaptionEmbedder()
    data = training_data(recipe)
    reader = train_reader(recipe, data, progress)
    dual = train_shapes_dual_encoder(ShapesRecipe(steps=recipe.dual_encoder_steps, seed=recipe.seed), progress)

    def evaluate(dit: DiT) -> dict[str, float]:
        images = TextToImage(dit, embedder).generate(monitor.prompts, guidance_scale=3.0, steps=16, seed=0)
        return {k: round(v, 4) for k, v in score_images(images, monitor, reader, dual).items()}

    dit, history = train_generator(recipe, data, embedder, progress, evaluate if monitor else None, eval_every)
    return TrainedTextToImage(TextToImage(dit, embedder), reader, dual, recipe, history)
