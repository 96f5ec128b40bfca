"""bAbI: the strict parser, memory encoding, real-data counts, the split, and clear errors."""

from __future__ import annotations

import re
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from overlooked.data import babi
from overlooked.data.babi import BabiExample, parse_babi
from overlooked.errors import DataError
from overlooked.registry import DATASETS

TINY = (
    "1 Mary moved to the bathroom.\n"
    "2 John went to the hallway.\n"
    "3 Where is Mary? \tbathroom\t1\n"  # the official "? " quirk
    "4 Daniel picked up the apple.\n"
    "5 Daniel grabbed the football.\n"
    "6 What is Daniel carrying?\tapple,football\t4 5\n"  # a comma-list answer is one token
    "7 Where was Mary?\tbathroom\t1 5\n"
    "1 Sandra went to the kitchen.\n"
    "2 Where is Sandra?\tkitchen\t1\n"
)
MARY = ("mary", "moved", "to", "the", "bathroom")
JOHN = ("john", "went", "to", "the", "hallway")
APPLE = ("daniel", "picked", "up", "the", "apple")
FOOTBALL = ("daniel", "grabbed", "the", "football")
SANDRA = ("sandra", "went", "to", "the", "kitchen")
QA3_10K = "babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt"


def test_parse_tiny_story_exactly():
    assert parse_babi(TINY, "tiny.txt") == [
        BabiExample((MARY, JOHN), ("where", "is", "mary"), "bathroom", (0,), 3),
        BabiExample((MARY, JOHN, APPLE, FOOTBALL), ("what", "is", "daniel", "carrying"), "apple,football", (2, 3), 6),
        BabiExample((MARY, JOHN, APPLE, FOOTBALL), ("where", "was", "mary"), "bathroom", (0, 3), 7),
        BabiExample((SANDRA,), ("where", "is", "sandra"), "kitchen", (0,), 9),
    ]


def test_an_answer_is_read_as_the_storys_words_are():
    """Lowercase with '.' and '?' dropped, as tokenize reads the story, so an answer typed 'Home.' in your
    own file is the word 'home' of the story, not a class of its own; comma lists stay one token."""
    (ex,) = babi.parse_babi("1 Mary went home.\n2 Where is Mary?\tHome.\t1\n")
    assert ex.answer == "home"
    (ex,) = babi.parse_babi("1 Mary took the apple.\n2 What is Mary carrying?\tapple,Football\t1\n")
    assert ex.answer == "apple,football"


def test_parse_tolerates_crlf_and_missing_final_newline():
    expected = parse_babi(TINY)
    assert parse_babi(TINY.replace("\n", "\r\n")) == expected
    assert parse_babi(TINY.rstrip("\n")) == expected
    assert parse_babi(TINY + "\n\n \n") == expected  # blank lines after the last one
    assert parse_babi("") == []


def _encode(examples, memory_size):
    vocab = babi.build_vocab(examples)
    word_index = {w: i for i, w in enumerate(vocab)}
    tensors = babi.encode_examples(
        examples, [1] * len(examples), word_index, memory_size, sentence_len=5, support_len=2
    )
    return tensors, word_index


def test_encode_truncates_memory_to_the_newest_and_remaps_support():
    examples = parse_babi(TINY)
    tensors, w = _encode(examples, memory_size=2)

    def row(sentence):
        return [w[t] for t in sentence] + [0] * (5 - len(sentence))

    assert tensors["story"].shape == (4, 2, 5) and tensors["story"].dtype == torch.int64
    assert tensors["story"][0].tolist() == [row(MARY), row(JOHN)]
    assert tensors["story"][1].tolist() == [row(APPLE), row(FOOTBALL)]  # Mary and John fell out
    assert tensors["story"][3].tolist() == [row(SANDRA), [0] * 5]
    assert tensors["memory_mask"].tolist() == [[True, True], [True, True], [True, True], [True, False]]
    assert tensors["supporting"].tolist() == [[0, -1], [0, 1], [-1, 1], [0, -1]]  # fact 0 of line 7 dropped
    assert tensors["query"][1].tolist() == row(("what", "is", "daniel", "carrying"))
    assert tensors["answer"].tolist() == [w["bathroom"], w["apple,football"], w["bathroom"], w["kitchen"]]
    assert tensors["task"].tolist() == [1, 1, 1, 1]
    assert w["<nil>"] == 0


