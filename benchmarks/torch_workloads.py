#!/usr/bin/env python3
"""PyTorch side of the W1-W3 workloads (see benchmarks/README.md).

Reads the shapes and packed lengths that `dm2s2_bench_workloads --w1_lengths=FILE` wrote, builds the
same BERT-base encoder as torch.nn.TransformerEncoder (post-LN, GELU, eps 1e-12) and times it:

  w1-padded  eval forward of the padded batch with a key-padding mask (nested tensors off);
  w1-nested  the same with nested tensors on (PyTorch's padding-free path);
  w2         one training step: word embeddings, encoder, [CLS] head, cross-entropy, clipping at 1.0
             and AdamW, on the padded batch, dropout 0.1 as in BERT;
  w3-infer, w3-train  the small model (4 layers, hidden 256, 4 heads) at batch 64;
  w4-batch   eval forward of the first --batch records of W3's lengths (BERT-base, nested tensors
             and padded, the better reported);
  w4-length  eval forward of one sequence of --length rows;

Prints one JSON object: the median and all times in milliseconds, and the peak resident memory of the
process. Run each workload in its own process so that the memory figure is that workload's.
"""
import argparse
import json
import resource
import statistics
import time

import torch
from torch import nn


def encoder(shape, dropout, nested):
    layer = nn.TransformerEncoderLayer(shape["hidden"], shape["heads"], shape["intermediate"], dropout=dropout,
                                       activation="gelu", layer_norm_eps=1e-12, batch_first=True)
    return nn.TransformerEncoder(layer, shape["layers"], enable_nested_tensor=nested)


def padding_mask(lengths):
    longest = max(lengths)
    return torch.arange(longest)[None, :] >= torch.tensor(lengths)[:, None]  # True = padding


def time_it(step, repeats, warmup):
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return times


class Classifier(nn.Module):
    """Word and position embeddings, LayerNorm, the encoder and a linear head on the first row."""

    def __init__(self, shape):
        super().__init__()
        h = shape["hidden"]
        self.words = nn.Embedding(shape["vocab"], h)
        self.positions = nn.Embedding(512, h)
        self.norm = nn.LayerNorm(h, eps=1e-12)
        self.encoder = encoder(shape, 0.1, nested=False)
        self.head = nn.Linear(h, shape["classes"])

    def forward(self, ids, mask):
        x = self.norm(self.words(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))[None])
        return self.head(self.encoder(x, src_key_padding_mask=mask)[:, 0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", required=True, help="JSON written by dm2s2_bench_workloads --w1_lengths")
    parser.add_argument("--workload", required=True,
                        choices=["w1-padded", "w1-nested", "w2", "w3-infer", "w3-train", "w4-batch", "w4-length"])
    parser.add_argument("--batch", type=int, default=1, help="w4-batch: records")
    parser.add_argument("--length", type=int, default=128, help="w4-length: rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    with open(args.shapes) as f:
        shape = json.load(f)
    lengths = shape["lengths"]
    if args.workload.startswith("w3"):
        shape = dict(shape, hidden=256, layers=4, heads=4, intermediate=1024)
        lengths = shape["w3_lengths"]
    elif args.workload == "w4-batch":
        lengths = shape["w3_lengths"][:args.batch]
    elif args.workload == "w4-length":
        lengths = [args.length]
    mask = padding_mask(lengths)
    batch, longest = mask.shape

    if args.workload in ("w1-padded", "w1-nested", "w3-infer", "w4-batch", "w4-length"):
        x = torch.randn(batch, longest, shape["hidden"])
        modes = [args.workload != "w1-padded"] if args.workload.startswith("w1") else [True, False]
        models = [encoder(shape, 0.0, nested=nested).eval() for nested in modes]

        def run(model):
            with torch.inference_mode():
                model(x, src_key_padding_mask=mask)

        # Where both modes are timed, the faster one is kept (after a trial of each).
        model = min(models, key=lambda m: min(time_it(lambda: run(m), 2, 1)))

        def step():
            run(model)
    else:
        model = Classifier(shape).train()
        ids = torch.randint(1000, 30000, (batch, longest))
        targets = torch.arange(batch) % shape["classes"]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)

        def step():
            optimizer.zero_grad(set_to_none=False)
            loss = nn.functional.cross_entropy(model(ids, mask), targets)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

    times = time_it(step, args.repeats, args.warmup)
    print(json.dumps({"workload": args.workload, "threads": args.threads, "median_ms": statistics.median(times),
                      "times_ms": times, "tokens": sum(lengths), "padded_length": longest,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
