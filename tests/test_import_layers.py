"""Dependencies run one way (ARCHITECTURE.md): each module imports its own layer or lower ones, never another package's
underscore names, and every module imports in a fresh interpreter, alone and in the orders that matter.

The static checks parse the sources (`ast`, imports at any depth, lazy ones included); the import checks run
child interpreters, so what this process already imported cannot hide a cycle.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Lowest first. A module belongs to the longest entry that names it or a package above it ("align.recipe" would
# come before "align"), and may import modules of its own layer and of the layers before it, nothing after.
LAYERS = (
    ("", "validation", "runtime"),  # "" is the bare `mmlab` package
    ("kernels", "data", "preprocess", "encoders"),
    ("align", "fusion", "finetune", "train", "optim", "evaluate", "viz", "checkpoint"),
    ("fusion_bench", "pretrain", "generate", "captioning", "grounding", "deploy", "search", "diffusion"),
    ("doctor", "run_notebooks", "lab", "train_clip", "search_cli", "__main__"),
)
LEAVES = ("mmlab.validation", "mmlab.runtime")  # import nothing from mmlab at all
OPTIONAL = {"mmlab.kernels.contrastive_tiles": "triton"}  # imports this dependency at module level


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted((REPO / "mmlab").rglob("*.py"))}


def _package(module: str) -> str:
    """The package a module's file sits in (a package's own __init__ sits in itself)."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


_ENTRIES = {f"mmlab.{entry}".rstrip("."): i for i, layer in enumerate(LAYERS) for entry in layer}


def _layer(module: str) -> int | None:
    owners = [e for e in _ENTRIES if module == e or (e != "mmlab" and module.startswith(e + "."))]
    return _ENTRIES[max(owners, key=len)] if owners else None


def _mmlab_imports(path: Path, package: str | None) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) for each import of mmlab in a file; `from P import n` names module P.n when
    that is a module. `package`: the file's package, for relative imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub, None, node.lineno) if sub in MODULES else (base, alias.name, node.lineno))
    return [f for f in found if f[0] == "mmlab" or f[0].startswith("mmlab.")]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_owner(module: str, name: str | None) -> str | None:
    """The package whose private module or name this import reaches into, or None if it is public."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            return ".".join(parts[:i])
    if name is not None and _is_private(name):
        return _package(module) if module in MODULES else module
    return None


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if _layer(m) is None]
    assert not missing, f"add these modules to LAYERS in {Path(__file__).name}: {missing}"


def test_no_module_imports_a_higher_layer():
    violations = []
    for module, path in MODULES.items():
        for target, _, line in _mmlab_imports(path, _package(module)):
            if _layer(target) is not None and _layer(module) is not None and _layer(target) > _layer(module):
                violations.append(f"{path.relative_to(REPO)}:{line} {module} (layer {_layer(module)}) imports "
                                  f"{target} (layer {_layer(target)})")
    assert not violations, "\n".join(violations)


def test_kernels_import_only_themselves_and_the_leaves():
    """The headline case of the rule above: `mmlab.kernels` never imports `mmlab.align` (or anything higher)."""
    allowed = ("mmlab", "mmlab.kernels", *LEAVES)
    for module, path in MODULES.items():
        if module.startswith("mmlab.kernels"):
            for target, _, line in _mmlab_imports(path, _package(module)):
                assert target in allowed or target.startswith("mmlab.kernels."), f"{path.name}:{line} {target}"


@pytest.mark.parametrize("module", LEAVES)
def test_leaves_import_nothing_from_mmlab(module):
    assert not _mmlab_imports(MODULES[module], _package(module))


def test_no_private_module_or_name_across_packages():
    """Neither the package nor its tests and benchmarks reach into another package's underscore modules or names."""
    files = [(p, m, _package(m)) for m, p in MODULES.items()]
    files += [(p, None, None) for folder in ("tests", "benchmarks") for p in sorted((REPO / folder).glob("*.py"))]
    violations = []
    for path, module, package in files:
        for target, name, line in _mmlab_imports(path, package):
            owner = _private_owner(target, name)
            inside = module is not None and (module == owner or module.startswith(f"{owner}."))
            if owner is not None and not inside:
                what = f"{target}.{name}" if name else target
                violations.append(f"{path.relative_to(REPO)}:{line} imports {what}, private to {owner}")
    assert not violations, "\n".join(violations)


# --- imports in fresh interpreters ------------------------------------------------------------------------

IMPORTABLE = [m for m in MODULES if m not in OPTIONAL or importlib.util.find_spec(OPTIONAL[m]) is not None]

_CHILD = """
import importlib, json, sys, traceback
modules, alone = json.loads(sys.argv[1]), sys.argv[2] == "alone"
failures = {}
for module in modules:
    if alone:  # forget every mmlab module, so this one imports from nothing
        for name in [n for n in sys.modules if n == "mmlab" or n.startswith("mmlab.")]:
            del sys.modules[name]
    try:
        importlib.import_module(module)
    except Exception:
        failures[module] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
"""


def _import_in_child(modules: list[str], alone: bool) -> dict[str, str]:
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(modules), "alone" if alone else "together"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_each_module_imports_alone():
    """Each module first in a clean slate of mmlab modules (one child interpreter; torch stays loaded)."""
    failures = _import_in_child(IMPORTABLE, alone=True)
    assert not failures, "\n".join(f"{m}:\n{tb}" for m, tb in failures.items())


@pytest.mark.parametrize("first", [None, "mmlab.kernels", "mmlab.align", "mmlab.align.losses",
                                   "mmlab.kernels.info_nce"])
def test_every_module_imports_after(first):
    """`first`, then every other module in path order, in one fresh interpreter. The firsts are where the
    kernels <-> align cycle there was could be entered (None: path order alone)."""
    order = [first] * (first is not None) + [m for m in IMPORTABLE if m != first]
    failures = _import_in_child(order, alone=False)
    assert not failures, "\n".join(f"{m}:\n{tb}" for m, tb in failures.items())
