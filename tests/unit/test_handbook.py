"""Every handbook code the code base cites (``HL-03``, ``DG-06``, …) has an entry in
``docs/handbook.md``, so a reader can look up what a comment or a default refers to."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r"\b[A-Z]{2,3}-[0-9]{2}\b")
# Of that shape, but no handbook code: a text encoding a file may be in.
NOT_CODES = {"UTF-16"}
CITING = ("*.py", "*.toml", "*.html", "*.md")


def cited_codes() -> set[str]:
    """The codes in production code and its shipped defaults (services/, shared/)."""
    codes: set[str] = set()
    for top in ("services", "shared"):
        for pattern in CITING:
            for path in (ROOT / top).rglob(pattern):
                codes |= set(CODE.findall(path.read_text(errors="replace"))) - NOT_CODES
    return codes


def handbook_entries() -> set[str]:
    """The codes with a heading of their own: ``### HL-03 — ...``."""
    text = (ROOT / "docs" / "handbook.md").read_text()
    return set(re.findall(r"^### ([A-Z]{2,3}-[0-9]{2}) — ", text, flags=re.MULTILINE))


def test_the_code_base_cites_handbook_codes() -> None:
    assert len(cited_codes()) >= 40  # the grep itself still finds what it should


def test_every_cited_code_has_a_handbook_entry() -> None:
    assert sorted(cited_codes() - handbook_entries()) == []
