"""Every command the README and the family pages show still parses, and every `overlooked train` line among them
names a packaged config whose overrides (and each `--each` value) pass the full config check, so a renamed
config, key or flag fails here rather than in a reader's terminal. Nothing is trained: the trainer's entry points
are replaced by recorders."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from overlooked import api
from overlooked.cli import build_parser, main
from overlooked.config import apply_overrides

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", "docs/memory.md", "docs/spiking.md", "docs/capsules.md", "docs/fair_comparison.md"]
PLACEHOLDERS = {"N": "1000", "D": "0.001"}  # a number the reader fills in (RUN, A, B stay: any text parses)
SUBCOMMANDS = ("train", "evaluate", "explain", "ask", "show", "list", "data", "bench", "demo", "report", "export-nir", "convert")


def documented_commands(text: str) -> list[str]:
    """Command lines of fenced blocks (comments cut, a leading ``$ `` or ``torchrun ... -m`` dropped) and of inline
    code spans that start with ``overlooked``; the ``overlooked`` word is dropped."""
    found = []
    fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            found.append(line.split(" #")[0].strip().removeprefix("$ "))
        else:
            found += re.findall(r"`((?:\w+=\S+ )?overlooked [^`]+)`", line)
    commands = []
    for line in found:
        line = re.sub(r"^torchrun .*?-m overlooked ", "overlooked ", re.sub(r"^\w+=\S+ ", "", line))
        if line.startswith("overlooked "):
            commands.append(line.removeprefix("overlooked "))
    return commands


def test_the_extractor_finds_block_and_inline_commands():
    text = "Run `overlooked train a x.y=1` or\n```sh\n$ overlooked list   # all\ntorchrun --nproc_per_node=2 -m overlooked train b\n```\n`OVERLOOKED_DATA=d overlooked demo memory`"
    assert documented_commands(text) == ["train a x.y=1", "list", "train b", "demo memory"]


def _cases() -> list[tuple[str, str]]:
    cases = []
    for page in PAGES:
        for cmd in documented_commands((ROOT / page).read_text()):
            words = cmd.split()
            # A bare subcommand in prose ("see `overlooked evaluate`") and synopses with [optional] parts are not
            # command lines to run.
            if len(words) < 2 or words[0] not in SUBCOMMANDS or any(w.startswith("[") and w != "[1]" and "=" not in w for w in words):
                continue
            if "..." in cmd or words[1] in ("CONFIG",):
                continue
            cases.append((page, cmd))
    return cases


CASES = _cases()


def test_the_pages_show_enough_commands_to_be_worth_checking():
    trains = [c for _, c in CASES if c.startswith("train ")]
    assert len(CASES) >= 40 and len(trains) >= 15, (len(CASES), len(trains))


@pytest.mark.parametrize(("page", "command"), CASES, ids=[f"{p}:{c}" for p, c in CASES])
def test_documented_command(page, command, monkeypatch, tmp_path):
    argv = [PLACEHOLDERS.get(w, w) for w in shlex.split(command)]
    if argv[0] != "train":
        args, extra = build_parser().parse_known_args(argv)  # flags and arguments as the CLI reads them
        assert all("=" in e for e in extra), extra
        return
    calls = []
    monkeypatch.setattr(api, "train", lambda cfg, **kw: calls.append((cfg, None, None)) or (tmp_path, {}))
    monkeypatch.setattr(api, "train_each", lambda cfg, key, values, **kw: calls.append((cfg, key, values)) or (tmp_path, {}))
    assert main(argv) == 0, f"{page}: `overlooked {command}` is refused"
    ((cfg, key, values),) = calls
    for value in values or []:  # each value of --each passes the check a real run makes before it starts
        api.check_config(apply_overrides(cfg, [f"{key}={json.dumps(value)}"]))