def test_encode_without_truncation_keeps_chronological_order():
    tensors, w = _encode(parse_babi(TINY), memory_size=6)
    assert tensors["memory_mask"][1].tolist() == [True] * 4 + [False] * 2
    assert tensors["story"][1, :4, 0].tolist() == [w["mary"], w["john"], w["daniel"], w["daniel"]]
    assert tensors["story"][1, 4:].eq(0).all()
    assert tensors["supporting"][2].tolist() == [0, 3]


MALFORMED = [
    ("Mary went home.\n", 1, "'<id> <text>'"),
    ("1 Mary went home.\nx Where is Mary?\thome\t1\n", 2, "'<id> <text>'"),
    ("1 Mary went home.\n 2 John left.\n", 2, "'<id> <text>'"),
    ("1Mary went home.\n", 1, "'<id> <text>'"),
    ("12345678901 Mary went home.\n", 1, "'<id> <text>'"),
    ("2 Mary went home.\n", 1, "id 1 (a new story)"),
    ("1 Mary went home.\n3 John left.\n", 2, "or 2 (the story's next line)"),
    ("1 Mary went home.\n\n2 John left.\n", 2, "'<id> <text>'"),
    ("1 .\n", 1, "at least one word"),
    ("1 Where is Mary?\n", 1, "a question followed by"),
    ("1 Mary went home.\n2 Where is Mary?  home 1\n", 2, "a question followed by"),  # its tabs became spaces
    ("1 Mary went home\n", 1, "a statement ending in '.'"),
    ("1 Mary went home.\n2 Where is Mary home 1\n", 2, "a statement ending in '.'"),  # lost tabs and '?'
    ("1 Mary went home.\n2 Where is Mary?\thome\n", 2, "not 1 tab(s)"),
    ("1 Mary went home.\n2 Where is Mary?\thome\t1\tx\n", 2, "not 3 tab(s)"),
    ("1 Mary went home.\n2 Where is Mary\thome\t1\n", 2, "ending in '?'"),
    ("1 Mary went home.\n2 ?\thome\t1\n", 2, "question with at least one word"),
    ("1 Mary went home.\n2 Where is Mary?\t\t1\n", 2, "one-token answer"),
    ("1 Mary went home.\n2 Where is Mary?\tthe home\t1\n", 2, "one-token answer"),
    ("1 Mary went home.\n2 Where is Mary?\t.\t1\n", 2, "one-token answer"),
    ("1 Mary went home.\n2 Where is Mary?\thome.garden\t1\n", 2, "one-token answer"),
    ("1 Where is Mary?\thome\t1\n", 1, "after at least one statement"),
    ("1 Mary went home.\n2 Where is Mary?\thome\t\n", 2, "supporting statement ids"),
    ("1 Mary went home.\n2 Where is Mary?\thome\tone\n", 2, "supporting statement ids"),
    ("1 Mary went home.\n2 Where is Mary?\thome\t3\n", 2, "not 3"),  # forward reference
    ("1 Mary went home.\n2 Where is Mary?\thome\t1\n3 Where is she?\thome\t2\n", 3, "questions excluded"),
    ("1 Mary went home.\n2 John left.\n1 Sandra ran.\n2 Where is John?\thome\t2\n", 4, "not 2"),  # older story
]


@pytest.mark.parametrize(("text", "lineno", "expected"), MALFORMED)
def test_malformed_line_names_file_line_and_expectation(text, lineno, expected):
    with pytest.raises(DataError) as info:
        parse_babi(text, "qa99_fake_train.txt")
    message = str(info.value)
    assert message.startswith(f"qa99_fake_train.txt, line {lineno}: expected ")
    assert expected in message
    assert repr(text.split("\n")[lineno - 1][:80]) in message
    assert "overlooked data fetch babi" in message and "data.kwargs.verify=false" in message


