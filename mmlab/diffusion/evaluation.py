"""Scoring images against the prompts they were made from: prompts are real Shapes-World captions of one split
(val: the training templates; test: held-out templates and synonyms), so every prompt comes with the attributes
it asks for, and the same scores computed on the real images of those captions give the ceiling.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmlab import validation
from mmlab.data.shapes_text import canonical_caption
from mmlab.data.shapes_world import ShapesWorld
from mmlab.diffusion.metrics import attribute_accuracy, clip_score, mentioned, shows_object
from mmlab.diffusion.reader import AttributeReader, attribute_targets


@dataclass
class PromptSet:
    """`prompts[i]` is a caption of real image `images[i]`; `targets` its attributes, `named` which ones the
    prompt names, `canonical` the named attributes in training-template words ("a {size} {colour} {shape}",
    "a {colour} {shape} {where}" or "a {colour} {shape}"): the CLIP-score text, which asks for what the prompt asks
    for, in words the dual encoder knows whatever the prompt's phrasing."""

    prompts: list[str]
    images: Tensor
    targets: dict[str, Tensor]
    named: dict[str, Tensor]
    canonical: list[str]

    def shuffled(self, shift: int = 1) -> "PromptSet":
        """The same images paired with other items' prompts (rolled by `shift`): the chance-level control."""
        roll = lambda t: torch.roll(t, shift, 0)  # noqa: E731
        prompts = self.prompts[-shift:] + self.prompts[:-shift]
        canonical = self.canonical[-shift:] + self.canonical[:-shift]
        return PromptSet(prompts, self.images, {a: roll(t) for a, t in self.targets.items()},
                         {a: roll(t) for a, t in self.named.items()}, canonical)


def prompt_set(split: str, size: int, caption: int | None = None) -> PromptSet:
    """Items 0..size-1 of `split`, each with one caption (`caption`, or caption i mod 4 for item i)."""
    validation.positive_int("size", size)
    batch = ShapesWorld(split, size=size, with_audio=False).batch(range(size))
    prompts = [caps[(i % len(caps)) if caption is None else caption] for i, caps in enumerate(batch["captions"])]
    targets, named = attribute_targets(batch), mentioned(prompts)
    canonical = [canonical_caption(int(targets["shape"][i]), int(targets["color"][i]),
                                   int(targets["size"][i]) if named["size"][i] else None,
                                   int(targets["region"][i]) if named["region"][i] else None) for i in range(size)]
    return PromptSet(prompts, batch["image"], targets, named, canonical)


def read_generated(reader: AttributeReader, images: Tensor) -> dict[str, Tensor]:
    """The reader's attributes of each image (B,) per attribute, -1 (no class at all) on every attribute of an image
    that shows no object (`shows_object`): the reader has no "nothing there" class of its own."""
    present = shows_object(images)
    return {a: torch.where(present, p, -1) for a, p in reader.read(images).items()}


def score_images(images: Tensor, prompts: PromptSet, reader: AttributeReader, dual_encoder) -> dict[str, float]:
    """Attribute accuracy per attribute (and "all") of `images` against the prompts, with an image that shows no
    object wrong on every attribute (`read_generated`); "object": the fraction that show one; mean CLIP score."""
    if len(images) != len(prompts.prompts):
        raise ValueError(f"need one image per prompt: {len(images)} images, {len(prompts.prompts)} prompts")
    scores = attribute_accuracy(read_generated(reader, images), prompts.targets, prompts.named)
    scores["object"] = float(shows_object(images).float().mean())
    scores["clip_score"] = float(clip_score(dual_encoder, images, prompts.canonical).mean())
    return scores


GUIDANCE_MEASURED = (1.0, 3.0)


def measure_run(generator, reader: AttributeReader, dual_encoder, size: int = 480, steps: int = 16,
                seed: int = 0) -> dict[str, dict]:
    """The numbers a saved run records: for val and test prompts (`size` each), the scores of generated images at
    each of GUIDANCE_MEASURED ("g1", "g3"), of the prompts' real images ("real") and of the real images with
    shuffled prompts ("shuffled")."""
    out: dict[str, dict] = {}
    for split in ("val", "test"):
        prompts = prompt_set(split, size)
        out[split] = {"real": score_images(prompts.images, prompts, reader, dual_encoder),
                      "shuffled": score_images(prompts.images, prompts.shuffled(), reader, dual_encoder)}
        for w in GUIDANCE_MEASURED:
            images = generator.generate(prompts.prompts, guidance_scale=w, steps=steps, seed=seed)
            out[split][f"g{w:g}"] = score_images(images, prompts, reader, dual_encoder)
        out[split] = {k: {m: round(v, 4) for m, v in s.items()} for k, s in out[split].items()}
    return out
