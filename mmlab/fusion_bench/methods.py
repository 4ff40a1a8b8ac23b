"""What the benchmark compares: a method is a registered fusion, the modalities it sees, options held fixed,
and the search space its tuning draws from (the family's declared space plus the shared training settings).

The unimodal baselines are early fusion on one modality ("image only" ...); the late-fusion transformer
baseline is the registered family "simbamm". Every method, baselines included, is tuned with the same number
of trials over `training_space` plus its family's space (`mmlab.fusion.fusion_search_space`).

A multimodal method is trained end to end (default) or progressively: each modality's encoder first trained
alone with its own head, then the fusion trained on top with those encoders frozen or fine-tuned
(`TRAINING_MODES`; see `mmlab.fusion_bench.training`). A progressive method is a method of its own, with its own
label and the same tuning budget as every other.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from mmlab import validation
from mmlab.fusion.registry import available_fusions, fusion_options, fusion_search_space
from mmlab.fusion.search_space import FloatRange, IntRange, Param, check_search_space
from mmlab.fusion_bench.model import FusionModel
from mmlab.fusion_bench.tasks import Task

TRAINING_OPTIONS = ("lr", "weight_decay", "steps")
# how a multimodal method is trained -> the suffix of its label
TRAINING_MODES = {"end_to_end": "", "progressive_frozen": " [progressive, frozen]",
                  "progressive_finetune": " [progressive, fine-tuned]"}


def training_space(max_steps: int, min_steps: int = 40) -> dict[str, Param]:
    """The settings every method tunes: peak learning rate (AdamW, cosine decay), weight decay, and the length
    of the cosine schedule in steps, up to `max_steps` (early stopping on validation may end a run sooner)."""
    validation.positive_int("max_steps", max_steps)
    return {"lr": FloatRange(1e-3, 3e-2, log=True), "weight_decay": FloatRange(1e-4, 1e-1, log=True),
            "steps": IntRange(min(min_steps, max_steps), max_steps)}


@dataclass
class Method:
    """A registered `fusion` with `options` held fixed, seeing `modalities` (None: all the task's).

    `search_space`: the fusion options to tune (default: the family's declared space, minus the fixed
    options); a name the fusion does not take is a ValueError here, before anything is trained."""

    fusion: str
    options: dict = field(default_factory=dict)
    modalities: tuple[str, ...] | None = None
    label: str = ""
    search_space: dict | None = None
    training: str = "end_to_end"

    def __post_init__(self) -> None:
        if not isinstance(self.fusion, str):
            raise TypeError(f"fusion must be a registered fusion's name (str), got {type(self.fusion).__name__}")
        if self.fusion not in available_fusions():
            raise KeyError(f"unknown fusion {self.fusion!r}; available: {', '.join(available_fusions())}")
        if not isinstance(self.options, Mapping) or not all(isinstance(k, str) for k in self.options):
            raise TypeError(f"options must be a dict of keyword arguments for the fusion, got {self.options!r}")
        self.options = dict(self.options)
        if self.modalities is not None:
            self.modalities = tuple(validation.str_list("modalities", self.modalities, single=False))
        if not self.label:
            opts = ",".join(f"{k}={v}" for k, v in self.options.items())
            self.label = self.fusion + (f"({opts})" if opts else "")
            if self.modalities:
                self.label = f"{'+'.join(self.modalities)} only"
        if self.training not in TRAINING_MODES:
            raise ValueError(f"unknown training {self.training!r}; choose one of {', '.join(TRAINING_MODES)}")
        if self.training != "end_to_end":
            if self.modalities is not None and len(self.modalities) == 1:
                raise ValueError(f"method {self.label!r} sees one modality: progressive training (each modality's "
                                 "encoder trained alone first) is for multimodal methods")
            if not self.label.endswith(TRAINING_MODES[self.training]):
                self.label += TRAINING_MODES[self.training]
        space = fusion_search_space(self.fusion) if self.search_space is None else self.search_space
        space = check_search_space(self.fusion, space, fusion_options(self.fusion))
        clash = sorted(set(space) & set(TRAINING_OPTIONS))
        if clash:
            raise ValueError(f"fusion {self.fusion!r}: search_space names {clash}, which are training settings "
                             "tuned for every method (training_space), not fusion options")
        self.search_space = {k: v for k, v in space.items() if k not in self.options}

    @property
    def unimodal(self) -> bool:
        return self.modalities is not None and len(self.modalities) == 1

    def space(self, max_steps: int) -> dict[str, Param]:
        """Everything tuned for this method: the training settings, then the fusion's options."""
        return {**training_space(max_steps), **self.search_space}

    def build(self, task: Task, width: int, params: Mapping[str, Any] | None = None) -> FusionModel:
        """The model for `task` with encoders of token width `width` and the fusion options in `params`
        (training settings among them are ignored here)."""
        tuned = {k: v for k, v in (params or {}).items() if k not in TRAINING_OPTIONS}
        return FusionModel(task, self.fusion, self.modalities, width=width, fusion_options={**self.options, **tuned})


def parse_method(spec: str) -> Method:
    """"name" or "name:key=value,key=value" (values parsed as Python literals when possible; fixed, not tuned)."""
    if not isinstance(spec, str):
        raise TypeError(f"a method is a string such as 'late:combine=learned', got {type(spec).__name__}")
    name, _, opts = spec.partition(":")
    options = {}
    for item in filter(None, opts.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"bad option {item!r} in {spec!r}; expected key=value")
        if key in options:
            raise ValueError(f"option {key!r} is given twice in {spec!r}")
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return Method(name, options)


def default_methods(task: Task, names: Sequence[str | Method] | None = None,
                    training: Sequence[str] = ("end_to_end",)) -> list[Method]:
    """The unimodal baselines (early fusion on each modality), then `names` (default: every registered fusion,
    "late" and "simbamm" among them), each trained in every mode of `training` (`TRAINING_MODES`)."""
    training = validation.str_list("training", training, single=False)
    validation.distinct("training", training)
    baselines = [Method("early", modalities=(m,)) for m in task.modalities]
    chosen = [n if isinstance(n, Method) else parse_method(n) for n in (names or available_fusions())]
    return baselines + [replace(m, training=mode) for m in chosen for mode in training]


def check_methods(methods: Sequence[Method], task: Task, width: int) -> None:
    """Build every method's model once with its defaults (then drop it), so that a bad fixed option fails before
    any training; two methods with one label are a ValueError."""
    if not methods:
        raise ValueError("need at least one method")
    validation.distinct("the methods", [m.label for m in methods])
    for method in methods:
        try:
            method.build(task, width)
        except (TypeError, ValueError) as err:
            kind = TypeError if isinstance(err, TypeError) else ValueError
            raise kind(f"method {method.label!r} cannot be built for task {task.name!r}: {err}") from err
