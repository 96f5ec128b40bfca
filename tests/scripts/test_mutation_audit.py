"""scripts/mutation_audit.py: a mutant runs in its own copy of src/ (the checkout is never changed) and is
killed when the named tests fail, survives when they pass; a mutant whose text is not in its file once is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

TEST = "tests/memory/test_functional.py::test_position_encoding_matches_hand_computed_values"
PE_LINE = "return ((1 - j / J) - (k / d) * (1 - 2 * j / J)).to(dtype)"


@pytest.fixture(scope="module")
def audit(load_script):
    return load_script("mutation_audit")


def test_a_mutant_the_tests_catch_is_killed_and_one_they_cannot_survives(audit):
    source = audit.ROOT / "src" / "overlooked" / "memory" / "functional.py"
    before = source.read_text()
    killed = audit.run_one({"id": "pe_sign", "file": "overlooked/memory/functional.py", "old": PE_LINE, "new": PE_LINE.replace(") - (k", ") + (k")}, [TEST])
    assert killed["outcome"] == "killed" and killed["first_failure"] == TEST
    same = audit.run_one({"id": "noop", "file": "overlooked/memory/functional.py", "old": PE_LINE, "new": PE_LINE + "  # a comment"}, [TEST])
    assert same["outcome"] == "survived" and same["first_failure"] is None
    assert source.read_text() == before  # the checkout was never touched


def test_a_mutant_not_found_once_is_refused(tmp_path, audit):
    spec = {"tests": [TEST], "mutants": [{"id": "twice", "file": "overlooked/memory/functional.py", "old": "return", "new": "return"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit, match="occurs .* times .* not once"):
        audit.load(tmp_path / "m.yaml")
    spec["mutants"] = [{"id": "a", "file": "overlooked/memory/functional.py", "old": PE_LINE, "new": ""}] * 2
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SystemExit, match="ids repeat"):
        audit.load(Path(tmp_path / "m.yaml"))
