"""Triton contrastive kernels vs an fp64 reference (CPU: Triton interpreter, set up in conftest.py).

Output buffers are poisoned with NaN before every launch, so an element a kernel forgets to write fails.
"""
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from mmlab.align import info_nce as ref_info_nce, siglip_loss as ref_siglip  # noqa: E402
from mmlab.kernels import Blocks, _launch, info_nce, siglip_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (rtol, atol) of loss and gradients against fp64 math on the same (rounded) inputs
TOL = {torch.float32: (1e-5, 1e-6), torch.float16: (5e-3, 5e-4), torch.bfloat16: (2e-2, 4e-3)}


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    def nan_empty(*shape, device=None, dtype=None):
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    monkeypatch.setattr(_launch, "_empty", nan_empty)


def _inputs(b, d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(b, d, generator=g), dim=1).to(DEVICE, dtype)
    y = F.normalize(torch.randn(b, d, generator=g), dim=1).to(DEVICE, dtype)
    return x, y


def _grads(fn, x, y, scalars):
    x = x.detach().clone().requires_grad_(True)
    y = y.detach().clone().requires_grad_(True)
    scalars = [s.detach().clone().requires_grad_(True) for s in scalars]
    loss = fn(x, y, *scalars)
    loss.backward()
    return loss.detach(), [x.grad, y.grad] + [s.grad for s in scalars]


def _compare(kernel_fn, ref_fn, x, y, scalars, dtype):
    got, got_grads = _grads(kernel_fn, x, y, scalars)
    want, want_grads = _grads(ref_fn, x.double(), y.double(), [s.double() for s in scalars])
    rtol, atol = TOL[dtype]
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=atol)
    assert got_grads[0].dtype == dtype and got_grads[1].dtype == dtype
    for g, w in zip(got_grads, want_grads):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double().cpu(), w.cpu(), rtol=rtol, atol=atol)


SMALL = Blocks(m=16, n=16, d=32, dg=32, num_warps=1)


@pytest.mark.parametrize("b, d, dtype", [(47, 33, torch.float32), (47, 33, torch.float16),
                                         (47, 33, torch.bfloat16), (129, 96, torch.float32),
                                         (129, 96, torch.bfloat16)])
def test_info_nce_forward_and_grads(b, d, dtype):
    x, y = _inputs(b, d, dtype)
    scale = torch.tensor(9.0, device=DEVICE)
    _compare(lambda a, t, s: info_nce(a, t, s, backend="triton", blocks=SMALL), ref_info_nce, x, y, [scale], dtype)


@pytest.mark.parametrize("b, d, dtype", [(47, 33, torch.float32), (47, 33, torch.bfloat16),
                                         (129, 96, torch.float16)])
def test_siglip_forward_and_grads(b, d, dtype):
    x, y = _inputs(b, d, dtype, seed=1)
    scale, bias = torch.tensor(10.0, device=DEVICE), torch.tensor(-4.0, device=DEVICE)
    _compare(lambda a, t, s, c: siglip_loss(a, t, s, c, backend="triton", blocks=SMALL), ref_siglip,
             x, y, [scale, bias], dtype)


def test_info_nce_positive_mask_through_kernel():
    x, y = _inputs(40, 20, torch.float32, seed=2)
    mask = torch.eye(40, dtype=torch.bool, device=DEVICE)
    mask[0, 5] = mask[5, 0] = mask[7, 9] = mask[30, 31] = True
    scale = torch.tensor(5.0, device=DEVICE)
    _compare(lambda a, t, s: info_nce(a, t, s, positive_mask=mask, backend="triton", blocks=SMALL),
             lambda a, t, s: ref_info_nce(a, t, s, positive_mask=mask), x, y, [scale], torch.float32)


def test_wide_features_and_default_blocks():
    x, y = _inputs(20, 1030, torch.float32, seed=3)  # d > 1024, not a multiple of any block
    scale = torch.tensor(3.0, device=DEVICE)
    _compare(lambda a, t, s: info_nce(a, t, s, backend="triton", blocks=Blocks(m=16, n=16, d=256, dg=512)),
             ref_info_nce, x, y, [scale], torch.float32)
    x, y = _inputs(17, 24, torch.float32, seed=4)
    torch.testing.assert_close(info_nce(x, y, 2.0, backend="triton"), ref_info_nce(x, y, 2.0))  # default blocks


def test_only_o_b_extra_is_saved_for_backward():
    """Beyond the features themselves, autograd keeps O(B) floats: no (B, D) float32 copies, no (B, B) tiles."""
    b = 40
    x, y = (t.requires_grad_(True) for t in _inputs(b, 24, torch.bfloat16, seed=7))
    scale = torch.tensor(5.0, device=DEVICE, requires_grad=True)
    for loss_fn in (lambda: info_nce(x, y, scale, backend="triton", blocks=SMALL),
                    lambda: siglip_loss(x, y, scale, -1.0, backend="triton", blocks=SMALL)):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            loss = loss_fn()
        extra = [t for t in saved if t.data_ptr() not in (x.data_ptr(), y.data_ptr())]
        assert sum(t.numel() for t in extra) <= 2 * b + 2, [(tuple(t.shape), t.dtype) for t in extra]
        loss.backward()  # and the saved state suffices for the gradients
        assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


