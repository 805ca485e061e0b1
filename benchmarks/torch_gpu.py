#!/usr/bin/env python3
"""PyTorch side of the GPU workload G1 (see benchmarks/README.md and benchmarks/bench_gpu.cpp).

Reads the shapes and packed lengths that `dm2s2_bench_gpu --lengths FILE` wrote and builds the same
BERT-base encoder as torch.nn.TransformerEncoder (post-LN, GELU, eps 1e-12) on the GPU:

  infer    eval forward of the padded batch with a key-padding mask; the faster of nested tensors off
           (padded) and on (padding-free), both on the fused scaled_dot_product_attention path;
  train    one training step: word and position embeddings, encoder, [CLS] head, cross-entropy,
           clipping at 1.0 and AdamW, dropout 0.1, on the padded batch;

in --precision fp32 (TF32 off) or bf16 (inference: the model in bf16; training: fp32 weights under
bf16 autocast). Prints one JSON object: the median and all times in milliseconds and the peak
device memory allocated (torch.cuda.max_memory_allocated).
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn

from torch_workloads import Classifier, encoder  # the same model as on the CPU side


def time_it(step, repeats, warmup):
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", required=True, help="JSON written by dm2s2_bench_gpu --lengths")
    parser.add_argument("--workload", required=True, choices=["infer", "train"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.device("cuda")
    with open(args.shapes) as f:
        shape = json.load(f)
    lengths = shape["lengths"]
    longest = max(lengths)
    mask = (torch.arange(longest)[None, :] >= torch.tensor(lengths)[:, None]).to(device)  # True = padding
    batch = len(lengths)
    bf16 = args.precision == "bf16"

    if args.workload == "infer":
        dtype = torch.bfloat16 if bf16 else torch.float32
        x = torch.randn(batch, longest, shape["hidden"], device=device, dtype=dtype)
        candidates = {}
        for nested in (False, True):
            model = encoder(shape, 0.0, nested).to(device=device, dtype=dtype).eval()

            def run(m=model):
                with torch.inference_mode():
                    m(x, src_key_padding_mask=mask)

            candidates["nested" if nested else "padded"] = run
        trials = {name: min(time_it(run, 3, 2)) for name, run in candidates.items()}
        mode = min(trials, key=trials.get)
        step = candidates[mode]
    else:
        mode = "padded"
        model = Classifier(shape).to(device).train()
        ids = torch.randint(1000, 30000, (batch, longest), device=device)
        targets = torch.arange(batch, device=device) % shape["classes"]
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)

        def step():
            optimizer.zero_grad(set_to_none=False)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = nn.functional.cross_entropy(model(ids, mask), targets)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

    torch.cuda.reset_peak_memory_stats()
    times = time_it(step, args.repeats, args.warmup)
    print(json.dumps({"workload": f"torch-{args.workload}-{args.precision}", "mode": mode,
                      "median_ms": statistics.median(times), "times_ms": times, "tokens": sum(lengths),
                      "padded_length": longest, "peak_device_mib": torch.cuda.max_memory_allocated() / 2**20,
                      "torch": torch.__version__, "device": torch.cuda.get_device_name()}))


if __name__ == "__main__":
    main()
