"""The package's layers (STYLE.md, "The picture"): a module imports only from its own layer and
the layers below it, never from above, and not inside a function either (except to keep
``import jaguar_reid`` and ``--help`` free of torch, where a comment says so)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "jaguar_reid"

# Lowest first. A module may import from its own layer and every layer listed before it.
LAYERS = [
    {"config", "errors", "files", "devices"},
    {"data"},
    {"models"},
    {"postprocess"},
    {"evaluation"},
    {"runs"},
    {"inference"},
    {"training"},
    {"catalog"},
    {"report"},  # views of a run's evaluation
    {"tasks"},
    {"app"},
    {"cli"},
    {"__init__", "__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# Function-level imports kept on purpose: the command line imports a command's library code only
# when that command runs, so `jaguar-reid --help` answers without loading torch.
LAZY_ALLOWED = {"cli", "__init__"}


def _layer(module: str) -> str:
    """``jaguar_reid.catalog.gallery`` -> ``catalog``; a name of the package itself (``__version__``) -> ``__init__``."""
    part = module.split(".")[1]
    return part if part in RANK else "__init__"


def _imports(path: Path):
    """(imported jaguar_reid module, at top level?) for every import in the file."""
    module = "jaguar_reid." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    guarded = {id(n) for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and id(node) not in guarded:
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("jaguar_reid.") or target == "jaguar_reid":
                names = [target] if target.count(".") >= 1 else [f"{target}.{a.name}" for a in node.names]
                for name in names:
                    yield module, name, id(node) in top_level


def _all_imports():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield from _imports(path)


def test_no_module_imports_from_a_layer_above_its_own():
    upward = [f"{module} imports {target}" for module, target, _ in _all_imports()
              if RANK[_layer(target)] > RANK[_layer(module)]]
    assert not upward, "\n".join(upward)


def test_no_function_level_import_of_another_package_outside_the_command_line():
    lazy = [f"{module} imports {target} inside a function" for module, target, top in _all_imports()
            if not top and _layer(module) not in LAZY_ALLOWED and _layer(target) != _layer(module)]
    assert not lazy, "\n".join(lazy)


def test_the_layer_table_knows_every_package():
    """A new folder must be placed in the picture before its imports can be checked."""
    found = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    found |= {p.stem for p in PACKAGE.glob("*.py")}
    assert found <= set(RANK), found - set(RANK)


@pytest.mark.parametrize("imported, absent", [
    ("jaguar_reid.evaluation", ["torch", "jaguar_reid.inference", "jaguar_reid.runs", "jaguar_reid.training",
                                "jaguar_reid.catalog", "jaguar_reid.tasks"]),
    ("jaguar_reid.inference", ["jaguar_reid.training", "jaguar_reid.catalog", "jaguar_reid.tasks", "jaguar_reid.app"]),
    ("jaguar_reid.catalog", ["jaguar_reid.training", "jaguar_reid.tasks", "jaguar_reid.app", "jaguar_reid.cli"]),
    ("jaguar_reid.cli", ["torch", "timm", "jaguar_reid.training", "jaguar_reid.catalog"]),
    ("jaguar_reid", ["torch", "pandas", "jaguar_reid.config"]),
])
def test_importing_a_layer_loads_nothing_above_it(imported, absent):
    """In a fresh interpreter: which modules an import actually loads."""
    code = f"import sys, {imported}; print('\\n'.join(sys.modules))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    assert imported in loaded
    leaked = [name for name in absent if name in loaded]
    assert not leaked, f"import {imported} loaded {leaked}"
