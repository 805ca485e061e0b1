#!/usr/bin/env bash
# Trains DM²S² on the built-in movies data set (genre from title, director, categories and figures),
# then prints its test metrics and the explanation of a few films. About two minutes on two cores.
#
#   bash scripts/movies_demo.sh [OUTPUT_DIR]     (default build/demo/movies_model)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DDM2S2_BUILD_TESTS=OFF -DDM2S2_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build/demo -j"$(nproc)" --target dm2s2_train dm2s2_predict
out=${1:-build/demo/movies_model}
build/demo/examples/dm2s2_train --schema data/movies/schema.json --train data/movies/train.jsonl \
  --valid data/movies/valid.jsonl --out "$out" --vocab data/vocab/bert-base-uncased-vocab.txt
build/demo/examples/dm2s2_predict --model "$out" --data data/movies/test.jsonl --out "$out/test_predictions.jsonl" \
  --metrics "$out/test_metrics.json" --explain "$out/test_explanations.html" --show 5
echo "explanations of every test film: $out/test_explanations.html"
