"""How much the selection rules' ties move a --each --repeats result: for each rule (the paper's lowest training
error, and the highest validation accuracy), on how many values (bAbI tasks) several seeds tie, the mean test
error with the first tied seed (what the summaries report), its range over every choice among the tied seeds,
and the mean when ties are broken by the other rule's statistic. Reads the seed summaries only; chooses nothing.

    python scripts/tie_spread.py results/runs/memn2n_babi1k_authors_ptl-each-20261128-104110
"""

from __future__ import annotations

import glob
import json
import sys


def seeds_per_value(run: str) -> dict[str, list[tuple[int, float, float, float]]]:
    """value folder -> [(seed, train accuracy, validation accuracy, test error %)] in seed order."""
    out = {}
    for folder in sorted(glob.glob(f"{run}/*=*")):
        rows = []
        for path in glob.glob(f"{folder}/seed*/summary.json"):
            s = json.load(open(path))
            rows.append((s["seed"], s["train_accuracy"], s["val_accuracy"], 100 * (1 - s["test_accuracy"])))
        out[folder.rsplit("/", 1)[-1]] = sorted(rows)
    return out


def spread(values: dict[str, list[tuple[int, float, float, float]]], rule: str) -> dict[str, float]:
    idx, other = (1, 2) if rule == "train" else (2, 1)
    first = low = high = broken = 0.0
    tied_values = failed_first = failed_broken = 0
    for rows in values.values():
        best = max(r[idx] for r in rows)
        tied = [r for r in rows if r[idx] == best]
        tied_values += len(tied) > 1
        errors = [r[3] for r in tied]
        pick = max(tied, key=lambda r: (r[other], -r[0]))
        first, low, high, broken = first + tied[0][3], low + min(errors), high + max(errors), broken + pick[3]
        failed_first += tied[0][3] > 5
        failed_broken += pick[3] > 5
    n = len(values)
    return {"tied_values": tied_values, "values": n, "first": first / n, "failed_first": failed_first, "low": low / n, "high": high / n, "broken_by_other": broken / n, "failed_broken": failed_broken}


def main(argv: list[str]) -> int:
    for run in argv:
        values = seeds_per_value(run)
        for rule in ("train", "val"):
            s = spread(values, rule)
            other = "validation" if rule == "train" else "training"
            print(
                f"{run.rstrip('/').rsplit('/', 1)[-1]} rule={rule}: ties on {s['tied_values']}/{s['values']}; first seed {s['first']:.3f}% "
                f"({s['failed_first']} failed); over tie choices {s['low']:.3f}-{s['high']:.3f}%; ties broken by {other} accuracy "
                f"{s['broken_by_other']:.3f}% ({s['failed_broken']} failed)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
