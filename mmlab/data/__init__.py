"""Offline, deterministic datasets: Shapes-World, AV-Digits and real sample photos.

Names are resolved on first use, so `import mmlab.data` stays cheap.
"""
import importlib

_EXPORTS = {
    "ShapesWorld": "mmlab.data.shapes_world",
    "collate_shapes_world": "mmlab.data.shapes_world",
    "AVDigits": "mmlab.data.av_digits",
    "verify_assets": "mmlab.data.av_digits",
    "load_photo": "mmlab.data.photos",
    "referent": "mmlab.data.shapes_scene_text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mmlab.data' has no attribute {name!r}")
