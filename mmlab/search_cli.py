"""`python -m mmlab search`: text and image search over a Shapes-World gallery with a small dual encoder.

    python -m mmlab search                                   # trains a small model (about a minute), one query
    python -m mmlab search --text "a small red circle" --text "a big blue square" --image 3 --k 5
    python -m mmlab search --save-checkpoint model.safetensors --index gallery.safetensors   # keep both
    python -m mmlab search --checkpoint model.safetensors --index gallery.safetensors --text "a red triangle"

The model is trained here (`mmlab.align.recipe`, --steps) unless --checkpoint names one saved by --save-checkpoint
(or `mmlab.align.recipe.save_shapes_model`). Gallery features are computed once and kept in an
`mmlab.search.EmbeddingIndex` with the model's fingerprint; --index PATH saves it, and a later run with the same
model loads it instead of encoding again (an index built by another model or width is refused). Text queries
are captions, image queries are gallery positions (the hit at score 1.00 is the image itself). Prints the top
--k hits with their cosine similarity and writes an image grid (--grid, PNG): one row per query.

Nothing is downloaded. A bad argument is one line naming it and exit status 2, before any work starts.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from mmlab import validation

MAX_GALLERY = 100_000


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mmlab search", description=__doc__.splitlines()[0])
    p.add_argument("--text", action="append", default=[], help="a caption to search for (repeatable)")
    p.add_argument("--image", action="append", type=int, default=[], help="a gallery position to search with")
    p.add_argument("--k", type=int, default=5, help="hits per query")
    p.add_argument("--gallery-size", type=int, default=1000, help="Shapes-World 'val' scenes in the gallery")
    p.add_argument("--kind", choices=("exact", "hnsw"), default="exact", help="index kind")
    p.add_argument("--checkpoint", type=Path, help="a model saved by --save-checkpoint (else one is trained)")
    p.add_argument("--steps", type=int, default=150, help="training steps when no --checkpoint is given")
    p.add_argument("--save-checkpoint", type=Path, help="write the trained model here")
    p.add_argument("--index", type=Path, help="index file: loaded if it exists (same model), else written")
    p.add_argument("--grid", type=Path, default=Path("search_results.png"), help="PNG grid of the hits")
    p.add_argument("--seed", type=int, default=0)
    return p


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every argument checked before work starts; a bad one -> parser.error (one line, exit status 2)."""
    try:
        validation.int_in_range("--gallery-size", args.gallery_size, 1, MAX_GALLERY)
        validation.int_in_range("--k", args.k, 1, args.gallery_size)
        validation.positive_int("--steps", args.steps)
        validation.non_negative_int("--seed", args.seed)
        for i in args.image:
            validation.int_in_range("--image", i, 0, args.gallery_size - 1)
        for t in args.text:
            if not t.strip():
                raise ValueError("--text must not be empty")
        if args.checkpoint is not None:
            if not args.checkpoint.is_file():
                raise ValueError(f"--checkpoint {str(args.checkpoint)!r} is not a file")
            if args.save_checkpoint is not None:
                raise ValueError("--save-checkpoint saves a model trained here; it cannot go with --checkpoint")
        else:
            if args.save_checkpoint is not None:
                validation.writable_path("--save-checkpoint", args.save_checkpoint)
        if args.index is not None and not args.index.is_file():
            validation.writable_path("--index", args.index)
        if args.grid.suffix.lower() != ".png":
            raise ValueError(f"--grid must name a .png file, got {str(args.grid)!r}")
        validation.writable_path("--grid", args.grid)
    except (TypeError, ValueError) as err:
        parser.error(str(err))


def describe(data: dict, i: int) -> str:
    from mmlab.data.shapes_world import COLORS, SHAPES, SIZES

    return f"{SIZES[int(data['size'][i])]} {COLORS[int(data['color'][i])]} {SHAPES[int(data['shape'][i])]}"


