"""The import direction of docs/CONTRIBUTING.md holds: a module imports only from its own layer
and the layers before it (so nothing under parse/, rewards/, compose/ or shape/ reaches up into
the runner, io, the adapters or the CLI).

The layers are read from the list between ``<!-- layers`` and ``<!-- /layers -->`` in
docs/CONTRIBUTING.md, so the document and the check cannot drift apart. Every import counts,
lazy ones inside functions and ``TYPE_CHECKING`` blocks included: each is a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "medreward"
CONTRIBUTING = ROOT / "docs" / "CONTRIBUTING.md"

LAYERS_BLOCK = re.compile(r"<!-- layers\b.*?-->\n(.*?)<!-- /layers -->", re.S)
NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def documented_layers(text: str) -> dict[str, int]:
    """``{top-level module or package: layer number}`` from the document's layer list."""
    block = LAYERS_BLOCK.search(text)
    assert block, "docs/CONTRIBUTING.md has no <!-- layers --> list"
    layers: dict[str, int] = {}
    for number, line in enumerate(ln for ln in block.group(1).splitlines() if ln.strip()):
        for name in NAME.findall(line):
            assert name not in layers, f"{name} is in two layers"
            layers[name] = number
    return layers


def top_level_units(package: Path) -> set[str]:
    """The top-level modules and subpackages of ``package`` (the façade ``__init__`` aside)."""
    units = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    units |= {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return units


def _imported(path: Path, package: Path) -> set[str]:
    """The top-level units of ``package`` that the module at ``path`` imports."""
    parts = ("medreward",) + path.relative_to(package).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
        here = list(parts)
    else:
        here = list(parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            # `from . import x` / `from medreward import x`: x may itself be a unit
            targets = [f"{module}.{alias.name}" for alias in node.names] if module == "medreward" else [module]
        else:
            continue
        for target in targets:
            bits = target.split(".")
            if bits[0] == "medreward" and len(bits) > 1:
                found.add(bits[1])
    return found


def violations(package: Path, layers: dict[str, int]) -> list[str]:
    """``"path imports unit (layer a > b)"`` for every import against the layer order."""
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel == Path("__init__.py"):
            continue  # the public façade re-exports every layer
        unit = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for target in sorted(_imported(path, package) - {unit}):
            if target in layers and layers[target] > layers[unit]:
                out.append(f"{rel} imports {target} (layer {layers[target]} > {layers[unit]})")
    return out


def test_every_module_has_a_documented_layer():
    layers = documented_layers(CONTRIBUTING.read_text(encoding="utf-8"))
    units = top_level_units(PACKAGE)
    assert not units - set(layers), f"not in docs/CONTRIBUTING.md's layer list: {sorted(units - set(layers))}"
    assert not set(layers) - units, f"listed but not in src/medreward: {sorted(set(layers) - units)}"


def test_the_ground_floor_and_pipeline_stages_come_first():
    layers = documented_layers(CONTRIBUTING.read_text(encoding="utf-8"))
    assert max(layers[u] for u in ("errors", "text", "records", "registry")) == 0
    assert layers["parse"] < layers["rewards"] < layers["compose"] < layers["shape"]
    for consumer in ("runner", "io", "integrations", "cli"):
        assert layers[consumer] > layers["shape"]


def test_no_module_imports_from_a_later_layer():
    layers = documented_layers(CONTRIBUTING.read_text(encoding="utf-8"))
    assert violations(PACKAGE, layers) == []


LAYERS = {"records": 0, "parse": 1, "rewards": 2, "runner": 3}


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("parse/tags.py", "from ..runner import scorer\n"),
        ("parse/tags.py", "from ..rewards.base import RewardComponent\n"),
        ("parse/tags.py", "def later():\n    import medreward.runner.scorer\n"),
        ("parse/tags.py", "from medreward import runner\n"),
        ("rewards/__init__.py", "from ..runner import Scorer\n"),
        ("records.py", "from .parse import tags\n"),
    ],
)
def test_a_bad_import_is_caught(tmp_path, path, source):
    """The checker is not vacuous: an upward import, however written, is reported."""
    package = tmp_path / "medreward"
    for unit in ("parse", "rewards", "runner"):
        (package / unit).mkdir(parents=True)
        (package / unit / "__init__.py").write_text("")
    (package / "records.py").write_text("")
    (package / path).write_text(source)
    assert len(violations(package, LAYERS)) == 1


def test_allowed_imports_pass(tmp_path):
    package = tmp_path / "medreward"
    for unit in ("parse", "rewards", "runner"):
        (package / unit).mkdir(parents=True)
        (package / unit / "__init__.py").write_text("")
    (package / "records.py").write_text("")
    (package / "__init__.py").write_text("from .runner import Scorer\n")  # the façade
    (package / "rewards" / "base.py").write_text("from ..parse import tags\nfrom ..records import Rollout\nfrom . import x\n")
    (package / "runner" / "scorer.py").write_text("import medreward.rewards.base\nfrom medreward.records import Rollout\n")
    assert violations(package, LAYERS) == []
