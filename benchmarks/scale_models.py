"""Models and checkpoints for the "Lava at real sizes" benchmark (benchmarks/lava_scale.py).

Factories (``--model benchmarks/scale_models.py:NAME``): ``sj_spikformer`` (examples.models.zoo's),
``sj_qkformer`` and ``sj_maxformer`` (spikingjelly 2.0.0's QKFormer / MaxFormer, CIFAR layouts at
reduced width), all from examples.models.zoo.  ``make_checkpoint`` writes a state_dict with
random weights made to fire (``examples.models.zoo.prepare``: Kaiming weights, batch-norm
statistics measured on a random batch, gamma ~U(0.8, 1.6), beta ~U(0.2, 1.0), q / k / v bias +0.8)
and random images in [0, 1).

    python benchmarks/scale_models.py NAME 'KWARGS_JSON' OUT.pth X.npy [N_IMAGES]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))


from examples.models.zoo import sj_maxformer, sj_qkformer, sj_spikformer  # noqa: E402

FACTORIES = {"sj_spikformer": sj_spikformer, "sj_qkformer": sj_qkformer, "sj_maxformer": sj_maxformer}


def make_checkpoint(name: str, kwargs: dict, ckpt: Path, images: Path, n: int = 2, img: int = 32, seed: int = 0):
    """Prepared random model -> ``ckpt`` ({"model": state_dict}); ``n`` random images -> ``images``."""
    from examples.models.zoo import prepare

    torch.manual_seed(seed)
    model = FACTORIES[name](**kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    calib = torch.rand((8, 3, img, img), generator=g) * 2.0
    prepare(model, calib, seed=seed)
    torch.save({"model": model.state_dict()}, ckpt)
    x = torch.rand((n, 3, img, img), generator=torch.Generator().manual_seed(seed + 2)).numpy().astype(np.float32)
    np.save(images, x)
    return model, x


if __name__ == "__main__":
    a = sys.argv[1:]
    make_checkpoint(a[0], json.loads(a[1]), Path(a[2]), Path(a[3]), int(a[4]) if len(a) > 4 else 2)
