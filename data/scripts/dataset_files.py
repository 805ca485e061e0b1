"""Writes a converted dataset in the dm2s2 data format: the schema and a fixed seeded split of the
records into train (70 %), valid (10 %) and test (20 %), one JSON object per line. Shared by the
conversion scripts in this folder. Standard library only."""

import json
import random


def write_dataset(records, schema, out, describe):
    """Shuffles `records` with seed 2022, splits them 70/10/20 and writes OUT/schema.json and
    OUT/{train,valid,test}.jsonl; prints one line per split, `describe(rows)` saying what it holds."""
    records = list(records)
    random.Random(2022).shuffle(records)
    n = len(records)
    cut_train, cut_valid = round(0.7 * n), round(0.8 * n)
    splits = {"train": records[:cut_train], "valid": records[cut_train:cut_valid], "test": records[cut_valid:]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "schema.json").write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
    for name, rows in splits.items():
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{name}: {describe(rows)}")
