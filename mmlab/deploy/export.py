"""Export the two towers of a `DualEncoder` to ONNX, each with its projection and L2 normalisation inside.

    paths = export_onnx(model, "exported/")   # {"image": .../image_encoder.onnx, "text": .../text_encoder.onnx}

The image graph takes `pixel_values` (B, C, H, W) float32, the text graph `input_ids` and `attention_mask`
(B, T) int64 (T up to the text tower's max_length); both return `embeddings` (B, embed_dim), equal to
`encode_image` / `encode_text`. The batch (and the text length) are dynamic axes.

How: `torch.onnx.export(..., dynamo=True)` (torch.export, then onnxscript's torchlib). Its pitfalls, handled here:
- it writes the weights to a separate `<name>.data` file by default (external_data=True); we save one file;
- data-dependent control flow (an `if` on tensor values) cannot be traced: mmlab's input checks that read
  values run only when `validation.on_host` is true, which it is not while torch.export traces;
- the opset is passed explicitly (default 18, see DEFAULT_OPSET).
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from mmlab import validation
from mmlab.deploy.files import OnnxFileError, load_onnx, save_onnx, set_metadata, write_atomic
from mmlab.deploy.fingerprint import model_fingerprint

# 18: the opset torch's ONNX function library (torchlib) is written for, so no version conversion runs; it has
# LayerNormalization as one op (opset >= 17) and onnxruntime 1.32 and its quantiser support it.
DEFAULT_OPSET = 18
MIN_OPSET = 18  # lower opsets would need a down-conversion of torchlib's graphs, which is not reliable
FILE_NAMES = {"image": "image_encoder.onnx", "text": "text_encoder.onnx"}
OUTPUT_NAME = "embeddings"


class ImageGraph(nn.Module):
    """`pixel_values` (B, C, H, W) -> `embeddings` (B, E): the module that is exported for the image tower."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> Tensor:
        return self.model.encode_image(pixel_values)


class TextGraph(nn.Module):
    """`input_ids`, `attention_mask` (B, T) -> `embeddings` (B, E): the module exported for the text tower."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.encode_text({"input_ids": input_ids, "attention_mask": attention_mask})


def image_input_shape(model: nn.Module) -> tuple[int, int, int]:
    """(C, H, W) the image tower takes, read from its config (a VisionTransformer's `in_channels`, `image_size`)."""
    config = getattr(model.image_encoder, "config", None)
    if not all(isinstance(getattr(config, k, None), int) for k in ("in_channels", "image_size")):
        raise ValueError(f"cannot tell the image size of the image tower ({type(model.image_encoder).__name__} has "
                         "no config.in_channels / config.image_size); export_onnx needs a VisionTransformer-like tower")
    return config.in_channels, config.image_size, config.image_size


def text_input_limits(model: nn.Module) -> tuple[int, int]:
    """(vocab_size, max_length) of the text tower, read from its config (a TextTransformer's)."""
    config = getattr(model.text_encoder, "config", None)
    if not all(isinstance(getattr(config, k, None), int) for k in ("vocab_size", "max_length")):
        raise ValueError(f"the text tower ({type(model.text_encoder).__name__}) takes no token ids "
                         "(no config.vocab_size / config.max_length); export_onnx needs a TextTransformer-like tower")
    return config.vocab_size, config.max_length


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the exporter's progress lines, its warnings about optional torchvision ops and axis names."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_graph(graph: nn.Module, args: tuple, input_names: list[str], dynamic: dict, opset: int,
                  path: Path, metadata: dict) -> Path:
    with _quiet_exporter():
        program = torch.onnx.export(graph, args, None, input_names=input_names, output_names=[OUTPUT_NAME],
                                    dynamic_shapes=dynamic, opset_version=opset, dynamo=True, external_data=False,
                                    verbose=False)
    # Save to one temporary file (weights inside), stamp the metadata, rename over the target.
    def write(tmp: Path) -> None:
        program.save(str(tmp), external_data=False)
        model = load_onnx(tmp)
        set_metadata(model, metadata)
        save_onnx(model, tmp)

    return write_atomic(path, write)


def export_onnx(model: nn.Module, out_dir: str | os.PathLike, opset: int | None = None) -> dict[str, Path]:
    """Export `model.encode_image` and `model.encode_text` of a DualEncoder to `out_dir`; see the module doc.

    Returns {"image": path, "text": path}. Each file stores, in its metadata_props, the model's fingerprint
    (`mmlab.model`), the opset, the graph's kind and the input sizes (read them with `onnx_metadata`).
    The model is exported in eval mode and put back in the mode it was in."""
    from mmlab.align.model import DualEncoder

    if not isinstance(model, DualEncoder):
        raise TypeError(f"model must be a mmlab.align.DualEncoder, got {type(model).__name__}")
    out_dir = validation.writable_path("out_dir", out_dir, folder=True)
    import onnx

    opset = DEFAULT_OPSET if opset is None else validation.int_in_range("opset", opset, MIN_OPSET,
                                                                        onnx.defs.onnx_opset_version())
    channels, height, width = image_input_shape(model)
    vocab_size, max_length = text_input_limits(model)
    device = next(model.parameters()).device
    common = {"model": model_fingerprint(model), "opset": opset, "embed_dim": model.embed_dim,
              "precision": "fp32", "torch": torch.__version__, "onnx": onnx.__version__}
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    length = torch.export.Dim("length", min=1, max=max_length)
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        pixels = torch.rand(2, channels, height, width, device=device)
        image = _export_graph(ImageGraph(model), (pixels,), ["pixel_values"], {"pixel_values": {0: batch}}, opset,
                              out_dir / FILE_NAMES["image"],
                              {**common, "graph": "image", "input_shape": f"{channels},{height},{width}"})
        ids = torch.randint(0, vocab_size, (2, min(3, max_length)), device=device)
        text = _export_graph(TextGraph(model), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"],
                             {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}}, opset,
                             out_dir / FILE_NAMES["text"],
                             {**common, "graph": "text", "vocab_size": vocab_size, "max_length": max_length})
    finally:
        model.train(was_training)
    return {"image": image, "text": text}


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The mmlab metadata stored in an exported (or quantised) ONNX file: model fingerprint, opset, precision..."""
    from mmlab.deploy.files import read_metadata

    model = load_onnx(path, check=False)
    meta = read_metadata(model)
    if "model" not in meta:
        raise OnnxFileError(f"ONNX file {path} has no mmlab metadata (was it written by mmlab.deploy.export_onnx?)")
    return meta
