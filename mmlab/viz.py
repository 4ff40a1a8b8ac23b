"""Small plotting helpers for the lessons. Each returns the matplotlib Figure.

matplotlib is imported inside the functions, so `import mmlab.viz` is cheap and
the package works without it.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from mmlab import validation

MARKERS = "os^vD"  # one per group of show_embeddings


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _image(name: str, image, layout: str = "(C, H, W)") -> torch.Tensor:
    """A finite float image (C, H, W), or a stack of them ("(B, C, H, W)"), with 1 or 3 channels."""
    validation.floating_tensor(name, image, layout.count(",") + 1, layout)
    if image.shape[-3] not in (1, 3):
        raise ValueError(f"{name} must be {layout} with 1 or 3 channels, got shape {tuple(image.shape)}")
    return image


def _one_each(name: str, labels: Sequence[str] | None, n: int) -> None:
    """None, or n strings (one per image, row or column)."""
    if labels is not None and len(validation.str_list(name, labels, single=False)) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(labels)}")


def _to_hwc(image: torch.Tensor):
    """(C, H, W) or (H, W) float tensor in [0, 1] -> numpy array for imshow."""
    image = image.detach().float().cpu()
    if image.ndim == 3:
        image = image.permute(1, 2, 0)
        if image.shape[-1] == 1:
            image = image[..., 0]
    return image.clamp(0, 1).numpy()


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.2):
    """A grid of images (B, C, H, W) in [0, 1], C = 1 or 3, with optional titles (one per image)."""
    n = len(_image("images", images, "(B, C, H, W)"))
    _one_each("titles", titles, n)
    ncols = min(validation.positive_int("ncols", ncols), n)
    validation.finite_float("size", size, low=0, low_open=True)
    plt = _plt()
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * bool(titles)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_hwc(images[i]), cmap="gray")
            if titles is not None:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig


def show_patch_grid(image: torch.Tensor, patch_size: int, gap: int = 2):
    """One image (C, H, W) cut into its patches, drawn with white gaps between them; H and W must be
    divisible by `patch_size` (as for `mmlab.preprocess.image.patchify`)."""
    c, h, w = _image("image", image).shape
    validation.positive_int("patch_size", patch_size)
    validation.non_negative_int("gap", gap)
    if h % patch_size or w % patch_size:
        raise ValueError(f"image size {h}x{w} is not divisible by patch_size {patch_size}")
    plt = _plt()
    rows, cols = h // patch_size, w // patch_size
    step = patch_size + gap
    canvas = torch.ones(c, rows * step - gap, cols * step - gap)
    for r in range(rows):
        for q in range(cols):
            patch = image[:, r * patch_size:(r + 1) * patch_size, q * patch_size:(q + 1) * patch_size]
            canvas[:, r * step:r * step + patch_size, q * step:q * step + patch_size] = patch
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    axes[0].imshow(_to_hwc(image), cmap="gray")
    axes[0].set_title(f"{h}x{w} image")
    axes[1].imshow(_to_hwc(canvas), cmap="gray")
    axes[1].set_title(f"{rows * cols} patches of {patch_size}x{patch_size}")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_spectrogram(spec: torch.Tensor, sample_rate: int, hop_length: int, title: str = "", ax=None):
    """A (n_mels, frames) log-mel spectrogram (finite: clamp before taking the log) with time in seconds on
    the x axis."""
    validation.floating_tensor("spec", spec, 2, "(n_mels, frames)")
    validation.positive_int("sample_rate", sample_rate)
    validation.positive_int("hop_length", hop_length)
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 2.5))
    spec = spec.detach().float().cpu()
    seconds = spec.shape[-1] * hop_length / sample_rate
    im = ax.imshow(spec.numpy(), origin="lower", aspect="auto", extent=(0, seconds, 0, spec.shape[0]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    ax.set_title(title, fontsize=9)
    (fig or ax.figure).colorbar(im, ax=ax)
    return fig or ax.figure


def show_similarity(sim: torch.Tensor, row_labels: Sequence[str] | None = None,
                    col_labels: Sequence[str] | None = None, title: str = "cosine similarity"):
    """A heatmap of a (R, C) similarity matrix, e.g. images against captions; labels one per row / column."""
    validation.floating_tensor("sim", sim, 2, "(R, C)")
    _one_each("row_labels", row_labels, sim.shape[0])
    _one_each("col_labels", col_labels, sim.shape[1])
    plt = _plt()
    sim = sim.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(min(8, 1 + 0.35 * sim.shape[1]), min(6, 1 + 0.3 * sim.shape[0])))
    im = ax.imshow(sim.numpy(), cmap="viridis")
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=6)
    if col_labels is not None:
        ax.set_xticks(range(len(col_labels)), col_labels, fontsize=6, rotation=90)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def show_embeddings(features: torch.Tensor, labels: Sequence[int], label_names: Sequence[str] | None = None,
                    markers: Sequence[int] | None = None, title: str = "PCA of embeddings"):
    """Project (N, D) features to 2-D with PCA (SVD of the centred features) and scatter them by label.

    `labels` are class indices (N,), named by `label_names[k]` when given; `markers` optionally gives each
    point a group (e.g. 0 = image, 1 = text), at most 5 groups, each drawn with its own marker.
    """
    validation.floating_tensor("features", features, 2, "(N, D)")
    if features.shape[1] < 2:
        raise ValueError(f"features must have at least 2 columns for a 2-D projection, got {tuple(features.shape)}")
    n = len(features)
    labels = validation.class_indices("labels", labels, n).cpu().numpy()
    if label_names is not None and len(validation.str_list("label_names", label_names, single=False)) <= labels.max():
        raise ValueError(f"label_names has {len(label_names)} names for label {labels.max()}")
    groups = validation.class_indices("markers", markers, n).cpu().numpy() if markers is not None else labels * 0
    if len(set(groups.tolist())) > len(MARKERS):
        raise ValueError(f"markers must form at most {len(MARKERS)} marker groups, got {len(set(groups.tolist()))}")
    plt = _plt()
    x = features.detach().float().cpu()
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()  # (N, 2)
    fig, ax = plt.subplots(figsize=(5, 4))
    cmap = plt.get_cmap("tab10")
    for g, marker in zip(sorted(set(groups.tolist())), MARKERS):
        for k in sorted(set(labels.tolist())):
            sel = (labels == k) & (groups == g)
            name = label_names[k] if (label_names is not None and g == groups.min()) else None
            ax.scatter(xy[sel, 0], xy[sel, 1], s=12, marker=marker, color=cmap(k % 10), label=name, alpha=0.8)
    if label_names is not None:
        ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def show_attention(image: torch.Tensor, attention: torch.Tensor, title: str = "attention"):
    """An image (C, H, W) next to a (gh, gw) attention map over its patches, and the two overlaid."""
    _image("image", image)
    validation.floating_tensor("attention", attention, 2, "(gh, gw)")
    plt = _plt()
    att = attention.detach().float().cpu()
    att = (att - att.min()) / (att.max() - att.min() + 1e-12)
    up = torch.nn.functional.interpolate(att[None, None], size=image.shape[-2:], mode="nearest")[0, 0]
    fig, axes = plt.subplots(1, 3, figsize=(6, 2.2))
    axes[0].imshow(_to_hwc(image), cmap="gray")
    axes[1].imshow(att.numpy(), cmap="magma")
    axes[2].imshow(_to_hwc(image), cmap="gray")
    axes[2].imshow(up.numpy(), cmap="magma", alpha=0.5)
    for ax, t in zip(axes, ("image", title, "overlay")):
        ax.set_title(t, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_video(video: torch.Tensor, title: str = "", size: float = 1.0):
    """Frames of one video (F, C, H, W) side by side."""
    _image("video", video, "(F, C, H, W)")
    fig = show_images(video, titles=[f"t={t}" for t in range(len(video))], ncols=len(video), size=size)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
