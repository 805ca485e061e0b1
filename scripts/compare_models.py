#!/usr/bin/env python3
"""Trains DM²S² and every baseline on a data set in the dm2s2 format over several seeds with the
dm2s2_train and dm2s2_predict tools, and writes a Markdown table of test metrics (mean ± std over the
seeds) and training time. Standard library only.

    python3 scripts/compare_models.py --data data/movies --tools build/gcc/examples --out docs/results_movies.md \\
        [--vocab data/vocab/bert-base-uncased-vocab.txt] [--seeds 1 2 3] [--epochs 5] [--config model.json]

The data directory holds schema.json, train.jsonl, valid.jsonl and test.jsonl. Each run keeps the
epoch with the best validation score and is scored once on the test split."""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POOLINGS = ["dm2s2", "no_intra", "no_inter", "mean", "cls", "mid_fusion", "dm2s"]


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--tools", required=True, type=Path, help="directory holding dm2s2_train and dm2s2_predict")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--vocab", default="data/vocab/bert-base-uncased-vocab.txt")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--config", help="model configuration for dm2s2_train --config")
    parser.add_argument("--poolings", nargs="+", default=POOLINGS)
    args = parser.parse_args()

    results = {}  # pooling -> list of (metrics, seconds)
    with tempfile.TemporaryDirectory() as scratch:
        for pooling in args.poolings:
            for seed in args.seeds:
                model = Path(scratch) / f"{pooling}-{seed}"
                command = [str(args.tools / "dm2s2_train"), "--schema", str(args.data / "schema.json"),
                           "--train", str(args.data / "train.jsonl"), "--valid", str(args.data / "valid.jsonl"),
                           "--out", str(model), "--pooling", pooling, "--seed", str(seed), "--epochs", str(args.epochs),
                           "--vocab", args.vocab]
                if args.config:
                    command += ["--config", args.config]
                start = time.time()
                run(command)
                seconds = json.loads((model / "metrics.json").read_text())["train_seconds"]
                run([str(args.tools / "dm2s2_predict"), "--model", str(model), "--data", str(args.data / "test.jsonl"),
                     "--out", str(model / "test_predictions.jsonl"), "--metrics", str(model / "test_metrics.json")])
                metrics = json.loads((model / "test_metrics.json").read_text())
                metrics.pop("records", None)
                results.setdefault(pooling, []).append((metrics, seconds))
                print(f"{pooling} seed {seed}: {metrics} ({time.time() - start:.0f} s)", flush=True)

    names = sorted({name for runs in results.values() for metrics, _ in runs for name in metrics})
    lines = [f"Test metrics on `{args.data}` (mean ± std over seeds {', '.join(map(str, args.seeds))}; "
             f"{args.epochs} epochs, the best validation epoch kept).", "",
             "| pooling | " + " | ".join(names) + " | training time (s) |",
             "| --- |" + " --- |" * (len(names) + 1)]
    for pooling, runs in results.items():
        cells = []
        for name in names + ["seconds"]:
            values = [seconds if name == "seconds" else metrics[name] for metrics, seconds in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.1f} ± {std:.1f}" if name == "seconds"
                         else f"{statistics.mean(values):.3f} ± {std:.3f}")
        lines.append(f"| {pooling} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
