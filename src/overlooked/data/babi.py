"""bAbI QA tasks v1.2 (Weston et al. 2015, arXiv:1502.05698): a strict parser and the tensors MemN2N reads.

A task file holds stories. Every line is ``<id> <text>``; id 1 starts a new story and ids then increase by
one. A statement line holds one sentence, ending in ``.``; a question line holds three tab-separated fields::

    1 Mary moved to the bathroom.
    2 John went to the hallway.
    3 Where is Mary? \tbathroom\t1

(the question, the one-token answer, the ids of the supporting statements). In tasks 1-3 and 5-14 every
question ends in ``"? "``, a space before the tab; the parser accepts both forms. Answers of tasks 8 and 19
are comma lists (``apple,football``, ``n,w``) and stay one token, as in the paper.

The parser is strict: any line that does not fit raises :class:`DataError` naming the file, the line and
what was expected, since a silently skipped line would change the task.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from overlooked.checks import is_count
from overlooked.data import store
from overlooked.data.base import ArrayDataset, Splits, split_train_val
from overlooked.errors import DataError, UnreadableDataError
from overlooked.registry import DATASETS

TASK_NAMES = {
    1: "single-supporting-fact",
    2: "two-supporting-facts",
    3: "three-supporting-facts",
    4: "two-arg-relations",
    5: "three-arg-relations",
    6: "yes-no-questions",
    7: "counting",
    8: "lists-sets",
    9: "simple-negation",
    10: "indefinite-knowledge",
    11: "basic-coreference",
    12: "conjunction",
    13: "compound-coreference",
    14: "time-reasoning",
    15: "basic-deduction",
    16: "basic-induction",
    17: "positional-reasoning",
    18: "size-reasoning",
    19: "path-finding",
    20: "agents-motivations",
}
SIZES = ("en", "en-10k")  # 1,000 or 10,000 training questions per task
SPLITS = ("train", "test")
ROOT = "babi/tasks_1-20_v1-2"  # relative to the data root
BABI_INPUT_KEYS = ("story", "query", "memory_mask", "time")  # what a bAbI model reads by default (MemNN adds "supporting")
NIL = "<nil>"  # vocabulary index 0: padding, and the null word
_FIX = (
    "An official file with this line is corrupt: re-fetch it with `overlooked data fetch babi`; a file of your own "
    "(read with data.kwargs.verify=false) needs this line fixed."
)
_BYTES_PER_SLOT = 24  # a padded memory slot's share of the encoded arrays (int64 rows and time, the mask, copies)
_MAX_PADDED_BYTES = 4 * 2**30  # padding no story fills, beyond which a memory_size is refused
_LINE = re.compile(r"([0-9]{1,9}) (.*)", re.DOTALL)  # at most 9 digits: no huge-int conversion
_ID = re.compile(r"[0-9]{1,9}")


def task_path(task: int, size: str = "en", split: str = "train") -> str:
    """The path of a task file relative to the data root.

    >>> task_path(3, "en-10k", "train")
    'babi/tasks_1-20_v1-2/en-10k/qa3_three-supporting-facts_train.txt'
    """
    return f"{ROOT}/{size}/qa{task}_{TASK_NAMES[task]}_{split}.txt"


def tokenize(sentence: str) -> list[str]:
    """Lowercase, drop ``.`` and ``?``, split on whitespace.

    >>> tokenize("Where is Mary? ")
    ['where', 'is', 'mary']
    """
    return sentence.lower().replace(".", " ").replace("?", " ").split()


@dataclass(frozen=True)
class BabiExample:
    """One question with the story before it.

    Attributes:
        story: the statements of the story before the question, oldest first, each a tuple of tokens.
        question: the question's tokens.
        answer: the answer, one token (comma lists such as ``"apple,football"`` included).
        supporting: indices into ``story`` of the supporting statements, in the file's order.
        line: the 1-based line number of the question in its file.
    """

    story: tuple[tuple[str, ...], ...]
    question: tuple[str, ...]
    answer: str
    supporting: tuple[int, ...]
    line: int


def _line_error(source: str, lineno: int, line: str, expected: str) -> DataError:
    shown = repr(line[:80]) + ("..." if len(line) > 80 else "")
    return DataError(f"{source}, line {lineno}: expected {expected}; found {shown}. {_FIX}")


def parse_babi(text: str, source: str = "<string>") -> list[BabiExample]:
    """Parse the text of one bAbI task file into questions with their stories.

    Args:
        text: the file's content. Lines end in ``\\n`` (a ``\\r`` before it is tolerated).
        source: what to call the text in error messages (the file name).

    Returns:
        One :class:`BabiExample` per question line, in file order.

    Raises:
        DataError: on any malformed line, naming ``source``, the 1-based line number, the line and what was
            expected. Nothing else is raised, whatever the input.

    >>> ex = parse_babi("1 Mary went home.\\n2 Where is Mary? \\thome\\t1\\n")
    >>> ex[0].story, ex[0].question, ex[0].answer, ex[0].supporting, ex[0].line
    ((('mary', 'went', 'home'),), ('where', 'is', 'mary'), 'home', (0,), 2)
    """
    examples: list[BabiExample] = []
    statements: list[tuple[str, ...]] = []  # the current story's statements, oldest first
    slot_of_id: dict[int, int] = {}  # statement line id -> index in `statements`
    last_id = 0
    lines = text.split("\n")
    while lines and lines[-1].strip() == "":
        lines.pop()  # the final newline, and blank lines after the last one
    for lineno, raw in enumerate(lines, 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        match = _LINE.fullmatch(line)
        if match is None:
            raise _line_error(source, lineno, raw, "'<id> <text>': a positive integer id, one space, then the text")
        line_id, body = int(match.group(1)), match.group(2)
        if line_id == 1:
            statements, slot_of_id = [], {}
        elif line_id != last_id + 1:
            expected = "id 1 (a new story)" + (f" or {last_id + 1} (the story's next line)" if last_id else "")
            raise _line_error(source, lineno, raw, expected)
        last_id = line_id
        fields = body.split("\t")
        if len(fields) == 1:
            # A question whose tabs were lost: no bAbI statement holds a '?', and every one ends in '.', so one
            # that also lost its '?' ("Where is Mary bathroom 1") is not read as one more statement either.
            if "?" in body or not body.rstrip().endswith("."):
                expected = "a statement ending in '.', or a question followed by '\\t<answer>\\t<supporting ids>'"
                raise _line_error(source, lineno, raw, expected)
            sentence = tuple(tokenize(body))
            if not sentence:
                raise _line_error(source, lineno, raw, "a statement with at least one word")
            slot_of_id[line_id] = len(statements)
            statements.append(sentence)
        elif len(fields) == 3:
            examples.append(_parse_question(fields, statements, slot_of_id, source, lineno, raw))
        else:
            raise _line_error(
                source, lineno, raw, f"no tab (a statement) or 2 tabs (a question), not {len(fields) - 1} tab(s)"
            )
    return examples


def _parse_question(
    fields: list[str],
    statements: list[tuple[str, ...]],
    slot_of_id: dict[int, int],
    source: str,
    lineno: int,
    raw: str,
) -> BabiExample:
    text, answer, support = fields
    if not text.rstrip(" ").endswith("?"):
        raise _line_error(source, lineno, raw, "a question ending in '?' before the first tab")
    question = tuple(tokenize(text))
    if not question:
        raise _line_error(source, lineno, raw, "a question with at least one word")
    if not answer or answer.split() != [answer] or len(tokenize(answer)) != 1:
        raise _line_error(source, lineno, raw, "a one-token answer (no spaces) between the two tabs")
    if not statements:
        raise _line_error(source, lineno, raw, "a question after at least one statement of its story")
    ids = support.split()
    if not ids or not all(_ID.fullmatch(i) for i in ids):
        expected = "one or more space-separated supporting statement ids after the second tab"
        raise _line_error(source, lineno, raw, expected)
    unknown = [i for i in ids if int(i) not in slot_of_id]
    if unknown:
        known = sorted(slot_of_id)
        raise _line_error(
            source,
            lineno,
            raw,
            f"supporting ids of earlier statements of this story ({known[0]}..{known[-1]}, questions excluded), "
            f"not {', '.join(unknown)}",
        )
    return BabiExample(
        story=tuple(statements),
        question=question,
        answer=tokenize(answer)[0],  # as the story's words are read: lowercase, '.' and '?' dropped
        supporting=tuple(slot_of_id[int(i)] for i in ids),
        line=lineno,
    )


def read_babi_file(path: str | os.PathLike[str]) -> list[BabiExample]:
    """Read and parse one task file (see :func:`parse_babi`). A UTF-8 byte-order mark at its start (an
    editor's) is skipped.

    Raises:
        DataError: the file is missing, is not UTF-8 (with the byte offset), has a malformed line, or holds no
            question.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"bAbI file {path} is a folder, not a file. Fix: remove the folder and run `overlooked data fetch babi`.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read bAbI file {path} ({err}). Fix: run `overlooked data fetch babi`.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"{path}, line {line}: expected UTF-8 text, found byte {data[err.start]:#04x} at byte offset {err.start}. An "
            "official file with it is corrupt: re-fetch it with `overlooked data fetch babi`; a file of your own (read "
            "with data.kwargs.verify=false) must be saved as UTF-8."
        ) from None
    examples = parse_babi(text, str(path))
    if not examples:
        raise DataError(
            f"{path} holds no question ({'empty' if not text.strip() else 'no line of the form N question?<TAB>answer<TAB>supporting ids'}). "
            "An official file is corrupt: re-fetch it with `overlooked data fetch babi`; a file of your own needs its questions."
        )
    return examples


def build_vocab(examples: Iterable[BabiExample]) -> list[str]:
    """``[NIL]`` then every word of the stories, questions and answers, sorted.

    >>> build_vocab(parse_babi("1 Mary went home.\\n2 Where is Mary?\\thome\\t1\\n"))
    ['<nil>', 'home', 'is', 'mary', 'went', 'where']
    """
    words: set[str] = set()
    for sentence in _unique_sentences(examples):
        words.update(sentence)
    words.update(ex.answer for ex in examples)
    words.discard(NIL)
    return [NIL, *sorted(words)]


def _unique_sentences(examples: Iterable[BabiExample]) -> set[tuple[str, ...]]:
    sentences: set[tuple[str, ...]] = set()
    for ex in examples:
        sentences.update(ex.story)
        sentences.add(ex.question)
    return sentences


def encode_examples(
    examples: Sequence[BabiExample],
    tasks: Sequence[int],
    word_index: dict[str, int],
    memory_size: int,
    sentence_len: int,
    support_len: int,
) -> dict[str, torch.Tensor]:
    """Turn examples into padded index tensors, keeping the last ``memory_size`` statements of each story.

    Args:
        examples: ``Q`` parsed questions.
        tasks: the task number of each example, length ``Q``.
        word_index: word -> vocabulary index (index 0 is padding).
        memory_size: ``M``, memory slots; older statements are dropped.
        sentence_len: ``L``, words per sentence slot; must cover every sentence and question.
        support_len: ``S``, supporting-fact slots; must cover every example.

    Returns:
        ``"story"`` int64 ``[Q, M, L]`` (statements oldest first in slots 0..n-1, zero padded),
        ``"memory_mask"`` bool ``[Q, M]`` (True on real statements), ``"query"`` int64 ``[Q, L]``,
        ``"answer"`` int64 ``[Q]``, ``"supporting"`` int64 ``[Q, S]`` (memory slots, -1 for padding and
        for facts dropped from memory), ``"task"`` int64 ``[Q]``, ``"time"`` int64 ``[Q, M]`` (temporal index:
        0 for the newest statement, counting back; 0 on padding).
    """
    n = len(examples)
    rows: dict[tuple[str, ...], int] = {}  # sentence -> row of `table`; row 0 is the all-padding sentence
    slots = np.zeros((n, memory_size), dtype=np.int64)  # [Q, M] rows of `table`
    used = np.zeros(n, dtype=np.int64)  # [Q] statements in memory
    query_rows = np.zeros(n, dtype=np.int64)  # [Q]
    supporting = np.full((n, support_len), -1, dtype=np.int64)  # [Q, S]
    for q, ex in enumerate(examples):
        start = max(0, len(ex.story) - memory_size)  # the oldest statements fall out of memory
        memory = ex.story[start:]
        slots[q, : len(memory)] = [rows.setdefault(s, len(rows) + 1) for s in memory]
        used[q] = len(memory)
        query_rows[q] = rows.setdefault(ex.question, len(rows) + 1)
        supporting[q, : len(ex.supporting)] = [i - start if i >= start else -1 for i in ex.supporting]
    table = np.zeros((len(rows) + 1, sentence_len), dtype=np.int64)  # [K + 1, L]
    for sentence, row in rows.items():
        if len(sentence) > sentence_len:
            words = " ".join(sentence)
            raise UnreadableDataError(f"the sentence {words!r} has {len(sentence)} words; the model was built for sentences of at most {sentence_len} (its sentence_len): split it")
        table[row, : len(sentence)] = [_index(word_index, w) for w in sentence]
    mask = np.arange(memory_size)[None, :] < used[:, None]  # [Q, M]
    return {
        "story": torch.from_numpy(table[slots]),  # [Q, M, L]
        "memory_mask": torch.from_numpy(mask),  # [Q, M]
        "query": torch.from_numpy(table[query_rows]),  # [Q, L]
        "answer": torch.tensor([_index(word_index, ex.answer) for ex in examples], dtype=torch.int64),  # [Q]
        "supporting": torch.from_numpy(supporting),  # [Q, S]
        "task": torch.tensor(list(tasks), dtype=torch.int64),  # [Q]
        "time": torch.from_numpy(np.where(mask, used[:, None] - 1 - np.arange(memory_size)[None, :], 0)),  # [Q, M]
    }


def encode_question(
    story: str | Sequence[str],
    question: str,
    vocab: Sequence[str],
    memory_size: int,
    sentence_len: int,
    answer: str | None = None,
) -> dict[str, torch.Tensor]:
    """One question of your own, encoded as a trained model reads it (its ``vocab``, ``memory_size`` and
    ``sentence_len``): the batch of one that :func:`encode_examples` makes, with no supporting facts.

    Args:
        story: the statements, oldest first: one string, or a list of strings; sentences end with ``.``, ``!``
            or a line break, and a leading bAbI line number (``1 Mary went home.``) is dropped. Only the last
            ``memory_size`` are kept, as in training (:func:`story_statements` tells how many there are).
        question: the question (a ``?`` is optional; a leading bAbI line number is dropped, as in the story).
        vocab: the model's vocabulary (``vocab[0]`` the null word), e.g. ``RUN/vocab.json``.
        memory_size, sentence_len: the sizes the model was built for (``RUN/data_meta.json``).
        answer: the expected answer, if you know it (one word of ``vocab``); the null word otherwise.

    Raises:
        DataError: an empty story or question, a story holding a ``?`` (a question is no statement), an answer
            of more than one word.
        UnreadableDataError: a word not in ``vocab`` (all of them named; the null word is no word of a story),
            or a sentence longer than ``sentence_len``.

    >>> vocab = ["<nil>", "bathroom", "is", "john", "mary", "moved", "to", "the", "where"]
    >>> batch = encode_question("Mary moved to the bathroom. John moved to the bathroom.", "Where is Mary?", vocab, 4, 5)
    >>> batch["story"].shape, batch["memory_mask"].tolist(), batch["query"].tolist()
    (torch.Size([1, 4, 5]), [[True, True, False, False]], [[8, 2, 4, 0, 0]])
    """
    if any("?" in part for part in ([story] if isinstance(story, str) else list(story))):
        raise DataError(
            f"the story holds a '?': a story is statements only (a question in it would be read as one, and merged with "
            f"the next sentence). Fix: drop the question lines from the story and ask them one at a time; got {str(story)[:80]!r}"
        )
    statements = story_statements(story)
    if answer is not None:
        if len(tokenize(answer)) != 1:
            raise DataError(f"the answer must be one word, as bAbI's are (comma lists such as 'apple,football' included), got {answer!r}")
        answer = tokenize(answer)[0]
    if question.count("?") > 1:  # two questions would be read as one ("where is mary where is john")
        raise DataError(f"the question holds {question.count('?')} question marks: ask one question at a time; got {question!r}")
    asked = tuple(tokenize(_typed(re.sub(r"^\s*\d+\s+", "", question))))  # a pasted bAbI line's number dropped
    if not statements or not asked:
        raise DataError(f"a question needs a story of at least one sentence and a question; got story {story!r} and question {question!r}")
    word_index = {w: i for i, w in enumerate(vocab) if w != NIL}
    unknown = sorted({w for s in (*statements, asked) for w in s if w not in word_index} | ({answer} if answer is not None and answer not in word_index else set()))
    if unknown:
        raise UnreadableDataError(
            f"{len(unknown)} word(s) are not in the model's vocabulary of {len(word_index)} words: {', '.join(map(repr, unknown))}. "
            "It reads only the words it was trained with; rephrase with those (the run folder's vocab.json lists them)"
        )
    example = BabiExample(story=statements, question=asked, answer=answer if answer is not None else NIL, supporting=(), line=0)
    return encode_examples([example], [0], {NIL: 0, **word_index}, memory_size, sentence_len, support_len=1)


def story_statements(story: str | Sequence[str]) -> tuple[tuple[str, ...], ...]:
    """The tokenized statements of a story typed by hand (see :func:`encode_question`), oldest first.

    >>> story_statements("1 Mary went home. 2 John went to the garden!\\nSandra left")
    (('mary', 'went', 'home'), ('john', 'went', 'to', 'the', 'garden'), ('sandra', 'left'))
    """
    parts = [story] if isinstance(story, str) else list(story)
    sentences = [s for part in parts for s in re.split(r"[.!\n]", part)]
    return tuple(tuple(words) for s in sentences if (words := tokenize(_typed(re.sub(r"^\s*\d+\s+", "", s)))))


def _typed(text: str) -> str:
    """Text typed by hand with the punctuation bAbI's sentences never hold (``,;:!``) read as spaces, so that
    "the office, then" reads the known word ``office`` (bAbI's own files keep their commas: list answers)."""
    return re.sub(r"[,;:!]", " ", text)


def _index(word_index: dict[str, int], word: str) -> int:
    try:
        return word_index[word]
    except KeyError:
        raise DataError(
            f"word {word!r} is not in the vocabulary; build it with build_vocab over the examples"
        ) from None


def _given_vocab(vocab: Sequence[str], parsed: dict[tuple[int, str], list[BabiExample]], root: Path, paths: dict[tuple[int, str], str]) -> list[str]:
    """A vocabulary passed in (a trained model's): a list of distinct words starting with the null word, that
    holds every word of the loaded files; otherwise a :class:`DataError` naming the missing words and files."""
    vocab = list(vocab) if isinstance(vocab, (list, tuple)) else vocab
    if not isinstance(vocab, list) or not vocab or not all(isinstance(w, str) for w in vocab) or vocab[0] != NIL or len(set(vocab)) != len(vocab):
        raise DataError(f"vocab must be a list of distinct words whose first is the null word {NIL!r} (a run's vocab.json), got {str(vocab)[:80]}")
    known = set(vocab)
    missing: dict[str, list[str]] = {}
    for key, examples in parsed.items():
        words = build_vocab(examples)[1:]
        for word in words:
            if word not in known:
                missing.setdefault(word, []).append(str(root / paths[key]))
    if missing:
        shown = ", ".join(map(repr, sorted(missing)[:10])) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        files = sorted({f for fs in missing.values() for f in fs})
        raise UnreadableDataError(
            f"{len(missing)} word(s) of {', '.join(files)} are not in the given vocabulary of {len(vocab)} words: {shown}. "
            "A trained model reads only the words it was trained with: use stories written with its words, or train on data that holds these"
        )
    return vocab


def split_per_task(task: torch.Tensor, val_fraction: float, seed: int, mode: str = "random") -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation split of each task's rows separately.

    Args:
        task: int64 ``[Q]``, the task of each row.
        val_fraction: fraction of each task's rows held out.
        seed: seed of every task's permutation (see :func:`overlooked.data.base.split_train_val`).
        mode: ``"random"`` (a seeded random ``val_fraction`` of each task) or ``"last"`` (the last
            ``Q_t - floor((1 - val_fraction) Q_t)`` rows of each task, in file order, as the authors' Matlab
            code holds out ``floor(0.9 Q) + 1 .. Q``; ``seed`` is then unused).

    Returns:
        ``(train_idx, val_idx)``: disjoint, sorted row indices covering ``range(Q)``.

    >>> tr, va = split_per_task(torch.tensor([1, 1, 1, 1, 2, 2, 2, 2]), 0.25, seed=0)
    >>> len(tr), len(va), sorted(tr.tolist() + va.tolist()) == list(range(8))
    (6, 2, True)
    >>> [x.tolist() for x in split_per_task(torch.tensor([1, 1, 1, 1, 2, 2, 2, 2]), 0.25, seed=0, mode="last")]
    [[0, 1, 2, 4, 5, 6], [3, 7]]
    """
    if mode not in ("random", "last"):
        raise DataError(f"val_split must be 'random' or 'last', got {mode!r}")
    if not 0.0 <= val_fraction < 1.0:  # NaN too
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train_parts, val_parts = [torch.empty(0, dtype=torch.int64)], [torch.empty(0, dtype=torch.int64)]
    for t in task.unique(sorted=True).tolist():
        rows = (task == t).nonzero().squeeze(1)  # [Q_t]
        if mode == "last":
            # floor((1 - f) Q) as the authors' code, without the float error of (1 - f) Q (0.7 * 90 = 62.99...: 62,
            # holding out 28 where split_train_val holds out round(0.3 * 90) = 27)
            cut = math.floor((1 - val_fraction) * len(rows) + 1e-9)
            train_idx, val_idx = torch.arange(cut), torch.arange(cut, len(rows))
        else:
            train_idx, val_idx = split_train_val(len(rows), val_fraction, seed)
        train_parts.append(rows[train_idx])
        val_parts.append(rows[val_idx])
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def _task_list(tasks: int | str | Iterable[int]) -> list[int]:
    if tasks == "all":
        return list(TASK_NAMES)
    if tasks is None or isinstance(tasks, (float, bool, dict)):
        raise DataError(f"tasks must be 'all', an int 1..20 or a list of them; got {tasks!r}")
    items = [tasks] if isinstance(tasks, int) or isinstance(tasks, str) else list(tasks)
    bad = [t for t in items if isinstance(t, bool) or not isinstance(t, int) or t not in TASK_NAMES]
    if bad or not items:
        shown = repr(tasks) if len(items) <= 25 else f"{len(items):,} values, {', '.join(map(repr, bad[:5]))}{', ...' if len(bad) > 5 else ''} among them"
        raise DataError(f"tasks must be 'all', an int 1..20 or a list of them; got {shown}")
    return sorted(set(items))


@DATASETS.register("babi", downloads=("babi",))
def load_babi(
    tasks: int | str | Iterable[int] = (1,),
    size: str = "en",
    data_dir: str | os.PathLike[str] | None = None,
    memory_size: int = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
    download: bool = False,
    trim_memory: bool = False,
    val_split: str = "random",
    verify: bool = True,
    vocab: Sequence[str] | None = None,
    sentence_len: int | None = None,
) -> Splits:
    """bAbI tasks as :class:`Splits` for memory networks.

    The vocabulary is shared over the train and test files of the loaded tasks. Memory holds the last
    ``memory_size`` statements before each question. Validation is ``val_fraction`` of each task's
    training questions.

    Args:
        tasks: a task number 1..20, a list of them, or ``"all"``.
        size: ``"en"`` (1k training questions per task) or ``"en-10k"``.
        data_dir: the data root; see :func:`overlooked.data.store.resolve_data_dir`.
        memory_size: ``M``, memory slots per question.
        val_fraction: fraction of each task's training questions held out for validation.
        seed: seed of the train/validation split.
        download: fetch missing files instead of raising.
        trim_memory: use ``min(memory_size, the longest training story in statements)`` slots, as the
            authors' Matlab code sizes its memory (``config.sz = min(50, size(story, 2))``). It matters when
            empty slots take part in addressing (MemN2N ``padding="attend"``): their number sets the sink.
        val_split: ``"random"`` (a seeded random ``val_fraction`` of each task's questions) or ``"last"``
            (the last ``val_fraction`` of each task's questions in file order, as the authors' Matlab code
            holds out; see :func:`split_per_task`).
        verify: check each file against the official release's checksum (the default). ``False`` reads the
            files at the same paths as they are, for an edited copy or your own bAbI-format tasks; the run's
            ``data_fingerprint`` then tells its data from the official one (it hashes the encoded tensors: a word
            renamed everywhere encodes alike and keeps the fingerprint; the run's ``vocab.json`` tells them apart),
            and a malformed line is reported with its file and line number.
        vocab: encode with this vocabulary (``vocab[0]`` the null word) instead of one built from the
            loaded files: a trained model's (``RUN/vocab.json``), to read other tasks or your own stories with
            it. A word it lacks is refused, named with the file it occurs in.
        sentence_len: words per sentence slot (default: the longest sentence loaded); a trained model's, for
            encodings that depend on the padded width (MemN2N ``pe_length=padded``). Shorter than a loaded
            sentence is refused.

    Returns:
        Splits with the tensors of :func:`encode_examples`; ``meta`` holds ``vocab``, ``vocab_size``,
        ``num_classes`` (= ``vocab_size``: the answer is a word), ``memory_size``, ``sentence_len``, ``tasks``,
        ``size`` and ``name``.

    Raises:
        DataError: bad arguments, a missing file (named with the folder looked in), a file that fails its
            checksum, or a malformed line.
    """
    task_list = _task_list(tasks)
    if size not in SIZES:
        raise DataError(f"unknown bAbI size {size!r}; expected one of {', '.join(map(repr, SIZES))}")
    if not is_count(memory_size):
        raise DataError(f"memory_size must be a positive int, got {memory_size!r}")
    memory_size = int(memory_size)
    if sentence_len is not None and not is_count(sentence_len):
        raise DataError(f"sentence_len must be a positive int, got {sentence_len!r}")
    paths = {(t, split): task_path(t, size, split) for t in task_list for split in SPLITS}
    root = store.ensure("babi", data_dir, download, files=list(paths.values()), verify_checksums=verify)
    parsed = {key: read_babi_file(root / rel) for key, rel in paths.items()}
    train = [(t, ex) for t in task_list for ex in parsed[t, "train"]]
    test = [(t, ex) for t in task_list for ex in parsed[t, "test"]]
    every = [ex for _, ex in train + test]
    if not every:
        raise DataError(f"no questions in {', '.join(str(root / p) for p in paths.values())}. {_FIX}")
    if vocab is None:
        vocab = build_vocab(every)
    else:
        vocab = _given_vocab(vocab, parsed, root, paths)
    word_index = {w: i for i, w in enumerate(vocab)}
    longest = max(len(s) for s in _unique_sentences(every))
    if sentence_len is None:
        sentence_len = longest
    elif sentence_len < longest:
        raise UnreadableDataError(f"sentence_len={sentence_len!r} is shorter than the longest sentence loaded ({longest} words): a sentence slot must hold every sentence")
    support_len = max(len(ex.supporting) for ex in every)
    if trim_memory:
        memory_size = min(memory_size, max(len(ex.story) for _, ex in train))
    longest_story = max((len(ex.story) for ex in every), default=0)
    padded = len(every) * memory_size * _BYTES_PER_SLOT
    if memory_size > longest_story and padded > _MAX_PADDED_BYTES:  # slots no story fills, by the gigabyte
        raise DataError(
            f"memory_size={memory_size:,} pads each of the {len(every):,} questions loaded to that many slots (about "
            f"{padded / 2**30:,.0f} GiB), while the longest story has {longest_story} statements. Fix: memory_size <= "
            f"{longest_story} (the papers use 50), or data.kwargs.trim_memory=true"
        )

    def encode(pairs: list[tuple[int, BabiExample]]) -> ArrayDataset:
        examples = [ex for _, ex in pairs]
        task_of = [t for t, _ in pairs]
        return ArrayDataset(encode_examples(examples, task_of, word_index, memory_size, sentence_len, support_len))

    full_train = encode(train)
    train_idx, val_idx = split_per_task(full_train.tensors["task"], val_fraction, seed, val_split)
    # questions (train and validation) with a supporting fact older than the memory holds: it is -1 in their
    # supporting slots, so a loss or statistic on the supporting facts does not see it
    dropped = sum(1 for _, ex in train if any(i < len(ex.story) - memory_size for i in ex.supporting))
    return Splits(
        train=full_train.subset(train_idx),
        val=full_train.subset(val_idx),
        test=encode(test),
        input_keys=BABI_INPUT_KEYS,
        target_key="answer",
        meta={
            "vocab": vocab,
            "vocab_size": len(vocab),
            "num_classes": len(vocab),
            "memory_size": memory_size,
            "sentence_len": sentence_len,
            "tasks": task_list,
            "size": size,
            "name": "babi",
            "group_key": "task",
            "supporting_dropped": dropped,
        },
    )