def test_long_line_is_truncated_in_the_message():
    with pytest.raises(DataError) as info:
        parse_babi("1 " + "word " * 100 + "?\n", "long.txt")
    assert "..." in str(info.value) and len(str(info.value)) < 400


def test_read_babi_file_reports_non_utf8_byte_offset(tmp_path):
    path = tmp_path / "qa1_bad_train.txt"
    path.write_bytes(b"1 Mary went home.\n2 Mary \xff went home.\n")
    with pytest.raises(DataError, match=r"qa1_bad_train\.txt, line 2: expected UTF-8 text, found byte 0xff at byte offset 25.* must be saved as UTF-8"):
        babi.read_babi_file(path)


def test_read_babi_file_skips_a_bom_and_names_empty_files_and_folders(tmp_path):
    """Found by an adversarial review: a byte-order mark read as part of the first line's number; an empty
    file was reported as an empty split with a val_fraction hint; a folder in a file's place as missing."""
    good = "1 Mary went home.\n2 Where is Mary?\thome\t1\n"
    bom = tmp_path / "qa1_bom_train.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + good.encode())
    assert babi.read_babi_file(bom) == parse_babi(good, str(bom))
    for name, text, why in (("empty", "", "empty"), ("blank", " \n\n", "empty"), ("statements", "1 Mary went home.\n", "no line of the form N question")):
        path = tmp_path / f"qa1_{name}_train.txt"
        path.write_text(text)
        with pytest.raises(DataError, match=rf"qa1_{name}_train\.txt holds no question \({why}"):
            babi.read_babi_file(path)
    (tmp_path / "qa1_dir_train.txt").mkdir()
    with pytest.raises(DataError, match=r"qa1_dir_train\.txt is a folder, not a file"):
        babi.read_babi_file(tmp_path / "qa1_dir_train.txt")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parser_raises_only_data_error_on_any_text(text):
    try:
        parse_babi(text, "fuzz")
    except DataError:
        pass


_INTERESTING = "0123456789 \t\n\r?.,-Mx"


@st.composite
def mutated_tiny(draw):
    """TINY with a few character edits (from characters the format cares about) and line shuffles."""
    text = TINY
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate line", "drop line", "swap lines"]))
        if op in ("insert", "delete", "replace"):
            at = draw(st.integers(0, len(text)))
            char = draw(st.sampled_from(_INTERESTING) | st.characters())
            if op == "insert":
                text = text[:at] + char + text[at:]
            elif op == "delete":
                text = text[:at] + text[at + draw(st.integers(1, 5)) :]
            else:
                text = text[:at] + char + text[at + 1 :]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if op == "duplicate line":
                lines.insert(j, lines[i])
            elif op == "drop line":
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


@settings(max_examples=500, deadline=None)
@given(mutated_tiny())
def test_parser_raises_only_data_error_on_mutated_stories(text):
    try:
        examples = parse_babi(text, "mutated")
    except DataError as err:
        assert str(err).startswith("mutated, line ")
        return
    for ex in examples:  # whatever parses is consistent
        assert ex.story and ex.question and ex.answer
        assert all(0 <= i < len(ex.story) for i in ex.supporting)


def test_split_per_task_is_disjoint_deterministic_and_per_task():
    task = torch.tensor([1] * 30 + [2] * 50)
    train_idx, val_idx = babi.split_per_task(task, 0.1, seed=0)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert sorted(train_idx.tolist() + val_idx.tolist()) == list(range(80))
    assert torch.bincount(task[val_idx]).tolist() == [0, 3, 5]
    again = babi.split_per_task(task, 0.1, seed=0)
    other = babi.split_per_task(task, 0.1, seed=1)
    assert torch.equal(val_idx, again[1]) and not torch.equal(val_idx, other[1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tasks": 21}, "tasks must be"),
        ({"tasks": "3"}, "tasks must be"),
        ({"tasks": []}, "tasks must be"),
        ({"tasks": True}, "tasks must be"),
        ({"size": "hn"}, "unknown bAbI size 'hn'"),
        ({"memory_size": 0}, "memory_size must be a positive int"),
        ({"sentence_len": "9"}, "sentence_len must be a positive int, got '9'"),
    ],
    ids=str,
)
def test_load_babi_rejects_bad_arguments(tmp_path, kwargs, message):
    """Each argument is checked before any file is looked for (the empty folder would fail later, on a
    missing file, with another message)."""
    with pytest.raises(DataError, match=message):
        babi.load_babi(data_dir=tmp_path, **kwargs)


