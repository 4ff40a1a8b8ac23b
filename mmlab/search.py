"""An embedding index: gallery features computed once, searched by cosine similarity, saved with the identity
of the model that made them.

    index = EmbeddingIndex(64, kind="exact", model_id=model_fingerprint(model))
    index.add(model.encode_image(gallery))                   # ids 0..N-1 unless given
    scores, ids = index.search(model.encode_text(tokens), k=5)  # (Q, 5) each, best first
    index.save("gallery.safetensors")
    index = EmbeddingIndex.load("gallery.safetensors", expected_dim=64, expected_model=model_fingerprint(model))

Kinds:
- "exact": every query against every item, one matrix product per block of queries, then top-k;
- "hnsw": a Hierarchical Navigable Small World graph (Malkov & Yashunin, 2018) from faiss (faiss-cpu, imported
  only when used), on inner products of the normalised features. Approximate: its recall@k against "exact"
  depends on `hnsw_m` (links per node), `ef_construction` and `ef_search` (candidate list sizes).

Features are L2-normalised when added and queries when searched, so inner product = cosine similarity. The file
is safetensors: "features" (N, D) float32, "ids" (N,) int64 and, for "hnsw", the serialised faiss graph; the JSON
metadata holds the kind, its parameters, `model_id`, `settings` (e.g. the export settings of the encoder that made
the features) and a SHA-256 digest of every tensor, checked on load. Saving writes a temporary file and renames it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import Tensor

from mmlab import validation

KINDS = ("exact", "hnsw")
FORMAT = "mmlab_embedding_index"
VERSION = "1"
_BLOCK = 1 << 24  # scores computed per block of queries: at most this many (query, item) pairs at once


class IndexFileError(ValueError):
    """An index file is missing, truncated, corrupt, not an mmlab index, or of another model or width."""


def _as_features(name: str, x: Any, dim: int) -> Tensor:
    """A float32 CPU (N, dim) tensor, finite, each row with a non-zero norm, normalised to unit length."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    x = validation.features(name, x).detach().to("cpu", torch.float32)
    if x.shape[1] != dim:
        raise ValueError(f"{name} are {x.shape[1]} wide; this index holds {dim}-dimensional features")
    norms = x.norm(dim=1)
    zero = (norms == 0).nonzero().flatten()
    if zero.numel():
        raise ValueError(f"{name} row {int(zero[0])} is all zeros: it has no direction to compare by cosine")
    return (x / norms[:, None]).contiguous()


