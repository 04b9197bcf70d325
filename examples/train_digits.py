"""Train the bundled Spikformer example on scikit-learn's 8x8 digits (offline, CPU, ~1-2 minutes).

    python examples/train_digits.py [--epochs 60] [--out examples/checkpoints/spikformer_digits.pth]

Split: the first 1437 images train, the last 360 are held out (``digits_split``).  Inputs are pixel
intensities / 16 in [0, 1].  Surrogate-gradient training (arctan) through the legacy
``MultiStepLIFNode`` stand-in; the checkpoint holds ``{"model": state_dict, "config": ...}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from examples.models.spikformer import spikformer_digits  # noqa: E402

CONFIG = dict(embed_dims=32, num_heads=2, depths=1, T=4)
N_TRAIN = 1437


def digits_split():
    """(x_train, y_train, x_test, y_test) with x in [0, 1], shape [N, 1, 8, 8]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def evaluate(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def train(epochs: int = 60, seed: int = 0, batch: int = 64, lr: float = 3e-3):
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits_split()
    model = spikformer_digits(**CONFIG)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        t0 = time.time()
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if ep % 5 == 4 or ep == epochs - 1:
            print(f"epoch {ep + 1}: loss {loss.item():.3f}, test acc {evaluate(model, xte, yte):.3f} ({time.time() - t0:.1f}s/epoch)")
    model.eval()
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--out", default=str(ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"))
    args = ap.parse_args()
    model = train(args.epochs)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": CONFIG}, out)
    _, _, xte, yte = digits_split()
    print(f"saved {out} (held-out accuracy {evaluate(model, xte, yte):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
