#!/usr/bin/env python3
"""Converts vega-datasets' movies.json into the dm2s2 data format: schema.json and train/valid/test
JSON Lines with a fixed seeded split (70/10/20). Standard library only.

    python3 data/scripts/movies_to_jsonl.py [data/movies/movies.json] [data/movies]

Task: Major Genre (multiclass). The 275 films without a genre are left out (they cannot be trained
or scored on); every other film is kept with whatever fields it has. Modalities: the title and the
director as text; distributor, MPAA rating, source and creative type as categories; release year,
running time, ratings and votes as numbers; money figures (grosses, DVD sales, budget) as log10(1 + x)
since they span six orders of magnitude. Empty strings and nulls are missing fields."""

import json
import math
import re
import sys
from pathlib import Path

from dataset_files import write_dataset

TEXT = {"title": ("Title", 16), "director": ("Director", 8)}
CATEGORICAL = {"distributor": "Distributor", "mpaa_rating": "MPAA Rating", "source": "Source", "creative_type": "Creative Type"}
MONEY = {"us_gross": "US Gross", "worldwide_gross": "Worldwide Gross", "us_dvd_sales": "US DVD Sales",
         "production_budget": "Production Budget"}
NUMBERS = {"running_time": "Running Time min", "rotten_tomatoes_rating": "Rotten Tomatoes Rating", "imdb_rating": "IMDB Rating",
           "imdb_votes": "IMDB Votes"}


def release_year(text):
    match = re.search(r"(\d{4})\s*$", text or "")
    return int(match.group(1)) if match else None


def convert(film):
    record = {}
    for name, (field, _) in TEXT.items():
        if isinstance(film.get(field), str) and film[field].strip():
            record[name] = film[field].strip()
    for name, field in CATEGORICAL.items():
        if isinstance(film.get(field), str) and film[field].strip():
            record[name] = film[field].strip()
    year = release_year(film.get("Release Date"))
    if year is not None:
        record["release_year"] = year
    for name, field in MONEY.items():
        value = film.get(field)
        if isinstance(value, (int, float)) and value >= 0:
            record[name] = round(math.log10(1 + value), 6)
    for name, field in NUMBERS.items():
        value = film.get(field)
        if isinstance(value, (int, float)):
            record[name] = value
    record["genre"] = film["Major Genre"]
    return record


def main():
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "data/movies/movies.json")
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "data/movies")
    films = json.loads(source.read_text(encoding="utf-8"))
    records = []
    for index, film in enumerate(films):
        if film.get("Major Genre"):
            record = {"id": f"film-{index}"}
            record.update(convert(film))
            records.append(record)
    modalities = [{"name": name, "kind": "text", "max_length": length} for name, (_, length) in TEXT.items()]
    modalities += [{"name": name, "kind": "categorical", "max_length": 1} for name in CATEGORICAL]
    modalities += [{"name": name, "kind": "numeric", "max_length": 1}
                   for name in ["release_year", *MONEY, *NUMBERS]]
    schema = {"modalities": modalities, "task": {"type": "multiclass", "target": "genre"}}
    write_dataset(records, schema, out, lambda rows: f"{len(rows)} films")


if __name__ == "__main__":
    main()
