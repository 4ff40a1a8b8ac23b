"""Small plotting helpers for the lessons. Each returns the matplotlib Figure.

matplotlib is imported inside the functions, so `import mmlab.viz` is cheap and
the package works without it.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _to_hwc(image: torch.Tensor):
    """(C, H, W) or (H, W) float tensor in [0, 1] -> numpy array for imshow."""
    image = image.detach().float().cpu()
    if image.ndim == 3:
        image = image.permute(1, 2, 0)
        if image.shape[-1] == 1:
            image = image[..., 0]
    return image.clamp(0, 1).numpy()


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8, size: float = 1.2):
    """A grid of images (B, C, H, W) in [0, 1] with optional titles."""
    plt = _plt()
    n = len(images)
    ncols = min(ncols, n)
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
    """One image (C, H, W) cut into its patches, drawn with white gaps between them."""
    plt = _plt()
    c, h, w = image.shape
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
    """A (n_mels, frames) log-mel spectrogram with time in seconds on the x axis."""
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
    """A heatmap of a (R, C) similarity matrix, e.g. images against captions."""
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
    """Project (N, D) features to 2-D with PCA (torch.pca_lowrank, centred) and scatter them by label.

    `markers` optionally gives each point a group (e.g. 0 = image, 1 = text) drawn with its own marker.
    """
    plt = _plt()
    x = features.detach().float().cpu()
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).numpy()  # (N, 2)
    labels = torch.as_tensor(labels).cpu().numpy()
    groups = torch.as_tensor(markers).cpu().numpy() if markers is not None else labels * 0
    fig, ax = plt.subplots(figsize=(5, 4))
    cmap = plt.get_cmap("tab10")
    for g, marker in zip(sorted(set(groups.tolist())), "os^vD"):
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
    fig = show_images(video, titles=[f"t={t}" for t in range(len(video))], ncols=len(video), size=size)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
