"""The reference pages stay true to the code they describe, and the README's links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avatar_pipeline.errors import ErrorCode

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]


def documented_codes() -> list[str]:
    table = (REPO_ROOT / "docs" / "error-codes.md").read_text(encoding="utf-8")
    return re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.MULTILINE)


def test_the_error_code_page_lists_every_code_once() -> None:
    """Given docs/error-codes.md, then its table has one row per ErrorCode, none more, none twice."""
    codes = documented_codes()
    assert sorted(codes) == sorted(code.value for code in ErrorCode)
    assert len(codes) == len(set(codes))


def test_every_relative_link_in_the_readme_and_docs_names_a_file_that_exists() -> None:
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(REPO_ROOT)} links to a missing {target}"
