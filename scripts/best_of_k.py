"""How a recipe's best-of-k result is distributed, estimated from a run that trained more than k seeds.

    python scripts/best_of_k.py RUN K [--bar MEAN FAILED] [--json PATH]

RUN is a folder with ``<key>=<value>/seed*/summary.json`` (written by ``overlooked train --each KEY=...
--repeats N`` or by ``scripts/pool_seeds.py``). For each value, every k-subset of its seeds is one equally
likely best-of-k run, and the seed it reports is the one ``overlooked.api.aggregate`` chooses (lowest training
error, the MemN2N paper's rule; highest validation accuracy): test accuracy is only read for the chosen seed,
as in a real run. Values train their own seeds, so they are independent, and the distribution of the mean
test error over values is the convolution of the per-value distributions; the number of failed values
(error > 5%) is carried along. A value with exactly k seeds is a single point: its own spread is not seen,
so the printed spread understates the real one.

This is an analysis of seeds already trained, for reading one best-of-k result against the recipe's spread:
it chooses nothing and changes no reported number.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

from overlooked import api
from overlooked.bench.report import FAILED_ABOVE
from overlooked.stats import error_percent

RULES = ("best_by_train", "best_by_val")


def _error(summary: dict) -> float:
    """Test error in % (95.0% accuracy is exactly 5.0, not failed)."""
    return error_percent(summary["test_accuracy"])


def per_value(run: str | Path, k: int) -> dict[str, dict[str, dict[float, float]]]:
    """Per value folder (``tasks=7``) and rule: {test error %: probability} over the k-subsets of its seeds."""
    run = Path(run)
    values = sorted((p for p in run.iterdir() if p.is_dir() and "=" in p.name), key=lambda p: p.name)
    if not values:
        raise ValueError(f"{run} has no <key>=<value> sub-runs: pass a folder written by --each with --repeats or by pool_seeds.py")
    out: dict[str, dict[str, dict[float, float]]] = {}
    for value in values:
        seeds = api.seed_summary_files(value)
        if len(seeds) < k:
            raise ValueError(f"{value} has {len(seeds)} seeds, fewer than k={k}: train more seeds or lower k")
        summaries = [json.loads(p.read_text()) for p in seeds]
        subsets = list(itertools.combinations(summaries, k))
        dist: dict[str, dict[float, float]] = {rule: {} for rule in RULES}
        if len({s["seed"] for s in summaries}) != len(summaries):
            raise ValueError(f"{value} lists a seed twice: the k-subsets need distinct seeds")
        for subset in subsets:
            agg = api.aggregate(list(subset))
            for rule in RULES:
                chosen = next(s for s in subset if s["seed"] == agg[rule]["seed"])  # seeds are distinct (checked above)
                err = _error(chosen)
                dist[rule][err] = dist[rule].get(err, 0.0) + 1.0 / len(subsets)
        out[value.name] = dist
    return out


def convolve(dists: list[dict[float, float]]) -> dict[tuple[float, int], float]:
    """{(summed error %, failed count): probability} for independent per-value {error %: probability}."""
    total: dict[tuple[float, int], float] = {(0.0, 0): 1.0}
    for dist in dists:
        nxt: dict[tuple[float, int], float] = {}
        for (s, f), p in total.items():
            for err, q in dist.items():
                key = (round(s + err, 6), f + (err > FAILED_ABOVE))
                nxt[key] = nxt.get(key, 0.0) + p * q
        total = nxt
    return total


def quantile(points: list[tuple[float, float]], q: float) -> float:
    """The smallest x with P(X <= x) >= q, for sorted (x, probability) points."""
    acc = 0.0
    for x, p in points:
        acc += p
        if acc >= q - 1e-12:
            return x
    return points[-1][0]


def analyse(run: str | Path, k: int, bar_mean: float | None = None, bar_failed: int | None = None) -> dict:
    values = per_value(run, k)
    n = len(values)
    report: dict = {"run": Path(run).name, "k": k, "values": n, "seeds": {v: len(api.seed_summary_files(Path(run) / v)) for v in values}}
    for rule in RULES:
        joint = convolve([values[v][rule] for v in values])
        means: dict[float, float] = {}
        for (s, _), p in joint.items():
            means[round(s / n, 6)] = means.get(round(s / n, 6), 0.0) + p
        points = sorted(means.items())
        expected = sum(x * p for x, p in points)
        out = {
            "expected_mean_error": expected,
            "std_mean_error": sum(p * (x - expected) ** 2 for x, p in points) ** 0.5,
            "quantiles": {str(q): quantile(points, q) for q in (0.05, 0.25, 0.5, 0.75, 0.95)},
            "expected_failed": sum(f * p for (_, f), p in joint.items()),
            "per_value_expected_error": {v: sum(e * p for e, p in values[v][rule].items()) for v in values},
        }
        if bar_mean is not None:
            out["p_mean_at_most_bar"] = sum(p for x, p in points if x <= bar_mean + 1e-9)
            if bar_failed is not None:
                out["p_bar_met"] = sum(p for (s, f), p in joint.items() if s / n <= bar_mean + 1e-9 and f <= bar_failed)
        report[rule] = out
    if bar_mean is not None:
        report["bar"] = {"mean_error_at_most": bar_mean, "failed_at_most": bar_failed}
    return report


def _print(report: dict) -> None:
    print(f"{report['run']}: best of {report['k']} over {report['values']} values (seeds per value: {sorted(set(report['seeds'].values()))})")
    for rule in RULES:
        r = report[rule]
        q = r["quantiles"]
        line = f"  {rule}: expected mean error {r['expected_mean_error']:.3f}% (std {r['std_mean_error']:.3f}; 5/50/95%: {q['0.05']:.3f} / {q['0.5']:.3f} / {q['0.95']:.3f}); expected failed {r['expected_failed']:.2f}"
        if "p_mean_at_most_bar" in r:
            line += f"; P(mean <= bar) {r['p_mean_at_most_bar']:.3f}"
        if "p_bar_met" in r:
            line += f", P(bar met) {r['p_bar_met']:.3f}"
        print(line)
        spread = {v: e for v, e in r["per_value_expected_error"].items() if report["seeds"][v] > report["k"]}
        if spread:
            print("    expected error where seeds > k: " + ", ".join(f"{v} {e:.2f}" for v, e in spread.items()))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run")
    parser.add_argument("k", type=int)
    parser.add_argument("--bar", nargs=2, metavar=("MEAN", "FAILED"), help="mean error %% and failed count to meet")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"k must be >= 1, got {args.k}")
    bar_mean, bar_failed = (float(args.bar[0]), int(args.bar[1])) if args.bar else (None, None)
    try:
        report = analyse(args.run, args.k, bar_mean, bar_failed)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"best_of_k.py: error: {exc}\n")
    _print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