# --------------------------------------------------------------------------------------------------------
# Real data


def _count(data_dir, task, size, split):
    return len(babi.read_babi_file(data_dir / babi.task_path(task, size, split)))


@pytest.mark.data
def test_every_en_file_has_1000_questions(data_dir):
    counts = {(t, s): _count(data_dir, t, "en", s) for t in babi.TASK_NAMES for s in babi.SPLITS}
    assert set(counts.values()) == {1000} and len(counts) == 40


@pytest.mark.data
def test_every_en10k_file_has_10000_train_and_1000_test_questions(data_dir):
    train = {t: _count(data_dir, t, "en-10k", "train") for t in babi.TASK_NAMES if t != 3}
    test = {t: _count(data_dir, t, "en-10k", "test") for t in babi.TASK_NAMES}
    assert set(train.values()) == {10_000} and len(train) == 19
    assert set(test.values()) == {1000} and len(test) == 20


@pytest.mark.data
def test_missing_en10k_task3_names_the_file_and_folder(data_dir):
    with pytest.raises(DataError) as info:
        babi.load_babi(tasks=3, size="en-10k", data_dir=data_dir)
    message = str(info.value)
    assert f"missing file {data_dir / QA3_10K} " in message
    assert f"looked in folder {data_dir / 'babi' / 'tasks_1-20_v1-2' / 'en-10k'}" in message
    assert "overlooked data fetch babi" in message
    assert "qa3_three-supporting-facts_test.txt" not in message  # the test file is there


@pytest.mark.data
def test_load_babi_task1_tensors_and_meta(data_dir):
    splits = DATASETS.create("babi", tasks=1, data_dir=data_dir)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (900, 100, 1000)
    assert splits.input_keys == ("story", "query", "memory_mask", "time") and splits.target_key == "answer"
    meta = splits.meta
    assert meta["vocab"][0] == "<nil>" and meta["vocab"][1:] == sorted(meta["vocab"][1:])
    assert meta["vocab_size"] == meta["num_classes"] == len(meta["vocab"])
    assert (meta["memory_size"], meta["tasks"], meta["size"], meta["name"]) == (50, [1], "en", "babi")
    L = meta["sentence_len"]
    shapes = {k: (tuple(v.shape), v.dtype) for k, v in splits.test.tensors.items()}
    assert shapes == {
        "story": ((1000, 50, L), torch.int64),
        "memory_mask": ((1000, 50), torch.bool),
        "query": ((1000, L), torch.int64),
        "answer": ((1000,), torch.int64),
        "supporting": ((1000, 1), torch.int64),
        "task": ((1000,), torch.int64),
        "time": ((1000, 50), torch.int64),
    }
    vocab = meta["vocab"]
    first = splits.test[0]  # "1 John travelled to the hallway. / 2 Mary journeyed ... / 3 Where is John?"
    assert [vocab[i] for i in first["query"].tolist() if i] == ["where", "is", "john"]
    assert [vocab[i] for i in first["story"][0].tolist() if i] == ["john", "travelled", "to", "the", "hallway"]
    assert first["memory_mask"].sum() == 2 and vocab[int(first["answer"])] == "hallway"
    assert first["supporting"].tolist() == [0]
    assert first["time"].tolist()[:3] == [1, 0, 0]  # the newest sentence has temporal index 0


@pytest.mark.data
def test_load_babi_memory_truncation_matches_the_parsed_stories(data_dir):
    splits = babi.load_babi(tasks=2, data_dir=data_dir, memory_size=3)
    parsed = babi.read_babi_file(data_dir / babi.task_path(2, "en", "test"))
    vocab = splits.meta["vocab"]
    test = splits.test.tensors
    assert test["story"].shape[1] == 3
    truncated = 0
    for q, ex in enumerate(parsed):
        start = max(0, len(ex.story) - 3)
        assert int(test["memory_mask"][q].sum()) == len(ex.story) - start
        for slot, sentence in enumerate(ex.story[start:]):
            assert tuple(vocab[i] for i in test["story"][q, slot].tolist() if i) == sentence
        expected = [i - start if i >= start else -1 for i in ex.supporting]
        assert test["supporting"][q].tolist() == expected
        truncated += -1 in expected
    assert truncated > 0  # task 2 stories are long enough that some facts fall out of 3 slots


