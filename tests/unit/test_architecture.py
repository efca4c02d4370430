"""The layout shows the architecture, and a test keeps it so.

* domain/ imports no adapter, no composition root, no AWS or HTTP client library: the use cases see
  the world through domain/ports.py only.
* Handlers are thin: they parse, call one use case with its ports, and return.
* No function in the layers or the handlers is longer than 50 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "layers" / "common" / "avatar_pipeline"
FORBIDDEN_IN_DOMAIN = (
    "avatar_pipeline.adapters",
    "avatar_pipeline.runtime",
    "avatar_pipeline.provider.client",
    "boto3",
    "botocore",
    "httpx",
)
MAX_FUNCTION_LINES = 50


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", sorted((PACKAGE / "domain").glob("*.py")), ids=lambda p: p.name)
def test_the_domain_imports_no_adapter_runtime_or_client_library(module: Path) -> None:
    forbidden = {name for name in imported_modules(module) if name.startswith(FORBIDDEN_IN_DOMAIN)}
    assert forbidden == set(), f"{module.name} imports {sorted(forbidden)}"


def test_adapters_depend_on_the_domain_not_the_other_way_round() -> None:
    """An adapter may import the domain's ports and value types; the domain never an adapter (above)."""
    adapters = sorted((PACKAGE / "adapters").glob("*.py"))
    assert adapters
    for module in adapters:
        assert "avatar_pipeline.runtime" not in imported_modules(module), module.name


def functions_in(paths: list[Path]) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                found.append((f"{path.relative_to(REPO_ROOT)}:{node.name}", node.end_lineno - node.lineno + 1))
    return found


def test_no_function_in_the_layer_or_the_handlers_is_longer_than_fifty_lines() -> None:
    paths = sorted(PACKAGE.rglob("*.py")) + sorted((REPO_ROOT / "functions").rglob("*.py"))
    too_long = {name: lines for name, lines in functions_in(paths) if lines > MAX_FUNCTION_LINES}
    assert too_long == {}


@pytest.mark.parametrize("handler", sorted((REPO_ROOT / "functions").glob("*/app.py")), ids=lambda p: p.parent.name)
def test_handlers_reach_the_domain_only_through_the_composition_root(handler: Path) -> None:
    """A handler imports no adapter directly (the SQS event models aside) and no AWS client library."""
    imported = imported_modules(handler)
    assert not {name for name in imported if name.startswith(("boto3", "httpx"))}
    adapters = {name for name in imported if name.startswith("avatar_pipeline.adapters")}
    assert adapters <= {"avatar_pipeline.adapters.queue"}, adapters
