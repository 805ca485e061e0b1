#!/usr/bin/env python3
"""Writes ../training_reference.json: losses, gradients and AdamW trajectories computed by PyTorch
in float64, and metrics computed by scikit-learn, which the training tests compare against. Run with
Debian's python3-torch and python3-sklearn:
    /usr/bin/python3 tests/data/scripts/make_training_reference.py
"""
import json
import pathlib

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
out = {"torch_version": torch.__version__}


def rounded(t):
    return t.detach().reshape(-1).tolist()


# Losses: mean reduction, as docs/design.md §7 uses them.
B, C = 4, 3
logits = torch.randn(B, C) * 2
cases = {}
x = logits.clone().requires_grad_()
classes = torch.tensor([2, 0, 1, 2])
loss = torch.nn.functional.cross_entropy(x, classes)
loss.backward()
cases["multiclass"] = {"logits": rounded(logits), "shape": [B, C], "targets": classes.tolist(), "loss": loss.item(), "grad": rounded(x.grad)}

x = logits.clone().requires_grad_()
multilabel = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
loss = torch.nn.functional.binary_cross_entropy_with_logits(x, multilabel)
loss.backward()
cases["multilabel"] = {"logits": rounded(logits), "shape": [B, C], "targets": rounded(multilabel), "loss": loss.item(), "grad": rounded(x.grad)}

x = (logits[:, :1] * 10).clone().requires_grad_()  # large magnitudes exercise the stable form
binary = torch.tensor([[1.0], [0], [0], [1]])
loss = torch.nn.functional.binary_cross_entropy_with_logits(x, binary)
loss.backward()
cases["binary"] = {"logits": rounded(x), "shape": [B, 1], "targets": rounded(binary), "loss": loss.item(), "grad": rounded(x.grad)}

x = logits.clone().requires_grad_()
regression = torch.randn(B, C)
loss = torch.nn.functional.mse_loss(x, regression)
loss.backward()
cases["regression"] = {"logits": rounded(logits), "shape": [B, C], "targets": rounded(regression), "loss": loss.item(), "grad": rounded(x.grad)}
out["losses"] = cases

# AdamW with HF's parameter groups (no decay on biases and LayerNorm weights), HF's linear schedule
# with warm-up, and global-norm clipping before each step.
params = {
    "dense.weight": torch.randn(3, 4),
    "dense.bias": torch.randn(3),
    "LayerNorm.weight": torch.randn(4),
}
initial = {k: rounded(v) for k, v in params.items()}
tensors = {k: v.clone().requires_grad_() for k, v in params.items()}
decay = [v for k, v in tensors.items() if not (k.endswith("bias") or "LayerNorm.weight" in k)]
no_decay = [v for k, v in tensors.items() if k.endswith("bias") or "LayerNorm.weight" in k]
lr, weight_decay, warmup, total, max_norm = 0.05, 0.1, 2, 6, 1.5
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=lr, betas=(0.9, 0.999), eps=1e-8)
schedule = torch.optim.lr_scheduler.LambdaLR(
    optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
steps = []
for step in range(total):
    grads = {k: torch.randn_like(v) * (3 if step == 1 else 0.5) for k, v in tensors.items()}
    for k, v in tensors.items():
        v.grad = grads[k].clone()
    norm = torch.nn.utils.clip_grad_norm_(list(tensors.values()), max_norm)
    used_lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    schedule.step()
    steps.append({"grads": {k: rounded(g) for k, g in grads.items()}, "norm": norm.item(), "lr": used_lr,
                  "params": {k: rounded(v) for k, v in tensors.items()}})
out["adamw"] = {"lr": lr, "weight_decay": weight_decay, "warmup": warmup, "total": total, "max_norm": max_norm,
                "shapes": {k: list(v.shape) for k, v in params.items()}, "initial": initial, "steps": steps}

# Metrics (docs/design.md §7) from scikit-learn, on predictions at probability 0.5 (logit 0).
from sklearn import metrics as skm  # noqa: E402
import numpy as np  # noqa: E402

rng = np.random.default_rng(3)
metric_cases = {}
logits = rng.normal(size=(40, 4))
classes = rng.integers(0, 4, size=40)
classes[:5] = logits[:5].argmax(1)
predicted = logits.argmax(1)
metric_cases["multiclass"] = {"logits": logits.reshape(-1).tolist(), "shape": [40, 4], "targets": classes.tolist(),
                              "metrics": {"accuracy": skm.accuracy_score(classes, predicted),
                                          "macro_f1": skm.f1_score(classes, predicted, average="macro")}}
logits = rng.normal(size=(50, 1)) + np.repeat([0.0, 0.5], 25)[:, None]
logits[10:14] = 0.25  # ties in the scores
labels = (rng.random(50) < 0.5).astype(float)
probabilities = 1 / (1 + np.exp(-logits[:, 0]))
predicted = (probabilities >= 0.5).astype(float)
metric_cases["binary"] = {"logits": logits.reshape(-1).tolist(), "shape": [50, 1], "targets": labels.tolist(),
                          "metrics": {"accuracy": skm.accuracy_score(labels, predicted), "f1": skm.f1_score(labels, predicted),
                                      "roc_auc": skm.roc_auc_score(labels, probabilities)}}
logits = rng.normal(size=(30, 5)) - 0.3
labels = (rng.random((30, 5)) < 0.4).astype(float)
labels[0] = 0
logits[0] = -1  # a sample with no true and no predicted label
labels[:, 4] = 0  # a label that never occurs
predicted = (logits >= 0).astype(float)
metric_cases["multilabel"] = {"logits": logits.reshape(-1).tolist(), "shape": [30, 5], "targets": labels.reshape(-1).tolist(),
                              "metrics": {f"{a}_f1": skm.f1_score(labels, predicted, average=a)
                                          for a in ("micro", "macro", "weighted", "samples")}}
logits = rng.normal(size=(20, 2))
values = rng.normal(size=(20, 2))
metric_cases["regression"] = {"logits": logits.reshape(-1).tolist(), "shape": [20, 2], "targets": values.reshape(-1).tolist(),
                              "metrics": {"rmse": float(np.sqrt(skm.mean_squared_error(values, logits))),
                                          "mae": skm.mean_absolute_error(values, logits)}}
out["metrics"] = metric_cases
out["sklearn_version"] = __import__("sklearn").__version__

path = pathlib.Path(__file__).resolve().parent.parent / "training_reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print("wrote", path)