@pytest.mark.data
def test_trim_memory_sizes_memory_to_the_longest_training_story(data_dir):
    """trim_memory=True: min(memory_size, longest training story) slots, as the authors' code sizes memory."""
    parsed = babi.read_babi_file(data_dir / babi.task_path(1, "en", "train"))
    longest = max(len(ex.story) for ex in parsed)  # 10 statements in task 1
    trimmed = babi.load_babi(tasks=1, data_dir=data_dir, memory_size=50, trim_memory=True)
    assert trimmed.meta["memory_size"] == longest < 50
    assert trimmed.train.tensors["story"].shape[1] == trimmed.test.tensors["story"].shape[1] == longest
    assert babi.load_babi(tasks=1, data_dir=data_dir, memory_size=4, trim_memory=True).meta["memory_size"] == 4
    full = babi.load_babi(tasks=1, data_dir=data_dir, memory_size=50)
    assert torch.equal(full.test.tensors["story"][:, :longest], trimmed.test.tensors["story"])  # same slots, less padding


@pytest.mark.data
def test_load_babi_val_split_is_seeded_disjoint_and_per_task(data_dir):
    full = babi.load_babi(tasks=[1, 2], data_dir=data_dir, val_fraction=0.0).train.tensors
    splits = babi.load_babi(tasks=[1, 2], data_dir=data_dir, seed=0)
    again = babi.load_babi(tasks=[2, 1], data_dir=data_dir, seed=0)
    other = babi.load_babi(tasks=[1, 2], data_dir=data_dir, seed=1)
    assert torch.bincount(splits.val.tensors["task"]).tolist() == [0, 100, 100]
    train_idx, val_idx = babi.split_per_task(full["task"], 0.1, seed=0)
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist()) and len(train_idx) + len(val_idx) == 2000
    for key in full:
        assert torch.equal(splits.val.tensors[key], full[key][val_idx])
        assert torch.equal(splits.train.tensors[key], full[key][train_idx])
        assert torch.equal(again.val.tensors[key], splits.val.tensors[key])
    assert not torch.equal(other.val.tensors["story"], splits.val.tensors["story"])


@pytest.mark.data
def test_load_babi_last_val_split_holds_out_each_tasks_last_questions(data_dir):
    """val_split="last": the authors' Matlab code holds out questions floor(0.9 Q) + 1 .. Q of each task."""
    full = babi.load_babi(tasks=[1, 2], data_dir=data_dir, val_fraction=0.0).train.tensors
    last = babi.load_babi(tasks=[1, 2], data_dir=data_dir, val_split="last", seed=3)
    rows = torch.cat([torch.arange(900, 1000), torch.arange(1900, 2000)])  # task 1 is rows 0..999, task 2 1000..1999
    for key in full:
        assert torch.equal(last.val.tensors[key], full[key][rows])
    assert len(last.train) == 1800
    with pytest.raises(DataError, match="val_split"):
        babi.load_babi(tasks=1, data_dir=data_dir, val_split="first")


@pytest.mark.data
def test_load_babi_rejects_a_file_that_fails_its_checksum(tmp_path, data_dir):
    for split in babi.SPLITS:
        rel = babi.task_path(1, "en", split)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / rel, tmp_path / rel)
    train = tmp_path / babi.task_path(1, "en", "train")
    train.write_text(train.read_text().replace("hallway", "garden", 1))
    with pytest.raises(DataError) as info:
        babi.load_babi(tasks=1, data_dir=tmp_path)
    assert f"file {train} failed its checksum: sha256 expected c64ba9b1" in str(info.value)
    assert "load with verify=False (`data.kwargs.verify=false`)" in str(info.value)  # for a copy edited on purpose


