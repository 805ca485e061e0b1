#!/usr/bin/env python3
"""Trains model variants on a data set in the dm2s2 format over several seeds with dm2s2_train, then
scores each on the test split with dm2s2_predict --metrics --faithfulness, and writes the test metrics
and the faithfulness of every attribution method (ERASER comprehensiveness and sufficiency, planted-cue
hits where the records carry cues) as JSON and as Markdown tables. Standard library only.

    python3 scripts/explanation_study.py --data data/movies --tools build/gcc/examples --out movies_study \\
        --variant dm2s2,r1:dm2s2:'{"residual": 1}' --variant dm2s2,r0:dm2s2:'{"residual": 0}' --variant cls:cls: \\
        [--vocab data/vocab/bert-base-uncased-vocab.txt] [--seeds 1 2 3] [--epochs 5] [--faithfulness-records 200]

A variant is NAME:POOLING:CONFIG, CONFIG a JSON object for dm2s2_train --config (may be empty). Results
are appended to OUT.json as each run ends, so an interrupted study keeps what it finished; a run
already in OUT.json is not repeated. OUT.md gets the tables."""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

METHODS = ["attention", "occlusion", "gradient", "integrated-gradients", "random"]


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def mean_std(values, digits=3):
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{round(statistics.mean(values), digits) + 0.0:.{digits}f} ± {std:.{digits}f}"


def tables(results, seeds):
    names = list(dict.fromkeys(r["variant"] for r in results))
    metric_names = sorted({m for r in results for m in r["metrics"]})
    lines = [f"Test metrics (mean ± std over seeds {', '.join(map(str, seeds))}):", "",
             "| variant | " + " | ".join(metric_names) + " | training time (s) |",
             "| --- |" + " --- |" * (len(metric_names) + 1)]
    for name in names:
        runs = [r for r in results if r["variant"] == name]
        cells = [mean_std([r["metrics"][m] for r in runs]) for m in metric_names]
        cells.append(mean_std([r["seconds"] for r in runs], 1))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    has_cues = any("cue_hits" in m for r in results for m in r["faithfulness"]["methods"].values())
    lines += ["", "Faithfulness on the first test records (mean over seeds): comprehensiveness ↑ / sufficiency ↓"
              + (" / cue hits ↑" if has_cues else "") + "; ERASER AOPC over 1, 5, 10, 20, 50 % of the elements.", "",
              "| variant | " + " | ".join(METHODS) + " |", "| --- |" + " --- |" * len(METHODS)]
    for name in names:
        runs = [r for r in results if r["variant"] == name]
        cells = []
        for method in METHODS:
            measured = [r["faithfulness"]["methods"][method] for r in runs if method in r["faithfulness"]["methods"]]
            if not measured:
                cells.append("–")
                continue
            cell = (f"{round(statistics.mean(m['comprehensiveness'] for m in measured), 3) + 0.0:.3f} / "
                    f"{round(statistics.mean(m['sufficiency'] for m in measured), 3) + 0.0:.3f}")
            if has_cues:
                cell += f" / {statistics.mean(m.get('cue_hits', 0.0) for m in measured):.2f}"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--tools", required=True, type=Path, help="directory holding dm2s2_train and dm2s2_predict")
    parser.add_argument("--out", required=True, type=Path, help="OUT.json and OUT.md are written")
    parser.add_argument("--vocab", default="data/vocab/bert-base-uncased-vocab.txt")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--faithfulness-records", type=int, default=200)
    parser.add_argument("--variant", action="append", required=True, help="NAME:POOLING:CONFIG")
    args = parser.parse_args()

    out_json, out_md = args.out.with_suffix(".json"), args.out.with_suffix(".md")
    results = json.loads(out_json.read_text()) if out_json.exists() else []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in args.variant:
            name, pooling, config = variant.split(":", 2)
            for seed in args.seeds:
                if any(r["variant"] == name and r["seed"] == seed for r in results):
                    continue
                model = Path(scratch) / f"{len(results)}"
                command = [str(args.tools / "dm2s2_train"), "--schema", str(args.data / "schema.json"),
                           "--train", str(args.data / "train.jsonl"), "--valid", str(args.data / "valid.jsonl"),
                           "--out", str(model), "--pooling", pooling, "--seed", str(seed), "--epochs", str(args.epochs),
                           "--vocab", args.vocab]
                if config.strip():
                    config_file = Path(scratch) / f"{len(results)}.json"
                    config_file.write_text(config)
                    command += ["--config", str(config_file)]
                start = time.time()
                run(command)
                seconds = json.loads((model / "metrics.json").read_text())["train_seconds"]
                run([str(args.tools / "dm2s2_predict"), "--model", str(model), "--data", str(args.data / "test.jsonl"),
                     "--out", str(model / "test_predictions.jsonl"), "--metrics", str(model / "test_metrics.json"),
                     "--faithfulness", str(model / "faithfulness.json"),
                     "--faithfulness-records", str(args.faithfulness_records)])
                metrics = json.loads((model / "test_metrics.json").read_text())
                metrics.pop("records", None)
                faithfulness = json.loads((model / "faithfulness.json").read_text())
                results.append({"variant": name, "pooling": pooling, "config": config, "seed": seed, "metrics": metrics,
                                "seconds": seconds, "faithfulness": faithfulness})
                out_json.write_text(json.dumps(results, indent=1) + "\n")
                print(f"{name} seed {seed}: {metrics} ({time.time() - start:.0f} s)", flush=True)
    out_md.write_text(tables(results, args.seeds), encoding="utf-8")
    print(out_md.read_text())


if __name__ == "__main__":
    main()