def write_grid(path: Path, rows: list[tuple[str, torch.Tensor | None, torch.Tensor, torch.Tensor]],
               gallery: torch.Tensor) -> Path:
    """One row per query: the query image (or a blank tile under a text query), then its hits with scores."""
    from mmlab import viz
    from mmlab.deploy.files import write_atomic

    k = len(rows[0][2])
    tiles, titles = [], []
    for label, query_image, scores, ids in rows:
        tiles.append(torch.zeros_like(gallery[0]) if query_image is None else query_image)
        titles.append(label[:22])
        tiles += [gallery[int(i)] for i in ids]
        titles += [f"#{int(i)} {float(s):.2f}" for s, i in zip(scores, ids)]
    fig = viz.show_images(torch.stack(tiles), titles=titles, ncols=k + 1, size=1.1)
    import matplotlib.pyplot as plt

    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    check_arguments(parser, args)
    if not args.text and not args.image:
        args.text = ["a small red circle"]

    from mmlab.align.recipe import ShapesRecipe, load_shapes_model, save_shapes_model, train_shapes_dual_encoder
    from mmlab.checkpoint import CheckpointError
    from mmlab.data import ShapesWorld
    from mmlab.deploy import model_fingerprint
    from mmlab.search import EmbeddingIndex, IndexFileError

    torch.manual_seed(args.seed)
    if args.checkpoint is not None:
        try:
            trained = load_shapes_model(args.checkpoint)
        except (CheckpointError, ValueError) as err:
            parser.error(f"--checkpoint: {err}")
        print(f"model: loaded {args.checkpoint}")
    else:
        t0 = time.perf_counter()
        trained = train_shapes_dual_encoder(ShapesRecipe(steps=args.steps, seed=args.seed))
        print(f"model: trained {args.steps} steps in {time.perf_counter() - t0:.0f} s "
              f"(loss {trained.history['loss'][0]:.2f} -> {trained.history['loss'][-1]:.2f})")
        if args.save_checkpoint is not None:
            print(f"model: saved to {save_shapes_model(args.save_checkpoint, trained)}")
    model, fingerprint = trained.model, model_fingerprint(trained.model)
    data = ShapesWorld("val", size=args.gallery_size, seed=args.seed, with_audio=False).batch(range(args.gallery_size))
    gallery_settings = {"encoder": "torch fp32", "gallery": "ShapesWorld val", "size": args.gallery_size,
                        "seed": args.seed}
    index = None
    if args.index is not None and args.index.is_file():
        try:
            index = EmbeddingIndex.load(args.index, expected_dim=model.embed_dim, expected_model=fingerprint)
        except IndexFileError as err:
            parser.error(f"--index: {err}")
        if index.settings != gallery_settings:
            parser.error(f"--index {str(args.index)!r} holds another gallery ({index.settings}); "
                         f"this run asks for {gallery_settings}")
        print(f"index: loaded {len(index)} items from {args.index} ({index.kind})")
    if index is None:
        index = EmbeddingIndex(model.embed_dim, args.kind, model_id=fingerprint, settings=gallery_settings)
        with torch.no_grad():
            for start in range(0, args.gallery_size, 256):
                index.add(model.encode_image(data["image"][start:start + 256]))
        print(f"index: {len(index)} gallery images encoded ({index.kind}, model {fingerprint})")
        if args.index is not None:
            print(f"index: saved to {index.save(args.index)}")

    rows = []
    with torch.no_grad():
        for text in args.text:
            scores, ids = index.search(model.encode_text(trained.tokenize([text])), args.k)
            rows.append((f'"{text}"', None, scores[0], ids[0]))
        for i in args.image:
            scores, ids = index.search(model.encode_image(data["image"][i:i + 1]), args.k)
            rows.append((f"image #{i} ({describe(data, i)})", data["image"][i], scores[0], ids[0]))
    for label, _, scores, ids in rows:
        print(f"\n{label}")
        for rank, (s, i) in enumerate(zip(scores, ids), 1):
            print(f"  {rank}. #{int(i):<5d} {float(s):.3f}  {describe(data, int(i))}")
    print(f"\ngrid: {write_grid(args.grid, rows, data['image'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