@pytest.mark.data
def test_verify_false_reads_an_edited_copy_and_names_a_malformed_line(tmp_path, data_dir):
    """By default an edited bAbI file fails its checksum; with verify=False it is read as it is, so an
    edited task loads and a malformed line is reported with its file and line number."""
    import shutil

    for split in ("train", "test"):
        rel = babi.task_path(1, "en", split)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(data_dir / rel, tmp_path / rel)
    train = tmp_path / babi.task_path(1, "en", "train")
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines).replace("Mary moved to the bathroom.", "Mary moved to the attic.", 1))
    with pytest.raises(DataError, match="checksum"):
        babi.load_babi(tasks=1, data_dir=tmp_path)
    edited = babi.load_babi(tasks=1, data_dir=tmp_path, verify=False)
    assert "attic" in edited.meta["vocab"]
    train.write_text("".join(lines[:6]) + "7 Where is Mary?\n" + "".join(lines[7:]))  # a question without its answer
    with pytest.raises(DataError, match=rf"{train.name}.*line 7"):
        babi.load_babi(tasks=1, data_dir=tmp_path, verify=False)


def test_the_last_split_checks_val_fraction_too():
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(DataError, match="val_fraction must be in"):
            babi.split_per_task(torch.tensor([1, 1, 2, 2]), bad, seed=0, mode="last")


@pytest.mark.data
def test_a_given_vocabulary_and_sentence_len_encode_other_tasks_in_a_trained_models_terms(data_dir):
    """vocab / sentence_len (a trained model's): task 1 loaded with the vocabulary and padded width of tasks
    1 and 10 is task 1 as the joint load encodes it; a word the vocabulary lacks, and a width below the
    longest sentence, are refused with what to do; a vocabulary that is not one is named."""
    joint = babi.load_babi(tasks=[1, 10], data_dir=data_dir, memory_size=10)
    one = babi.load_babi(tasks=1, data_dir=data_dir, memory_size=10, vocab=joint.meta["vocab"], sentence_len=joint.meta["sentence_len"])
    own = babi.load_babi(tasks=1, data_dir=data_dir, memory_size=10)
    assert own.meta["sentence_len"] == 6 < joint.meta["sentence_len"] == 9 and len(own.meta["vocab"]) < len(joint.meta["vocab"])
    assert one.meta["vocab"] == joint.meta["vocab"] and one.meta["vocab_size"] == len(joint.meta["vocab"])
    rows = joint.test.tensors["task"] == 1
    for key, value in one.test.tensors.items():
        assert torch.equal(value, joint.test.tensors[key][rows]), key
    with pytest.raises(DataError, match=r"sentence_len=6 is shorter than the longest sentence loaded \(9 words\)"):
        babi.load_babi(tasks=10, data_dir=data_dir, sentence_len=6)
    with pytest.raises(DataError) as info:
        babi.load_babi(tasks=2, data_dir=data_dir, vocab=own.meta["vocab"])
    text = str(info.value)
    assert re.search(r"^\d+ word\(s\) of \S+qa2_two-supporting-facts_test.txt, \S+qa2_two-supporting-facts_train.txt are not in the given vocabulary of "
                     rf"{len(own.meta['vocab'])} words: 'apple', ", text) and "use stories written with its words" in text
    for bad in (["mary"], ["<nil>", "mary", "mary"], [], "words"):
        with pytest.raises(DataError, match="vocab must be a list of distinct words whose first is the null word"):
            babi.load_babi(tasks=1, data_dir=data_dir, vocab=bad)


