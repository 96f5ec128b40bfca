"""Apply small realistic bugs (mutants) to the source one at a time and see whether the tests fail.

    python scripts/mutation_audit.py MUTANTS.yaml OUT_DIR [--jobs 2]

MUTANTS.yaml holds ``tests`` (the pytest arguments every mutant runs, from the repository root) and
``mutants``: a list of ``{id, file, old, new, why}``, ``old`` occurring exactly once in ``file`` (under src/).
Each mutant runs in its own copy of src/ (put first on PYTHONPATH; the checkout is never changed) with
``pytest -x``: killed when a test fails, survived when they all pass. OUT_DIR gets ``log.jsonl`` (one record a
mutant: outcome, the first failing test, seconds) and ``summary.md``. Compiled kernels are not mutated here
(their build cache is keyed by source), so mutants touch Python only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load(path: Path) -> tuple[list[str], list[dict]]:
    spec = yaml.safe_load(path.read_text())
    mutants = spec["mutants"]
    ids = [m["id"] for m in mutants]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: mutant ids repeat")
    for m in mutants:
        text = (ROOT / "src" / m["file"]).read_text()
        if text.count(m["old"]) != 1:
            raise SystemExit(f"{path}: mutant {m['id']}: {m['old']!r} occurs {text.count(m['old'])} times in src/{m['file']}, not once")
    return list(spec["tests"]), mutants


def _env(**extra: str) -> dict[str, str]:
    """The environment every pytest here runs in, the unmutated baseline included: one thread, no bytecode."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", **extra}


def run_one(mutant: dict, tests: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"mut_{mutant['id']}_") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        target = src / mutant["file"]
        target.write_text(target.read_text().replace(mutant["old"], mutant["new"]))
        env = _env(PYTHONPATH=str(src))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore", *tests], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, flags=re.M)
    outcome = "survived" if proc.returncode == 0 else "killed" if proc.returncode == 1 else f"error (pytest exit {proc.returncode})"
    return {"id": mutant["id"], "file": mutant["file"], "why": mutant.get("why", ""), "outcome": outcome, "first_failure": failed[0] if failed else None, "seconds": round(seconds, 1), "tail": proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    tests, mutants = load(args.mutants)
    baseline = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", *tests], cwd=ROOT, env=_env(), capture_output=True, text=True)
    if baseline.returncode != 0:
        raise SystemExit(f"the unmutated tests do not pass; fix that first:\n{baseline.stdout[-2000:]}")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool, (args.out / "log.jsonl").open("w") as log:
        for result in pool.map(lambda m: run_one(m, tests), mutants):
            log.write(json.dumps(result) + "\n")
            log.flush()
            print(f"{result['id']}: {result['outcome']} ({result['seconds']} s) {result['first_failure'] or ''}", flush=True)
            results.append(result)
    killed = sum(r["outcome"] == "killed" for r in results)
    survived = sum(r["outcome"] == "survived" for r in results)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    lines = [
        f"# Mutation audit: {args.mutants.name}",
        "",
        f"git {commit}; tests: `pytest -x {' '.join(tests)}`; {len(results)} mutants, **{killed} killed**, "
        f"{survived} survived, {len(results) - killed - survived} other.",
        "",
        "| mutant | file | what it breaks | outcome | first failing test |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['id']} | {r['file']} | {r['why']} | {r['outcome']} | {r['first_failure'] or ''} |" for r in results]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"{killed} of {len(results)} killed; {args.out / 'summary.md'}")


if __name__ == "__main__":
    main()
