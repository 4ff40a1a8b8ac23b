"""mmlab.deploy: ONNX export equal to torch (dynamic batch and length, one file), INT8 and FP16 copies close to
fp32 on a small trained model, and clear errors for bad files and arguments (nothing overwritten by a failed save)."""
import onnx
import pytest
import torch
from torch import nn

from mmlab import deploy
from mmlab.align.model import DualEncoder
from mmlab.align.recipe import ShapesRecipe, train_shapes_dual_encoder
from mmlab.data import ShapesWorld
from mmlab.deploy import OnnxEncoder, OnnxFileError
from mmlab.encoders import VisionTransformer, ViTConfig
from mmlab.evaluate import recall_at_k

TINY = ShapesRecipe(dim=32, depth=1, train_size=500, steps=40, batch_size=64)
EMBED_DIM = 64
N_HELD_OUT = 300


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield train_shapes_dual_encoder(TINY)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    return deploy.export_onnx(trained.model, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def held_out(trained):
    """Unseen Shapes-World scenes ("val" split), 4 captions each, tokenised."""
    data = ShapesWorld("val", size=N_HELD_OUT, with_audio=False).batch(range(N_HELD_OUT))
    captions = [c for caps in data["captions"] for c in caps]
    return data["image"], trained.tokenize(captions), torch.arange(N_HELD_OUT).repeat_interleave(4)


def test_export_writes_two_single_file_models_with_metadata(trained, exported):
    folder = exported["image"].parent
    assert sorted(p.name for p in folder.iterdir()) == ["image_encoder.onnx", "text_encoder.onnx"]  # no .data files
    for kind, path in exported.items():
        model = onnx.load(str(path), load_external_data=False)
        assert not [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [deploy.DEFAULT_OPSET]
        meta = deploy.onnx_metadata(path)
        assert meta["graph"] == kind and meta["model"] == deploy.model_fingerprint(trained.model)
        assert meta["precision"] == "fp32" and int(meta["embed_dim"]) == EMBED_DIM
    assert [i.name for i in onnx.load(str(exported["text"])).graph.input] == ["input_ids", "attention_mask"]
    assert trained.model.training is False  # put back in the mode it was in


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_equals_torch_for_any_batch_and_length(trained, exported, batch):
    g = torch.Generator().manual_seed(batch)
    images = torch.rand(batch, 3, 32, 32, generator=g)
    with torch.no_grad():
        want = trained.model.encode_image(images)
    got = OnnxEncoder(exported["image"])(images)
    assert got.shape == (batch, EMBED_DIM)
    assert (got - want).abs().max() < 1e-5
    assert torch.allclose(got.norm(dim=1), torch.ones(batch), atol=1e-5)
    text = OnnxEncoder(exported["text"])
    for length in (1, 7, TINY.max_length):
        ids = torch.randint(0, len(trained.vocab), (batch, length), generator=g)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, length // 2 + 1:] = 0  # padding in the first row
        inputs = {"input_ids": ids, "attention_mask": mask}
        with torch.no_grad():
            want = trained.model.encode_text(inputs)
        assert (text(inputs) - want).abs().max() < 1e-5, length


def test_export_of_a_model_in_training_mode_restores_it(tmp_path):
    vit = VisionTransformer(ViTConfig(dim=16, depth=1, heads=2))
    with pytest.raises(ValueError, match="text tower .*Identity.* takes no token ids"):
        deploy.export_onnx(DualEncoder(vit, nn.Identity(), 8, text_dim=4), tmp_path)
    assert not list(tmp_path.iterdir())


def test_int8_keeps_retrieval_within_the_bound(trained, exported, held_out, tmp_path):
    """The stated bound (deploy lesson and benchmark): on held-out data R@1 and R@10 in both directions move by at
    most 0.03, and every INT8 embedding keeps a cosine of at least 0.99 with its fp32 embedding."""
    images, tokens, owner = held_out
    fp32 = OnnxEncoder(exported["image"])(images), OnnxEncoder(exported["text"])(tokens)
    q = {k: deploy.quantize_int8(p, tmp_path / f"{k}_int8.onnx") for k, p in exported.items()}
    int8 = OnnxEncoder(q["image"])(images), OnnxEncoder(q["text"])(tokens)
    for a, b in zip(fp32, int8):
        assert (a * b).sum(dim=1).min() > 0.99
    before = recall_at_k(*fp32, ks=(1, 10), text_to_image=owner)
    after = recall_at_k(*int8, ks=(1, 10), text_to_image=owner)
    assert before["t2i@10"] > 0.08  # above twice chance (10 / 300): the model learned something to lose
    for key in before:
        assert abs(after[key] - before[key]) <= 0.03, (key, before, after)
    model = onnx.load(str(q["image"]))
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" in ops and "Conv" in ops and "ConvInteger" not in ops  # Conv stays float
    assert deploy.onnx_metadata(q["image"])["precision"] == "int8"
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4 * TINY.depth  # q, k, v, out (and the MLP) of every block
    assert q["image"].stat().st_size < exported["image"].stat().st_size


def test_fp16_is_close_to_fp32(trained, exported, held_out, tmp_path):
    images, tokens, _ = held_out
    for kind, inputs in (("image", images[:16]), ("text", {k: v[:16] for k, v in tokens.items()})):
        half = deploy.convert_fp16(exported[kind], tmp_path / f"{kind}_fp16.onnx")
        onnx.checker.check_model(onnx.load(str(half)))  # nodes sorted, valid
        diff = (OnnxEncoder(half)(inputs) - OnnxEncoder(exported[kind])(inputs)).abs().max()
        assert diff < 5e-3, (kind, float(diff))
        assert deploy.onnx_metadata(half)["precision"] == "fp16"


def test_torch_dynamic_quantisation_where_available(trained):
    q = deploy.quantize_torch_dynamic(trained.model)
    if q is None:
        pytest.skip("this torch has no torch.ao.quantization.quantize_dynamic")
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert (q.encode_image(images) * trained.model.encode_image(images)).sum(1).min() > 0.98
    assert isinstance(trained.model.image_proj, nn.Linear)  # the original is untouched


# ---- bad files and arguments ---------------------------------------------------------------------------

def test_truncated_or_missing_onnx_is_a_clear_error(exported, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(exported["image"].read_bytes()[:5000])
    for call in (deploy.load_onnx, OnnxEncoder, lambda p: deploy.quantize_int8(p, tmp_path / "q.onnx"),
                 lambda p: deploy.convert_fp16(p, tmp_path / "h.onnx")):
        with pytest.raises(OnnxFileError, match="broken.onnx is truncated or corrupt"):
            call(broken)
    with pytest.raises(OnnxFileError, match="nothing.onnx does not exist"):
        OnnxEncoder(tmp_path / "nothing.onnx")
    with pytest.raises(OnnxFileError, match="is a folder"):
        deploy.load_onnx(tmp_path)
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "h.onnx").exists()


def test_external_data_model_is_refused(exported, tmp_path):
    model = onnx.load(str(exported["image"]))
    onnx.save_model(model, str(tmp_path / "split.onnx"), save_as_external_data=True, size_threshold=0)
    with pytest.raises(OnnxFileError, match="split.onnx keeps .* weights in external data"):
        deploy.load_onnx(tmp_path / "split.onnx")


def test_a_failed_save_leaves_the_old_file(exported, tmp_path, monkeypatch):
    target = tmp_path / "image_int8.onnx"
    target.write_bytes(b"the previous version")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    import onnxruntime.quantization

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        deploy.quantize_int8(exported["image"], target)
    assert target.read_bytes() == b"the previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["image_int8.onnx"]  # no temporary left behind


def test_bad_arguments(trained, exported, tmp_path):
    with pytest.raises(TypeError, match="model must be a mmlab.align.DualEncoder, got Linear"):
        deploy.export_onnx(nn.Linear(2, 2), tmp_path)
    with pytest.raises(ValueError, match=r"opset must be in \[18, "):
        deploy.export_onnx(trained.model, tmp_path, opset=11)
    with pytest.raises(TypeError, match="opset must be an int"):
        deploy.export_onnx(trained.model, tmp_path, opset="18")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir .* must be a folder"):
        deploy.export_onnx(trained.model, tmp_path / "file")
    with pytest.raises(ValueError, match="is the input file"):
        deploy.quantize_int8(exported["image"], exported["image"])
    with pytest.raises(TypeError, match="per_channel must be True or False"):
        deploy.quantize_int8(exported["image"], tmp_path / "q.onnx", per_channel=1)
    text = OnnxEncoder(exported["text"])
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"takes inputs \['input_ids', 'attention_mask'\]"):
        text({"input_ids": ids})
    with pytest.raises(TypeError, match="attention_mask must be an integer tensor, got torch.float32"):
        text({"input_ids": ids, "attention_mask": torch.ones(2, 3)})
    with pytest.raises(TypeError, match="pass a dict"):
        text(ids)
    image = OnnxEncoder(exported["image"])
    with pytest.raises(ValueError, match=r"pixel_values is empty: shape \(0, 3, 32, 32\)"):
        image(torch.rand(0, 3, 32, 32))
    with pytest.raises(ValueError, match="rejected inputs of shapes"):
        image(torch.rand(2, 3, 16, 16))
    with pytest.raises(TypeError, match="pixel_values must be a torch.Tensor"):
        image([[0.0]])


def test_value_checks_are_skipped_while_torch_export_traces():
    """The fix that makes the towers exportable: `on_host` is False under tracing, True in eager code."""
    from mmlab import validation

    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(validation.on_host(x))
            return x * 2

    torch.export.export(Probe(), (torch.rand(2, 3),))
    Probe()(torch.rand(2, 3))
    assert seen == [False, True]
