"""Smaller, faster copies of an exported encoder: INT8 (dynamic quantisation) and FP16.

- `quantize_int8`: onnxruntime's dynamic quantisation (Jacob et al., 2018, affine 8-bit): weights of MatMul and
  Gemm are stored as int8 with one scale per tensor (or per output channel); at run time each activation is
  quantised to uint8 with a scale computed from its own min and max (DynamicQuantizeLinear), the product runs in
  integers (MatMulInteger) and is scaled back to float. Conv is left in float: its quantised form, ConvInteger,
  has no onnxruntime CPU kernel for int8 weights, so quantising it would give a model that does not load.
  `reduce_range=True` (the default) keeps weights in 7 bits: on x86 CPUs without VNNI onnxruntime multiplies
  uint8 x int8 with VPMADDUBSW, whose int16 sums of two products saturate (2 * 255 * 127 > 32767); 7-bit weights
  cannot (2 * 255 * 64 < 32767). On this course's 2-core AVX2 machine the largest embedding error of the trained
  Shapes-World model (width 64) was 0.044 with 8-bit and 0.010 with 7-bit weights (benchmarks/results/deploy_cpu.md).
- `convert_fp16`: every float32 weight and activation stored as float16 (onnxruntime's float16 converter),
  inputs and outputs kept float32. On a CPU this halves the file but is not faster: onnxruntime's CPU provider
  has float16 kernels for few operators, and for the others it inserts Cast nodes and computes in float32.
- `quantize_torch_dynamic`: torch's own dynamic INT8 quantisation of nn.Linear, where this torch still has it
  (deprecated in favour of torchao); None otherwise.
"""
from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path

from torch import nn

from mmlab import validation
from mmlab.deploy.files import load_onnx, read_metadata, save_onnx, set_metadata, temporary_path, write_atomic

INT8_OP_TYPES = ("MatMul", "Gemm")


def _output_path(name: str, out_path, source: Path) -> Path:
    out = validation.writable_path(name, out_path)
    if out.resolve() == source.resolve():
        raise ValueError(f"{name} {str(out)!r} is the input file; write the quantised copy elsewhere")
    return out


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, per_channel: bool = False,
                  reduce_range: bool = True) -> Path:
    """A dynamically quantised (INT8 weights, MatMul/Gemm only) copy of the ONNX model at `onnx_path`,
    written atomically to `out_path`; returns `out_path`. The mmlab metadata is kept, with precision "int8".
    `per_channel`: one weight scale per output channel instead of per tensor; `reduce_range`: 7-bit weights
    (see the module doc)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = load_onnx(onnx_path)  # a corrupt input fails here, naming the file
    validation.boolean("per_channel", per_channel)
    validation.boolean("reduce_range", reduce_range)
    out = _output_path("out_path", out_path, Path(onnx_path))
    meta = read_metadata(source)

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser logs a hint about pre-processing at WARNING on the root logger
        try:
            staged = temporary_path(tmp)  # quantize_dynamic writes through onnx.save; keep its output beside ours
            try:
                quantize_dynamic(str(onnx_path), str(staged), op_types_to_quantize=list(INT8_OP_TYPES),
                                 weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range)
                model = load_onnx(staged)
            finally:
                if staged.exists():
                    staged.unlink()
        finally:
            root.setLevel(level)
        set_metadata(model, {**meta, "precision": "int8", "int8_ops": ",".join(INT8_OP_TYPES),
                             "per_channel": per_channel, "reduce_range": reduce_range})
        save_onnx(model, tmp)

    return write_atomic(out, write)


def convert_fp16(onnx_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """A float16 copy of the ONNX model at `onnx_path` (inputs and outputs stay float32), written atomically
    to `out_path`; returns `out_path`. See the module doc for how it runs on a CPU."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = load_onnx(onnx_path)
    out = _output_path("out_path", out_path, Path(onnx_path))
    meta = read_metadata(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about values clipped to the float16 range, none in these models
        model = convert_float_to_float16(source, keep_io_types=True)
    sort_nodes(model.graph)  # the converter appends its input Casts at the end of the node list
    set_metadata(model, {**meta, "precision": "fp16"})
    return save_onnx(model, out)


def sort_nodes(graph) -> None:
    """Reorder an onnx GraphProto's nodes in place so each comes after the nodes that produce its inputs
    (the ONNX spec requires it; Kahn's algorithm, keeping the original order among ready nodes)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or an undefined input near node {pending[0].name!r}")
        for n in ready:
            available.update(n.output)
        ordered += ready
        chosen = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in chosen]
    nodes = [copy.deepcopy(n) for n in ordered]
    del graph.node[:]
    graph.node.extend(nodes)


def quantize_torch_dynamic(model: nn.Module) -> nn.Module | None:
    """A copy of `model` with every nn.Linear dynamically quantised to INT8 by torch
    (`torch.ao.quantization.quantize_dynamic`), or None where this torch no longer has it. CPU only."""
    validation.require_module("model", model)
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError:
        return None
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated since torch 2.10 in favour of torchao
        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)