@pytest.mark.parametrize("loss", ["info_nce", "siglip"])
def test_locked_tower_launches_one_backward(loss, monkeypatch):
    """Text features without a gradient (LiT): one backward launch, and the other gradients still right."""
    launches = []
    rows_backward = _launch.rows_backward
    monkeypatch.setattr(_launch, "rows_backward", lambda *a, **k: launches.append(1) or rows_backward(*a, **k))
    x, y = _inputs(37, 20, torch.float32, seed=8)
    ref = ref_info_nce if loss == "info_nce" else (lambda a, t, s: ref_siglip(a, t, s, -3.0))
    kernel = ((lambda a, t, s: info_nce(a, t, s, backend="triton", blocks=SMALL)) if loss == "info_nce"
              else (lambda a, t, s: siglip_loss(a, t, s, -3.0, backend="triton", blocks=SMALL)))
    for trainable in (0, 1):  # image tower trained, text locked; then the other way round
        grads = []
        for fn in (kernel, ref):
            feats = [x.clone(), y.clone()]
            feats[trainable].requires_grad_(True)
            scale = torch.tensor(6.0, device=DEVICE, requires_grad=True)
            fn(*feats, scale).backward()
            grads.append((feats[trainable].grad, scale.grad))
        for got, want in zip(*grads):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert len(launches) == 2  # one per kernel backward above
    kernel(x.requires_grad_(True), y.requires_grad_(True), 6.0).backward()
    assert len(launches) == 4  # both towers trained: two


def test_float_scalars_and_non_contiguous_inputs():
    x, y = _inputs(33, 24, torch.float32, seed=5)
    xt = x.T.contiguous().T  # same values, transposed strides
    assert not xt.is_contiguous()
    torch.testing.assert_close(info_nce(xt, y, 4.0, backend="triton", blocks=SMALL), ref_info_nce(x, y, 4.0))
    torch.testing.assert_close(siglip_loss(xt, y, 4.0, -2.0, backend="triton", blocks=SMALL),
                               ref_siglip(x, y, 4.0, -2.0))


def test_torch_backend_and_auto_dispatch(monkeypatch):
    x, y = _inputs(9, 8, torch.float32, seed=6)
    assert torch.equal(info_nce(x, y, 3.0, backend="torch"), ref_info_nce(x, y, 3.0))
    assert torch.equal(siglip_loss(x, y, 3.0, 1.0, backend="torch"), ref_siglip(x, y, 3.0, 1.0))
    if DEVICE == "cpu":
        def boom(*args, **kwargs):
            raise AssertionError("auto must not launch a kernel on a CPU")
        monkeypatch.setattr(_launch, "rows_forward", boom)
        assert torch.equal(info_nce(x, y, 3.0), ref_info_nce(x, y, 3.0))
        assert torch.equal(siglip_loss(x, y, 3.0, 1.0, backend="auto"), ref_siglip(x, y, 3.0, 1.0))


def test_auto_keeps_the_reference_for_small_batches():
    """auto: kernels only for CUDA tensors above AUTO_MAX_REFERENCE_BATCH rows (the reference was faster below)."""
    class LooksCuda(torch.Tensor):
        is_cuda = True

    def features(rows, dtype=torch.bfloat16):
        return torch.Tensor._make_subclass(LooksCuda, torch.empty(rows, 8, dtype=dtype))

    limit = _launch.AUTO_MAX_REFERENCE_BATCH
    assert _launch.use_triton("auto", features(limit + 1))
    assert not _launch.use_triton("auto", features(limit))
    assert not _launch.use_triton("auto", features(limit + 1, torch.float64))
    assert not _launch.use_triton("auto", torch.empty(limit + 1, 8))  # a CPU tensor
    assert _launch.use_triton("triton", features(16))  # explicit choice wins


def test_errors(monkeypatch):
    x, y = _inputs(8, 4, torch.float32)
    with pytest.raises(TypeError, match="dtype mismatch"):
        info_nce(x, y.half(), 1.0, backend="triton")
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        siglip_loss(x.double(), y.double(), 1.0, 0.0, backend="triton")
    with pytest.raises(ValueError, match="batch mismatch"):
        info_nce(x, y[:5], 1.0, backend="triton")
    with pytest.raises(ValueError, match="width mismatch"):
        siglip_loss(x, y[:, :3], 1.0, 0.0, backend="triton")
    with pytest.raises(ValueError, match="positive"):
        info_nce(x, y, -1.0, backend="triton")
    with pytest.raises(ValueError, match="NaN or inf"):
        info_nce(x, torch.full_like(y, float("nan")), 1.0, backend="triton")
    with pytest.raises(ValueError, match="backend must be"):
        info_nce(x, y, 1.0, backend="cuda")
    with pytest.raises(ValueError, match="power of two"):
        Blocks(m=24)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            info_nce(x, y, 1.0, backend="triton")
