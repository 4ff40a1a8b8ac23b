"""Triton contrastive kernels vs an fp64 reference (CPU: Triton interpreter, set up in conftest.py).

Output buffers are poisoned with NaN before every launch (through `launch.OUTPUT_ALLOCATOR`), so an element a
kernel forgets to write fails.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("triton")

from mmlab.align import info_nce as ref_info_nce  # noqa: E402
from mmlab.align import siglip_loss as ref_siglip  # noqa: E402
from mmlab.kernels import Blocks, info_nce, launch, siglip_loss  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# (rtol, atol) of loss and gradients against fp64 math on the same (rounded) inputs
TOL = {torch.float32: (1e-5, 1e-6), torch.float16: (5e-3, 5e-4), torch.bfloat16: (2e-2, 4e-3)}


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    def nan_full(*shape, device=None, dtype=None):
        return torch.full(shape, float("nan"), device=device, dtype=dtype)
    monkeypatch.setattr(launch, "OUTPUT_ALLOCATOR", nan_full)


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
    rows_backward = launch.rows_backward
    monkeypatch.setattr(launch, "rows_backward", lambda *a, **k: launches.append(1) or rows_backward(*a, **k))
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
        monkeypatch.setattr(launch, "rows_forward", boom)
        assert torch.equal(info_nce(x, y, 3.0), ref_info_nce(x, y, 3.0))
        assert torch.equal(siglip_loss(x, y, 3.0, 1.0, backend="auto"), ref_siglip(x, y, 3.0, 1.0))


def test_auto_keeps_the_reference_for_small_batches():
    """auto: kernels only for CUDA tensors above AUTO_MAX_REFERENCE_BATCH rows (the reference was faster below)."""
    class LooksCuda(torch.Tensor):
        is_cuda = True

    def features(rows, dtype=torch.bfloat16):
        return torch.Tensor._make_subclass(LooksCuda, torch.empty(rows, 8, dtype=dtype))

    limit = launch.AUTO_MAX_REFERENCE_BATCH
    assert launch.use_triton("auto", features(limit + 1))
    assert not launch.use_triton("auto", features(limit))
    assert not launch.use_triton("auto", features(limit + 1, torch.float64))
    assert not launch.use_triton("auto", torch.empty(limit + 1, 8))  # a CPU tensor
    assert launch.use_triton("triton", features(16))  # explicit choice wins


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
    with pytest.raises(TypeError, match="Blocks.dg must be a positive integer"):
        Blocks(dg=32.0)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            info_nce(x, y, 1.0, backend="triton")


def test_launchers_take_named_arguments():
    """The launch layer's API: tensors positional, the rest by name; what each loss needs is checked."""
    x, y = _inputs(21, 10, torch.float32, seed=9)
    lse, diag = launch.rows_forward(x, y, loss=launch.INFO_NCE, scale=2.0, blocks=SMALL, diagonal=True)
    logits = 2.0 * x.double() @ y.double().T
    torch.testing.assert_close(lse.double(), torch.logsumexp(logits, dim=1))
    torch.testing.assert_close(diag.double(), logits.diagonal())
    with pytest.raises(TypeError, match="positional"):
        launch.rows_forward(x, y, launch.INFO_NCE, 2.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        launch.rows_forward(x, y, loss="clip", scale=2.0)
    with pytest.raises(TypeError, match="needs bias"):
        launch.rows_forward(x, y, loss=launch.SIGLIP, scale=2.0)
    with pytest.raises(TypeError, match="needs lse_a and lse_b"):
        launch.rows_backward(x, y, loss=launch.INFO_NCE, scale=2.0, coef=1.0, lse_a=lse)


@pytest.mark.skipif(not launch.interpreting(), reason="watches the pointer arithmetic of the interpreted kernels")
def test_offsets_that_grow_with_the_batch_are_int64(monkeypatch):
    """At B = 2**20 rows of D = 4096 the last feature element sits at 2**32 - 1, which int32 offsets would wrap.
    No CPU test holds such features, so this runs the real kernels on small ones and records every offset the
    interpreter adds to a pointer into the (B, D) features or gradients: an int32 offset may span one tile of rows
    (BLOCK·D elements, plus the masked lanes past a row's end), any offset beyond that grows with B: int64."""
    from triton.runtime import interpreter

    offsets, matrices = [], []
    add = interpreter.InterpreterBuilder.create_addptr

    def record(self, ptr, offset):
        offsets.append((int(ptr.data.flat[0]), offset.data.dtype, int(np.abs(offset.data).max())))
        return add(self, ptr, offset)

    allocate = launch.OUTPUT_ALLOCATOR

    def allocate_recorded(*shape, device=None, dtype=None):
        out = allocate(*shape, device=device, dtype=dtype)
        if len(shape) == 2:  # the gradients
            matrices.append(out)
        return out

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_addptr", record)
    monkeypatch.setattr(launch, "OUTPUT_ALLOCATOR", allocate_recorded)
    b, d = 70, 24  # 5 programs of 16 rows
    x, y = (t.requires_grad_(True) for t in _inputs(b, d, torch.float32, seed=10))
    (info_nce(x, y, 3.0, backend="triton", blocks=SMALL)
     + siglip_loss(x, y, 3.0, -1.0, backend="triton", blocks=SMALL)).backward()
    assert len(matrices) == 4  # dx and dy of each loss
    spans = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in [x, y, *matrices]]
    into_features = [(dtype, top) for address, dtype, top in offsets
                     if any(start <= address < end for start, end in spans)]
    tile = max(SMALL.m, SMALL.n) * d + max(SMALL.d, SMALL.dg)
    beyond_a_tile = [dtype for dtype, top in into_features if top > tile]
    assert beyond_a_tile, "no offset beyond the first tile seen: the watch does not see the kernels' addressing"
    assert all(np.iinfo(dtype).max >= 2**20 * 4096 - 1 for dtype in beyond_a_tile), set(beyond_a_tile)


@pytest.mark.skipif(not torch.cuda.is_available() or launch.interpreting(), reason="needs the real kernels on CUDA")
def test_no_host_sync_on_cuda():
    """Checks, launches and the backward never wait for the GPU (scale, bias and grad_out stay on the device)."""
    x, y = (t.requires_grad_(True) for t in _inputs(300, 64, torch.bfloat16, seed=11))
    scale = torch.tensor(10.0, device=DEVICE, requires_grad=True)
    bias = torch.tensor(-5.0, device=DEVICE, requires_grad=True)
    mask = torch.eye(300, dtype=torch.bool, device=DEVICE)
    losses = (lambda: info_nce(x, y, scale, backend="triton"),
              lambda: info_nce(x, y, scale, positive_mask=mask, backend="triton"),
              lambda: siglip_loss(x, y, scale, bias, backend="triton"))
    for loss in losses:
        loss().backward()  # compiles the kernels first
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for loss in losses:
            loss().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
