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
