"""mmlab.search.EmbeddingIndex: exact top-k by cosine, hnsw (faiss) recall against exact, save/load round trips
with identity checks, and clear errors for bad files and inputs (nothing overwritten by a failed save)."""
import numpy as np
import pytest
import torch

from mmlab.search import EmbeddingIndex, IndexFileError


def clustered(n, dim=32, clusters=20, seed=0, spread=0.3):
    """Unit vectors around `clusters` random centres (as embeddings of a few classes are)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=g)
    x = centres[torch.randint(0, clusters, (n,), generator=g)] + spread * torch.randn(n, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def test_exact_search_is_cosine_top_k_best_first():
    x = clustered(500)
    index = EmbeddingIndex(32)
    index.add(x * 3.0, ids=torch.arange(500) + 1000)  # stored normalised: the scale does not matter
    q = clustered(7, seed=1) * 0.5  # other centres: far-away queries still get their true top-k
    scores, ids = index.search(q, k=5)
    cos = torch.nn.functional.normalize(q, dim=1) @ x.T  # (7, 500)
    want_scores, want_rows = cos.topk(5, dim=1)
    torch.testing.assert_close(scores, want_scores)
    assert torch.equal(ids, want_rows + 1000)
    assert (scores[:, :-1] >= scores[:, 1:]).all()
    index.add(x[:3], ids=[7, 8, 9])
    assert len(index) == 503 and index.search(x[:1], 1)[1].item() in (7, 1000)  # its duplicate ties


def test_hnsw_recall_against_exact():
    data = clustered(3200)
    x, q = data[:3000], data[3000:]  # queries from the same distribution, not in the index
    exact, approx = EmbeddingIndex(32), EmbeddingIndex(32, "hnsw", hnsw_m=16, ef_construction=40, ef_search=16)
    exact.add(x)
    approx.add(x)
    truth, found = exact.search(q, 10)[1], approx.search(q, 10)[1]
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10 for a, b in zip(truth, found)])
    assert recall > 0.9, recall


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_save_load_round_trip(kind, tmp_path):
    x = clustered(400)
    index = EmbeddingIndex(32, kind, model_id="sha256:abc", settings={"opset": 18, "precision": "int8"})
    index.add(x, ids=torch.arange(400) * 2)
    before = index.search(x[:20], 5)
    path = index.save(tmp_path / "gallery.safetensors")
    loaded = EmbeddingIndex.load(path, expected_dim=32, expected_model="sha256:abc")
    assert (loaded.kind, loaded.dim, len(loaded), loaded.model_id) == (kind, 32, 400, "sha256:abc")
    assert loaded.settings == {"opset": 18, "precision": "int8"} and loaded.params == index.params
    after = loaded.search(x[:20], 5)
    assert torch.equal(before[1], after[1]) and torch.equal(before[0], after[0])
    loaded.add(x[:2], ids=[1, 3])  # a loaded index keeps growing
    assert len(loaded) == 402


def test_other_model_or_width_is_refused(tmp_path):
    index = EmbeddingIndex(32, model_id="sha256:abc")
    index.add(clustered(10))
    path = index.save(tmp_path / "g.safetensors")
    with pytest.raises(IndexFileError, match=r"g.safetensors was built by model 'sha256:abc'; expected 'sha256:def'"):
        EmbeddingIndex.load(path, expected_model="sha256:def")
    with pytest.raises(IndexFileError, match=r"g.safetensors holds 32-dimensional features; expected 64"):
        EmbeddingIndex.load(path, expected_dim=64)
    with pytest.raises(ValueError, match="queries are 64 wide; this index holds 32-dimensional"):
        index.search(torch.randn(2, 64), 1)


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_corrupt_or_truncated_file_names_it(kind, tmp_path):
    index = EmbeddingIndex(32, kind)
    index.add(clustered(50))
    path = index.save(tmp_path / "g.safetensors")
    data = bytearray(path.read_bytes())
    (tmp_path / "short.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFileError, match="short.safetensors is truncated or corrupt"):
        EmbeddingIndex.load(tmp_path / "short.safetensors")
    data[-5] ^= 0xFF  # one flipped byte in the last tensor
    (tmp_path / "flipped.safetensors").write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="flipped.safetensors is corrupt: tensor .* fails its SHA-256"):
        EmbeddingIndex.load(tmp_path / "flipped.safetensors")
    with pytest.raises(IndexFileError, match="missing.safetensors does not exist"):
        EmbeddingIndex.load(tmp_path / "missing.safetensors")
    import safetensors.torch

    safetensors.torch.save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(IndexFileError, match="other.safetensors is a safetensors file but not an mmlab"):
        EmbeddingIndex.load(tmp_path / "other.safetensors")


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    index = EmbeddingIndex(32)
    index.add(clustered(10))
    path = index.save(tmp_path / "g.safetensors")
    old = path.read_bytes()
    index.add(clustered(5, seed=3))
    import mmlab.deploy.files as files

    def half_written(p):
        p.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(files, "write_bytes_atomic", lambda target, payload: files.write_atomic(target, half_written))
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]
    assert len(EmbeddingIndex.load(path)) == 10


def test_bad_inputs():
    index = EmbeddingIndex(8)
    with pytest.raises(ValueError, match=r"the index is empty \(0 items\)"):
        index.search(torch.randn(1, 8), 1)
    with pytest.raises(ValueError, match=r"features is empty: shape \(0, 8\)"):
        index.add(torch.empty(0, 8))
    index.add(torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"queries is empty: shape \(0, 8\)"):
        index.search(torch.empty(0, 8), 1)
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        index.search(torch.randn(1, 8), 0)
    with pytest.raises(TypeError, match="k must be a positive integer, got float"):
        index.search(torch.randn(1, 8), 2.0)
    with pytest.raises(ValueError, match="k=5 is more than the 4 items"):
        index.search(torch.randn(1, 8), 5)
    with pytest.raises(ValueError, match="queries row 1 is all zeros"):
        index.search(torch.stack([torch.ones(8), torch.zeros(8)]), 1)
    with pytest.raises(ValueError, match="queries contains NaN or inf"):
        index.search(torch.full((1, 8), float("nan")), 1)
    with pytest.raises(ValueError, match="id 2 is already in the index"):
        index.add(torch.randn(1, 8), ids=[2])
    with pytest.raises(ValueError, match="ids must be distinct"):
        index.add(torch.randn(2, 8), ids=[10, 10])
    with pytest.raises(ValueError, match=r"ids must have shape \(3,\)"):
        index.add(torch.randn(3, 8), ids=[10, 11])
    with pytest.raises(ValueError, match="kind must be one of"):
        EmbeddingIndex(8, kind="ivf")
    with pytest.raises(TypeError, match="dim must be a positive integer"):
        EmbeddingIndex("8")
    with pytest.raises(TypeError, match="settings must be JSON-serialisable"):
        EmbeddingIndex(8, settings={"f": object()})
    assert index.search(np.ones((1, 8), dtype=np.float32), 1)[1].shape == (1, 1)  # NumPy queries work too
