"""Parser golden tests: each tests/cql_golden/*.cql parses to exactly the tree dump in the matching .ast file.

A changed dump means the grammar or the tree changed shape: review the diff, then
regenerate with CQL_GOLDEN_UPDATE=1.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.cql_like.ast import dump
from service.cql_like.parser import parse

GOLDEN_DIR = Path(__file__).with_name("cql_golden")
SOURCES = sorted(GOLDEN_DIR.glob("*.cql"))


def test_golden_sources_exist():
    assert len(SOURCES) >= 5


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_parse_tree_matches_golden_dump(source: Path):
    tree = dump(parse(source.read_text(encoding="utf-8"), str(source.name))) + "\n"
    golden = source.with_suffix(".ast")
    if os.environ.get("CQL_GOLDEN_UPDATE") == "1":
        golden.write_text(tree, encoding="utf-8")
    assert golden.exists(), f"missing {golden.name}; run with CQL_GOLDEN_UPDATE=1 once and review it"
    assert tree == golden.read_text(encoding="utf-8")