def test_encode_question_keeps_the_newest_statements_and_names_what_it_cannot_read():
    vocab = ["<nil>", "bathroom", "garden", "is", "john", "mary", "moved", "to", "the", "where"]
    story = ["Mary moved to the garden.", "", "John moved to the garden", "Mary moved to the bathroom."]
    batch = babi.encode_question(story, "where is mary", vocab, memory_size=2, sentence_len=5, answer=" Bathroom")
    assert batch["memory_mask"].tolist() == [[True, True]] and batch["time"].tolist() == [[1, 0]]  # the newest two, as training keeps them
    assert batch["story"][0, 1].tolist() == [5, 6, 7, 8, 1] and batch["answer"].tolist() == [1]
    assert batch["supporting"].tolist() == [[-1]] and batch["task"].tolist() == [0]
    one_string = babi.encode_question("Mary moved to the garden.\nJohn moved to the garden. Mary moved to the bathroom", "Where is Mary?", vocab, 2, 5)
    assert torch.equal(one_string["story"], batch["story"]) and one_string["answer"].tolist() == [0]  # no answer: the null word
    with pytest.raises(DataError, match=r"3 word\(s\) are not in the model's vocabulary of 9 words: 'kitchen', 'there', 'who'\."):
        babi.encode_question("Mary moved to the kitchen.", "Who is there?", vocab, 2, 5, answer="mary")
    with pytest.raises(DataError, match=r"not in the model's vocabulary of 9 words: 'office'"):
        babi.encode_question("Mary moved to the garden.", "Where is Mary?", vocab, 2, 5, answer="office")
    with pytest.raises(DataError, match="the answer must be one word, as bAbI's are"):
        babi.encode_question("Mary moved to the garden.", "Where is Mary?", vocab, 2, 5, answer="the garden")
    assert babi.encode_question("Mary moved to the garden.", "Where is Mary?", vocab, 2, 5, answer="Garden.")["answer"].tolist() == [2]
    with pytest.raises(DataError, match="a question needs a story of at least one sentence and a question"):
        babi.encode_question(" . ", "Where is Mary?", vocab, 2, 5)
    with pytest.raises(DataError, match=r"the sentence 'mary moved to the garden' has 5 words; the model was built for sentences of at most 4 \(its sentence_len\): split it"):
        babi.encode_question("Mary moved to the garden.", "Where is Mary?", vocab, 2, 4)
    with pytest.raises(DataError, match=r"1 word\(s\) are not in the model's vocabulary of 9 words: '<nil>'"):  # the null word is no word of a story
        babi.encode_question("Mary moved to the <nil>.", "Where is Mary?", vocab, 2, 5)
    # punctuation bAbI's sentences never hold reads as a space (it named 'garden,' and 'mary!' as unknown words);
    # two questions in one are refused (they were read as one: "where is mary where is john")
    commas = babi.encode_question("John moved to the garden. Mary moved, to the bathroom!", "Where is: Mary!", vocab, 2, 5)
    assert commas["story"][0, 1].tolist() == [5, 6, 7, 8, 1] and commas["query"][0].tolist()[:3] == [9, 3, 5]
    with pytest.raises(DataError, match="the question holds 2 question marks: ask one question at a time"):
        babi.encode_question("Mary moved to the garden.", "Where is Mary? Where is John?", vocab, 2, 5)


@pytest.mark.data
def test_a_memory_size_no_story_fills_by_the_gigabyte_is_refused_before_allocating(data_dir):
    """Found by an adversarial review: memory_size=100000000 ended in numpy's allocation error (745 GiB); it is
    named with the longest story and the fix. A memory larger than every story but cheap is still allowed."""
    with pytest.raises(DataError, match=r"memory_size=100,000,000 pads each of the 2,000 questions loaded .* the longest story has 10 statements\. Fix: memory_size <= 10 .*trim_memory=true"):
        babi.load_babi(tasks=1, data_dir=data_dir, memory_size=10**8)
    assert babi.load_babi(tasks=1, data_dir=data_dir, memory_size=1000).meta["memory_size"] == 1000


def test_a_question_of_your_own_drops_a_pasted_line_number_and_a_story_holding_a_question_is_refused():
    """An adversarial review's: a pasted bAbI question line ('2 Where is Mary?') failed on '2' not being a
    word, though the story drops line numbers; a '?' inside the story merged that question with the next
    sentence into one long statement."""
    vocab = ["<nil>", "bathroom", "is", "john", "mary", "moved", "to", "the", "where", "hallway", "went"]
    plain = babi.encode_question("Mary moved to the bathroom.", "Where is Mary?", vocab, 4, 5)
    pasted = babi.encode_question("1 Mary moved to the bathroom.", "2 Where is Mary?", vocab, 4, 5)
    assert all(torch.equal(plain[k], pasted[k]) for k in plain)
    with pytest.raises(DataError, match=r"the story holds a '\?': a story is statements only .*ask them one at a time"):
        babi.encode_question("Mary moved to the bathroom. Where is Mary? John went to the hallway.", "Where is John?", vocab, 4, 5)
    with pytest.raises(DataError, match=r"the story holds a '\?'"):
        babi.encode_question(["Mary moved to the bathroom.", "Where is Mary?"], "Where is John?", vocab, 4, 5)