def _digest(t: Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


class EmbeddingIndex:
    """A searchable set of unit-norm `dim`-dimensional features with int64 ids; see the module doc."""

    def __init__(self, dim: int, kind: str = "exact", *, model_id: str | None = None,
                 settings: dict[str, Any] | None = None, hnsw_m: int = 32, ef_construction: int = 40,
                 ef_search: int = 64):
        self.dim = validation.positive_int("dim", dim)
        self.kind = validation.one_of("kind", kind, KINDS)
        if model_id is not None and (not isinstance(model_id, str) or not model_id):
            raise TypeError(f"model_id must be a non-empty str or None, got {type(model_id).__name__} {model_id!r}")
        self.model_id = model_id
        if settings is not None and not isinstance(settings, dict):
            raise TypeError(f"settings must be a dict or None, got {type(settings).__name__}")
        self.settings = dict(settings or {})
        try:
            json.dumps(self.settings)
        except (TypeError, ValueError) as e:
            raise TypeError(f"settings must be JSON-serialisable (str, numbers, lists, dicts): {e}") from None
        self.params = {"hnsw_m": validation.positive_int("hnsw_m", hnsw_m),
                       "ef_construction": validation.positive_int("ef_construction", ef_construction),
                       "ef_search": validation.positive_int("ef_search", ef_search)}
        self.features = torch.empty(0, dim)  # (N, D) unit norm
        self.ids = torch.empty(0, dtype=torch.int64)  # (N,)
        self._faiss = self._new_faiss() if kind == "hnsw" else None

    def _new_faiss(self):
        import faiss

        graph = faiss.IndexHNSWFlat(self.dim, self.params["hnsw_m"], faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.params["ef_construction"]
        return graph

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Bytes the index holds: features and ids, plus for "hnsw" faiss's own copy of the vectors and its graph
        (the size of its serialised form, which is those arrays)."""
        own = self.features.nbytes + self.ids.nbytes
        if self._faiss is None:
            return own
        import faiss

        return own + int(faiss.serialize_index(self._faiss).nbytes)

    def __repr__(self) -> str:
        return f"EmbeddingIndex(dim={self.dim}, kind={self.kind!r}, items={len(self)}, model_id={self.model_id!r})"

    def add(self, features: Tensor | np.ndarray, ids: Tensor | np.ndarray | list[int] | None = None) -> None:
        """Add (N, dim) features (normalised here) with ids (N,) (default: len(self) .. len(self) + N - 1).
        An id already in the index, or twice in `ids`, is a ValueError."""
        x = _as_features("features", features, self.dim)
        if ids is None:
            new = torch.arange(len(self), len(self) + len(x), dtype=torch.int64)
        else:
            new = validation.class_indices("ids", ids.detach().cpu() if isinstance(ids, Tensor) else ids, len(x))
            if len(torch.unique(new)) != len(new):
                raise ValueError("ids must be distinct; some id appears twice")
        clash = np.intersect1d(new.numpy(), self.ids.numpy())
        if clash.size:
            raise ValueError(f"id {int(clash[0])} is already in the index")
        if self._faiss is not None:
            self._faiss.add(x.numpy())
        self.features = torch.cat([self.features, x])
        self.ids = torch.cat([self.ids, new])

    def search(self, queries: Tensor | np.ndarray, k: int) -> tuple[Tensor, Tensor]:
        """Top-k items by cosine similarity for each of Q queries (Q, dim): (scores (Q, k) float32, ids (Q, k)
        int64), best first. k must be in [1, len(self)]; an empty index or empty queries is a ValueError."""
        k = validation.positive_int("k", k)
        if len(self) == 0:
            raise ValueError("the index is empty (0 items): add features before searching")
        if k > len(self):
            raise ValueError(f"k={k} is more than the {len(self)} items in the index")
        q = _as_features("queries", queries, self.dim)
        if self._faiss is not None:
            self._faiss.hnsw.efSearch = max(self.params["ef_search"], k)
            scores, rows = self._faiss.search(q.numpy(), k)
            scores, rows = torch.from_numpy(scores), torch.from_numpy(rows)
            missing = rows < 0  # fewer than k reached; pad with the worst score, id -1
            rows = rows.clamp_min(0)
            ids = self.ids[rows].masked_fill(missing, -1)
            return scores.masked_fill(missing, float("-inf")), ids
        block = max(1, _BLOCK // len(self))
        scores, rows = [], []
        for start in range(0, len(q), block):
            s, r = (q[start:start + block] @ self.features.T).topk(k, dim=1)  # (b, N) -> (b, k)
            scores.append(s)
            rows.append(r)
        rows = torch.cat(rows)
        return torch.cat(scores), self.ids[rows]

    # ---- files ---------------------------------------------------------------------------------------

    def _tensors(self) -> dict[str, Tensor]:
        tensors = {"features": self.features.contiguous(), "ids": self.ids.contiguous()}
        if self._faiss is not None:
            import faiss

            tensors["faiss"] = torch.from_numpy(faiss.serialize_index(self._faiss).copy())
        return tensors

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to `path` (safetensors; atomic: a failed save leaves an older file intact)."""
        from mmlab.deploy.files import write_bytes_atomic

        path = validation.writable_path("path", path)
        tensors = self._tensors()
        header = {"format": FORMAT, "version": VERSION, "kind": self.kind, "dim": self.dim, "params": self.params,
                  "model_id": self.model_id, "settings": self.settings,
                  "sha256": {name: _digest(t) for name, t in tensors.items()}}
        payload = safetensors.torch.save(tensors, metadata={FORMAT: json.dumps(header)})
        return write_bytes_atomic(path, payload)

    @classmethod
    def load(cls, path: str | os.PathLike, expected_dim: int | None = None,
             expected_model: str | None = None) -> EmbeddingIndex:
        """Read an index written by `save`. With `expected_dim` / `expected_model`, an index of another width or
        made by another model (another `model_id`) is an IndexFileError naming the file and both values; so is a
        missing, truncated or corrupt file (each tensor's SHA-256 is checked)."""
        path = validation.as_path("path", path)
        if expected_dim is not None:
            validation.positive_int("expected_dim", expected_dim)
        if expected_model is not None and not isinstance(expected_model, str):
            raise TypeError(f"expected_model must be a str, got {type(expected_model).__name__}")
        if path.is_dir():
            raise IndexFileError(f"index path {path} is a folder, not a file")
        if not path.is_file():
            raise IndexFileError(f"index file {path} does not exist")
        try:
            with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
                metadata = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except Exception as e:  # safetensors raises its own errors for a bad header or a short file
            raise IndexFileError(f"index file {path} is truncated or corrupt ({path.stat().st_size} bytes): "
                                 f"{e}") from e
        if FORMAT not in metadata:
            raise IndexFileError(f"{path} is a safetensors file but not an mmlab embedding index")
        try:
            header = json.loads(metadata[FORMAT])
            digests, kind, dim = header["sha256"], header["kind"], int(header["dim"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise IndexFileError(f"index file {path} has corrupt metadata: {e}") from e
        if header.get("version") != VERSION:
            raise IndexFileError(f"index file {path} has version {header.get('version')!r}; this mmlab reads "
                                 f"{VERSION!r}")
        for name, t in tensors.items():
            if digests.get(name) != _digest(t):
                raise IndexFileError(f"index file {path} is corrupt: tensor {name!r} fails its SHA-256 check")
        if expected_dim is not None and dim != expected_dim:
            raise IndexFileError(f"index file {path} holds {dim}-dimensional features; expected {expected_dim} "
                                 "(built with another embedding width)")
        if expected_model is not None and header.get("model_id") != expected_model:
            raise IndexFileError(f"index file {path} was built by model {header.get('model_id')!r}; expected "
                                 f"{expected_model!r} (another model's features are not comparable)")
        index = cls(dim, kind, model_id=header.get("model_id"), settings=header.get("settings"), **header["params"])
        features, ids = tensors.get("features"), tensors.get("ids")
        if features is None or ids is None or features.shape != (len(ids), dim) or ids.dtype != torch.int64:
            raise IndexFileError(f"index file {path} is corrupt: features/ids missing or of the wrong shape")
        index.features, index.ids = features.float(), ids
        if kind == "hnsw":
            import faiss

            if "faiss" not in tensors:
                raise IndexFileError(f"index file {path} is corrupt: an hnsw index without its graph")
            index._faiss = faiss.deserialize_index(tensors["faiss"].numpy())
            if index._faiss.ntotal != len(ids) or index._faiss.d != dim:
                raise IndexFileError(f"index file {path} is corrupt: its graph holds {index._faiss.ntotal} items of "
                                     f"width {index._faiss.d}, the features {len(ids)} of width {dim}")
        return index
