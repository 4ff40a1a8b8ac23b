"""mmlab: a notebook course and workbench for multimodal learning.

Subpackages are imported on use (`import mmlab.data`, `from mmlab.align import info_nce`);
importing `mmlab` itself loads nothing heavy and changes no global state.
"""
__version__ = "0.1.0"
