"""Run an exported encoder with ONNX Runtime: `OnnxEncoder(path)(inputs) -> (B, E)` torch tensor.

    image = OnnxEncoder("exported/image_encoder.onnx")
    features = image(pixel_values)                              # (B, E) float32, unit norm
    text = OnnxEncoder("exported/text_encoder.onnx")
    features = text({"input_ids": ids, "attention_mask": mask})  # the same dict encode_text takes
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mmlab import validation
from mmlab.deploy.files import OnnxFileError, existing_file, load_onnx, read_metadata


def session_options(threads: int | None = None):
    """onnxruntime SessionOptions: all graph optimisations, `threads` intra-op threads (None: onnxruntime's
    default, one per physical core), one inter-op thread, no log lines below errors."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = validation.positive_int("threads", threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


class OnnxEncoder:
    """An ONNX Runtime session (CPU provider) over one exported tower, called like the torch encoder.

    `metadata`: the mmlab metadata stored in the file (model fingerprint, opset, precision, graph kind)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        self.path = existing_file("path", path, "ONNX file")
        model = load_onnx(self.path)  # a truncated/corrupt file fails here, naming it
        self.metadata = read_metadata(model)
        try:
            self.session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:
            raise OnnxFileError(f"onnxruntime cannot run ONNX file {self.path}: {e}") from e
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def __repr__(self) -> str:
        return f"OnnxEncoder({str(self.path)!r}, inputs={self.input_names})"

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            missing = [n for n in self.input_names if n not in inputs]
            extra = [n for n in inputs if n not in self.input_names]
            if missing or extra:
                raise ValueError(f"{self.path.name} takes inputs {self.input_names}; got {sorted(inputs)}")
            items = [(n, inputs[n]) for n in self.input_names]
        else:
            if len(self.input_names) != 1:
                raise TypeError(f"{self.path.name} takes {self.input_names}: pass a dict with these keys")
            items = [(self.input_names[0], inputs)]
        feeds = {}
        for name, value in items:
            validation.require_tensor(name, value)
            array = value.detach().cpu()
            if name == "pixel_values":
                if not array.is_floating_point():
                    raise TypeError(f"pixel_values must be a floating tensor, got {array.dtype}")
                array = array.float()
            else:
                if array.is_floating_point() or array.is_complex():
                    raise TypeError(f"{name} must be an integer tensor, got {array.dtype}")
                array = array.long()
            if array.ndim == 0 or array.shape[0] == 0:
                raise ValueError(f"{name} is empty: shape {tuple(array.shape)}")
            feeds[name] = np.ascontiguousarray(array.numpy())
        return feeds

    def run(self, inputs: Any) -> np.ndarray:
        """inputs (a tensor, or a dict of tensors by input name) -> embeddings (B, E) as a NumPy array."""
        feeds = self._feeds(inputs)
        try:
            return self.session.run([self.output_name], feeds)[0]
        except Exception as e:  # onnxruntime reports shape errors as its own exception types
            shapes = {k: tuple(v.shape) for k, v in feeds.items()}
            raise ValueError(f"{self.path.name} rejected inputs of shapes {shapes}: {e}") from e

    def __call__(self, inputs: Any) -> Tensor:
        """inputs -> embeddings (B, E) float32 torch tensor (computed by onnxruntime)."""
        return torch.from_numpy(np.asarray(self.run(inputs), dtype=np.float32))
