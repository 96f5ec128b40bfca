"""Pins from mutation audit 8 (results/audits/mutants_babi_memory_2.yaml): bAbI parser behaviour that the
earlier tests left open, each on a story of a few lines written here."""

from __future__ import annotations

import pytest

from overlooked.data.babi import parse_babi
from overlooked.errors import DataError


def test_a_supporting_id_of_an_earlier_question_line_is_refused_even_with_later_statements():
    """Line 2 is a question, so id 2 names no statement. Statements 1 and 3 exist (ids 1..3 span it), so a
    check that only compares the id with the largest statement id (2 <= 3) would let it through and fail
    later with a KeyError; the parser must raise DataError at line 4, naming the known ids 1..3 and the bad one."""
    text = "1 Mary went home.\n2 Where is Mary?\thome\t1\n3 John went to the garden.\n4 Where is John?\tgarden\t2\n"
    with pytest.raises(DataError) as info:
        parse_babi(text, "qa99_fake_train.txt")
    message = str(info.value)
    assert message.startswith("qa99_fake_train.txt, line 4: expected ")
    assert "(1..3, questions excluded)" in message and "not 2" in message


def test_a_supporting_id_of_zero_is_refused_as_a_data_error():
    """Ids start at 1, so 0 names no statement; it must be a DataError (not a KeyError) at line 2."""
    with pytest.raises(DataError) as info:
        parse_babi("1 Mary went home.\n2 Where is Mary?\thome\t0\n", "qa99_fake_train.txt")
    assert str(info.value).startswith("qa99_fake_train.txt, line 2: expected ") and "not 0" in str(info.value)

