#!/usr/bin/env python3
"""PyTorch side of bench_train.cpp: one DM²S² training step (forward, cross-entropy, backward,
clipping, AdamW) on the same planted-task batch (the library's generator is reproduced here) and the
same configuration: post-LN BERT layers with erf GELU, 4 heads, FFN 2H, dropout 0.1, IntraMRA and
InterMRA with residual 1, AdamW.

    /usr/bin/python3 benchmarks/torch_train_step.py [--threads N] [--repeats R]

Prints the median step time for each configuration of bench_train.cpp (batch, hidden, layers)."""

import argparse
import math
import statistics
import time

import torch
from torch import nn

VOCAB, POSITIONS, MODALITIES, CLASSES, DENSE_DIM, CATEGORIES = 64, 32, 3, 3, 8, 10


class Generator:
    """dm2s2::random_generator (xoshiro256** seeded by splitmix64), so the records are the library's."""

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = []
        for _ in range(4):
            seed = (seed + 0x9E3779B97F4A7C15) & self.MASK
            z = ((seed ^ (seed >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
            self.state.append(z ^ (z >> 31))

    @classmethod
    def rotl(cls, x, k):
        return ((x << k) | (x >> (64 - k))) & cls.MASK

    def next(self):
        s = self.state
        result = (self.rotl((s[1] * 5) & self.MASK, 7) * 9) & self.MASK
        t = (s[1] << 17) & self.MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next() >> 11) * 2.0**-53

    def below(self, n):
        return int(self.uniform() * n)

    def normal(self):
        u1, u2 = 1.0 - self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def planted_batch(batch, seed):
    """The records of dm2s2::planted_task(batch, seed) in the padded packed layout:
    [CLS] words [SEP] regions [SEP] tags [SEP], present modalities only."""
    rng, rows, labels = Generator(seed), [], []
    for _ in range(batch):
        label = rng.below(CLASSES)
        words = [10 + rng.below(54) for _ in range(3 + rng.below(10))]
        words[rng.below(len(words))] = 3 + label
        regions = [[rng.normal() for _ in range(DENSE_DIM)] for _ in range(1 + rng.below(6))] if rng.uniform() < 0.7 else []
        tags = [rng.below(CATEGORIES) for _ in range(1 + rng.below(4))] if rng.uniform() < 0.7 else []
        rows.append((words, regions, tags))
        labels.append(label)
    length = max(1 + sum(len(x) + 1 for x in r if x) for r in rows)
    ids = torch.zeros(batch, length, dtype=torch.long)
    types = torch.zeros(batch, length, dtype=torch.long)
    modality = torch.full((batch, length), -1, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.bool)
    dense_slots, dense_rows, cat_slots, cat_ids = [], [], [], []
    for b, (words, regions, tags) in enumerate(rows):
        p = 0
        ids[b, p], mask[b, p] = 1, True
        p += 1
        for m, values in enumerate((words, regions, tags)):
            if not values:
                continue
            for v in values:
                mask[b, p], types[b, p], modality[b, p] = True, m, m
                if m == 0:
                    ids[b, p] = v
                elif m == 1:
                    dense_slots.append(b * length + p)
                    dense_rows.append(v)
                else:
                    cat_slots.append(b * length + p)
                    cat_ids.append(v)
                p += 1
            ids[b, p], types[b, p], mask[b, p] = 2, m, True
            p += 1
    return dict(ids=ids, types=types, modality=modality, mask=mask,
                dense_slots=torch.tensor(dense_slots, dtype=torch.long), dense_rows=torch.tensor(dense_rows),
                cat_slots=torch.tensor(cat_slots, dtype=torch.long), cat_ids=torch.tensor(cat_ids, dtype=torch.long),
                targets=torch.tensor(labels))


class Attention(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.context = nn.Parameter(torch.randn(hidden) * 0.02)

    def forward(self, x, valid):  # x [..., n, H], valid [..., n]
        scores = torch.tanh(self.dense(x)) @ self.context
        weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)
        return torch.nan_to_num(weights)


class DM2S2(nn.Module):
    def __init__(self, hidden, layers):
        super().__init__()
        self.words = nn.Embedding(VOCAB, hidden)
        self.positions = nn.Embedding(POSITIONS, hidden)
        self.types = nn.Embedding(MODALITIES, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.dropout = nn.Dropout(0.1)
        self.dense = nn.Linear(DENSE_DIM, hidden)
        self.categories = nn.Embedding(CATEGORIES, hidden)
        layer = nn.TransformerEncoderLayer(hidden, 4, 2 * hidden, 0.1, activation="gelu", layer_norm_eps=1e-12,
                                           batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.intra, self.inter = Attention(hidden), Attention(hidden)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x):
        batch, length = x["ids"].shape
        e = self.words(x["ids"]).flatten(0, 1)
        e = e.index_put((x["dense_slots"],), self.dense(x["dense_rows"]))
        e = e.index_put((x["cat_slots"],), self.categories(x["cat_ids"]))
        e = e.view(batch, length, -1) + self.positions(torch.arange(length)) + self.types(x["types"])
        h = self.encoder(self.dropout(self.norm(e)), src_key_padding_mask=~x["mask"])
        # IntraMRA per modality, then InterMRA over the present modalities (residual mean terms, r = 1).
        in_modality = torch.stack([x["modality"] == m for m in range(MODALITIES)], 1)  # [B, M, L]
        counts = in_modality.sum(-1, keepdim=True)
        alpha = self.intra(h.unsqueeze(1), in_modality) + in_modality / counts.clamp(min=1)
        z = alpha @ h  # [B, M, H]
        present = counts.squeeze(-1) > 0
        beta = self.inter(z, present) + present / present.sum(-1, keepdim=True)
        return self.head(self.dropout((beta.unsqueeze(1) @ z).squeeze(1)))


def median_step_ms(batch, hidden, layers, repeats):
    torch.manual_seed(0)
    model = DM2S2(hidden, layers).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    x = planted_batch(batch, 1)
    times = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), x["targets"])
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if i >= 3:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), x["ids"].shape[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for batch, hidden, layers in ((32, 64, 2), (32, 256, 4)):
        ms, length = median_step_ms(batch, hidden, layers, args.repeats)
        print(f"torch train_step/{batch}/{hidden}/{layers}: median {ms:.2f} ms (padded length {length}, "
              f"{args.threads} thread{'s' if args.threads > 1 else ''}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
