"""Every published number the report quotes is copied from shared/reference/paper_numbers.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PAPER_NUMBERS = REPO.parent / "shared" / "reference" / "paper_numbers.md"


def _numbers(value):
    if isinstance(value, list):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return []


@pytest.mark.skipif(not PAPER_NUMBERS.is_file(), reason="shared/reference/paper_numbers.md not beside the repository")
def test_every_reference_number_is_in_paper_numbers():
    text = re.sub(r"\s+", " ", PAPER_NUMBERS.read_text())
    refs = yaml.safe_load((REPO / "results" / "references.yaml").read_text())
    assert refs
    for key, entry in refs.items():
        for field, value in entry.items():
            for number in _numbers(value):
                if isinstance(number, list):
                    needle = ", ".join(f"{x}" for x in number)
                    assert needle in text, f"{key}.{field}: the array {needle[:40]}... is not in paper_numbers.md"
                else:
                    assert re.search(rf"(?<![\d.]){re.escape(str(number))}(?![\d])", text), f"{key}.{field}={number} is not in paper_numbers.md"


def _tag_after(line: str, pos: int) -> str | None:
    """The first ``[X`` tag after position ``pos`` of a paper_numbers.md line (the tag that number carries)."""
    m = re.search(r"\[([VSU])", line[pos:])
    return m.group(1) if m else None


@pytest.mark.skipif(not PAPER_NUMBERS.is_file(), reason="shared/reference/paper_numbers.md not beside the repository")
def test_no_reference_number_is_only_an_unverified_one():
    """paper_numbers.md: "[U]: unverified ... Do not cite it". A scalar we quote must occur there at least once
    without a [U] tag after it on its line: numbers found only as [U] are refused (as the MemN2N 10k joint 7.5
    and the MultiMNIST baseline's 8.1 were); rows under a section-wide tag carry none and pass. A weak check
    (a [U] number that also occurs elsewhere passes), beside the labels' own tags."""
    lines = PAPER_NUMBERS.read_text().splitlines()
    refs = yaml.safe_load((REPO / "results" / "references.yaml").read_text())
    for key, entry in refs.items():
        for field, value in entry.items():
            if field in ("label", "source") or isinstance(value, (list, bool, str)) or not isinstance(value, (int, float)):
                continue
            pattern = re.compile(rf"(?<![\d.]){re.escape(str(value))}(?!\.?\d)")  # "12" must not match inside "12.4"
            tags = [_tag_after(line, m.end()) for line in lines for m in pattern.finditer(line)]
            assert any(t != "U" for t in tags), f"{key}.{field}={value} occurs in paper_numbers.md only as an unverified [U] number"