def test_all_means_the_twenty_tasks():
    """tasks='all' is tasks 1-20, in order (a joint run's mean error is over all twenty)."""
    assert babi._task_list("all") == list(range(1, 21))


def test_supporting_facts_keep_the_order_the_file_gives():
    """The file lists supporting facts in reasoning order (not sorted): MemNN supervises hop k with the k-th."""
    text = "1 Mary went to the garden.\n2 Mary got the football.\n3 Mary went to the office.\n4 Where is the football?\toffice\t2 3\n5 Where was Mary?\tgarden\t3 1\n"
    _, second = parse_babi(text)
    assert second.supporting == (2, 0)


def test_last_split_holds_out_the_fraction_without_float_error():
    """'last': floor((1 - f) Q) rows kept, exact even where (1 - f) Q falls just below a whole number in floats."""
    for q, f, held in [(90, 0.3, 27), (1000, 0.1, 100), (10000, 0.1, 1000), (7, 0.5, 4)]:
        _, val = babi.split_per_task(torch.zeros(q, dtype=torch.int64), f, seed=0, mode="last")
        assert len(val) == held, (q, f)


def test_every_task_is_split_with_the_same_seed():
    """The random per-task split permutes each task's rows with the one seed given (split_train_val's)."""
    from overlooked.data.base import split_train_val

    task = torch.tensor([1] * 40 + [2] * 40)
    _, val = babi.split_per_task(task, 0.1, seed=3)
    _, alone = split_train_val(40, 0.1, 3)
    assert val.tolist() == alone.tolist() + (alone + 40).tolist()


@pytest.mark.data
def test_supporting_facts_of_a_real_question_map_to_their_slots_in_file_order(data_dir):
    """qa2 train line 14, 'Where is the football? garden 12 6': line 12 is slot 10 (line 7 is a question), line 6 slot 5."""
    parsed = babi.read_babi_file(data_dir / babi.task_path(2, "en", "train"))
    assert parsed[1].question == ("where", "is", "the", "football") and parsed[1].answer == "garden"
    assert parsed[1].supporting == (10, 5)
    splits = babi.load_babi(tasks=2, data_dir=data_dir, val_fraction=0.0)
    assert splits.train.tensors["supporting"][1].tolist() == [10, 5]


@pytest.mark.data
def test_all_loads_the_twenty_tasks_and_holds_out_a_hundred_of_each(data_dir):
    splits = babi.load_babi(tasks="all", data_dir=data_dir, memory_size=10)
    assert splits.meta["tasks"] == list(range(1, 21))
    assert torch.bincount(splits.val.tensors["task"], minlength=21).tolist() == [0] + [100] * 20


@pytest.mark.data
def test_trim_memory_reads_the_training_stories_only(data_dir):
    """Task 8: the longest training story has 46 statements, the longest test story 58: memory is 46."""
    longest = {split: max(len(ex.story) for ex in babi.read_babi_file(data_dir / babi.task_path(8, "en", split))) for split in ("train", "test")}
    assert longest == {"train": 46, "test": 58}
    assert babi.load_babi(tasks=8, data_dir=data_dir, trim_memory=True).meta["memory_size"] == 46


@pytest.mark.data
def test_supporting_dropped_counts_training_questions_whose_fact_fell_out_of_memory(data_dir):
    parsed = babi.read_babi_file(data_dir / babi.task_path(2, "en", "train"))
    expected = sum(1 for ex in parsed if any(i < len(ex.story) - 3 for i in ex.supporting))
    assert expected > 0
    assert babi.load_babi(tasks=2, data_dir=data_dir, memory_size=3).meta["supporting_dropped"] == expected
