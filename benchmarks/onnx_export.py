#!/usr/bin/env python3
"""Exports W1's BERT-base encoder to ONNX for the ONNX Runtime side (see benchmarks/README.md).

Builds the encoder as benchmarks/torch_workloads.py does (nn.TransformerEncoder: post-LN, GELU, eps
1e-12, the sizes of the shapes file written by `dm2s2_bench_workloads --w1_lengths=FILE`), in eval mode,
and exports it with torch.onnx.export at opset 14 for W1's padded shapes. Inputs: `x`, float32
[batch, length, hidden], and `mask`, bool [batch, length] (true: padding); output `y`, float32
[batch, length, hidden]. Batch and length are dynamic axes, so the file serves W1 and the batch-1
latencies alike.

nn.TransformerEncoder deep-copies one layer, so its 12 layers start with equal values, and the exporter
merges equal initializers into one. Each layer is drawn anew here (the same initialisers), so that the
model holds 12 layers' weights in memory as PyTorch and dm2s2 do.
"""
import argparse
import json

import torch
from torch import nn

from torch_workloads import encoder, padding_mask


def redraw(layer):
    """Draws a layer's parameters anew as its constructors did: the submodules first, then the
    attention, which zeroes its biases after its output projection was built."""
    for module in reversed(list(layer.modules())):
        if isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, (nn.Linear, nn.LayerNorm)):
            module.reset_parameters()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", required=True, help="JSON written by dm2s2_bench_workloads --w1_lengths")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    args = parser.parse_args()

    torch.manual_seed(0)
    with open(args.shapes) as f:
        shape = json.load(f)
    model = encoder(shape, 0.0, nested=False).eval()
    for layer in model.layers[1:]:
        redraw(layer)
    mask = padding_mask(shape["lengths"])
    x = torch.randn(*mask.shape, shape["hidden"])
    axes = {0: "batch", 1: "length"}
    # Traced in eval mode with gradients on: the regular (not the fused fast-path) layers are exported.
    torch.onnx.export(model, (x, None, mask), args.output, opset_version=14, input_names=["x", "mask"],
                      output_names=["y"], dynamic_axes={"x": axes, "mask": axes, "y": axes})


if __name__ == "__main__":
    main()
