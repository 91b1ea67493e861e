"""The package's layers (README "The package"): no module imports from a layer above its own.

The layers, lowest first; a module may import from a lower layer, or from its own layer:

    foundation   edudiff._validate, edudiff.config, edudiff.utils
    math core    edudiff (the package's __init__) and its top-level modules: schedules, forward, posterior,
                 reverse, elbo, losses, sampling, guidance, inpainting, toy
    data | nn    edudiff.data.*  |  edudiff.nn.*    (side by side: neither imports the other)
    images       edudiff.images.*
    training     edudiff.training.*
    course       edudiff.course.*, edudiff.pretrained.*
    entry points edudiff.cli, edudiff.__main__

The imports are read from the package's own source (every ``import`` and ``from ... import`` anywhere in a file,
inside functions too), not from what happens to be loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import edudiff

PACKAGE = Path(edudiff.__file__).resolve().parent

#: (name, rank, module prefixes). Equal ranks are side-by-side layers: they may not import each other.
LAYERS = [
    ("foundation", 0, ("edudiff._validate", "edudiff.config", "edudiff.utils")),
    (
        "math core",
        1,
        (
            "edudiff",
            "edudiff.schedules",
            "edudiff.forward",
            "edudiff.posterior",
            "edudiff.reverse",
            "edudiff.elbo",
            "edudiff.losses",
            "edudiff.sampling",
            "edudiff.guidance",
            "edudiff.inpainting",
            "edudiff.toy",
        ),
    ),
    ("data", 2, ("edudiff.data",)),
    ("nn", 2, ("edudiff.nn",)),
    ("images", 3, ("edudiff.images",)),
    ("training", 4, ("edudiff.training",)),
    ("course", 5, ("edudiff.course", "edudiff.pretrained")),
    ("entry points", 6, ("edudiff.cli", "edudiff.__main__")),
]


def layer_of(module: str) -> tuple[str, int]:
    """The (layer, rank) of a dotted module name: the layer whose prefix matches most of it."""
    best = None
    for name, rank, prefixes in LAYERS:
        for prefix in prefixes:
            inside = module == prefix or (module.startswith(prefix + ".") and prefix != "edudiff")
            if inside and (best is None or len(prefix) > best[0]):
                best = (len(prefix), name, rank)
    if best is None:
        raise KeyError(f"module {module} belongs to no layer: add it to LAYERS in tests/test_layers.py")
    return best[1], best[2]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(module: str, is_package: bool, source: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every edudiff import in ``source``; relative imports resolved. For
    ``from X import name`` the target is ``X.name`` when that is a module of the package, else ``X``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "edudiff"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "edudiff":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else target))
    return found


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def upward_imports(sources: dict[str, tuple[bool, str]]) -> list[str]:
    """Every import that breaks the layers, as readable lines; ``sources`` maps module -> (is_package, text)."""
    problems = []
    for module, (is_package, text) in sorted(sources.items()):
        layer, rank = layer_of(module)
        for line, target in imported_modules(module, is_package, text):
            target_layer, target_rank = layer_of(target)
            if target_layer == layer or target_rank < rank:
                continue
            problems.append(
                f"{module} (line {line}, layer {layer!r}) imports {target} (layer {target_layer!r}), "
                f"which is {'beside' if target_rank == rank else 'above'} it"
            )
    return problems


def package_sources() -> dict[str, tuple[bool, str]]:
    return {
        module_name(path, PACKAGE): (path.name == "__init__.py", path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def test_every_module_has_a_layer():
    for module in package_sources():
        layer_of(module)  # raises KeyError naming the module


def test_no_module_imports_from_a_layer_above_its_own():
    problems = upward_imports(package_sources())
    assert not problems, "imports against the layers:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("edudiff.nn.unet", "from ..training.trainer import Trainer\n"),  # models -> training: up
        ("edudiff.schedules", "import edudiff.images.generate\n"),  # math core -> images: up
        ("edudiff.data.datasets", "from ..nn.unet import UNet\n"),  # data -> nn: beside
        ("edudiff.utils", "def f():\n    from . import sampling\n"),  # foundation -> math core, inside a function
    ],
)
def test_a_planted_upward_import_is_caught(module, planted):
    sources = package_sources()
    is_package, text = sources[module]
    sources[module] = (is_package, text + "\n" + planted)
    problems = upward_imports(sources)
    assert len(problems) == 1 and problems[0].startswith(module), problems


def test_imports_are_resolved_relative_to_the_file():
    # "from .. import x" in edudiff/nn/unet.py is edudiff.x; in edudiff/nn/__init__.py ".." is edudiff too.
    assert imported_modules("edudiff.nn.unet", False, "from ..schedules import Schedule") == [(1, "edudiff.schedules")]
    assert imported_modules("edudiff.nn", True, "from .unet import UNet") == [(1, "edudiff.nn.unet")]
    assert imported_modules("edudiff.nn", True, "from ..training import loop") == [(1, "edudiff.training.loop")]
