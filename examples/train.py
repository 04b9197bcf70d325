"""Train the bundled example checkpoints on offline data (scikit-learn digits, synthetic event streams),
minutes on 2 CPU cores.

    python examples/train.py NAME [--epochs E] [--out PATH]     # one example
    python examples/train.py all                                # every example in EXAMPLES
    python examples/train.py table                              # measure each; print the README table

Each example is a model family at a small configuration (``EXAMPLES``): the project's own
Spikformer, STFormer and STAA-SNN on the 8x8 digits, and spikingjelly 2.0.0's Spikformer, Spike-Driven
Transformer (v1), QKFormer and MaxFormer plus the project's Meta-SpikeFormer on the digits upsampled
to 3x32x32 (``spikec.data.digits``).  Split: the first 1437 images train, the last 360 are held out (the
``digits`` / ``digits32`` datasets of ``spikec verify --dataset``).  STFormer also learns the synthetic
event streams of :mod:`spikec.synthetic_events`, whose classes only the order of the T = 8 steps tells
apart (3000 training samples; held out: the ``events`` dataset, 1000 samples).

Surrogate-gradient training (the neurons' own surrogates), AdamW with a cosine schedule, batch 64,
random shifts of up to one digit pixel as the only augmentation (none for events); the loss is the cross entropy of the
output averaged over time when the model returns one output per step.  Seeded, on CPU: rerunning a
script gives the same checkpoint up to torch's non-deterministic CPU kernels.  The checkpoint holds
``{"model": state_dict, "config": kwargs}``; ``spikec`` reads it with ``--model FACTORY --model-kwargs``
as the README's table of trained examples shows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.models import zoo  # noqa: E402
from spikec.data import digits, shifted  # noqa: E402

CHECKPOINTS = ROOT / "examples" / "checkpoints"


@dataclass(frozen=True)
class Example:
    """One trained example: the factory spikec loads it with, its configuration, its data."""

    family: str  # the paper family it stands for (README)
    factory: str  # a name in examples/models/zoo.py (``--model examples.models.zoo:NAME``)
    kwargs: dict = field(default_factory=dict)
    dataset: str = "digits32"  # spikec.data dataset name: training data and input shape
    epochs: int = 40
    lr: float = 3e-3
    # start from zoo.prepare's firing initialisation (batch-norm statistics and biases measured on a
    # training batch): at PyTorch's default initialisation some families' last neuron layer is silent
    fire_at_start: bool = False

    @property
    def size(self) -> int:
        return {"digits": 8, "digits32": 32, "events": 16}[self.dataset]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return {"digits": (1, 8, 8), "digits32": (3, 32, 32), "events": (2, 16, 16)}[self.dataset]

    @property
    def held_out(self) -> str:
        """The spikec.data dataset the README's accuracies are measured on: the digits examples' 360
        held-out images at the 9 shifts by one 8x8 pixel, within the range of their training's shifts
        (3240: one image is 0.03 points, where a 0.5-point bar on 360 images would allow a single net
        image); the events' 1000."""
        return f"{self.dataset}_shifted" if self.dataset.startswith("digits") else self.dataset

    @property
    def time_steps(self) -> int | None:
        """T of a sequence dataset ([T, B, ...] input), None for images."""
        return EVENTS_T if self.dataset == "events" else None

    def checkpoint(self, name: str) -> Path:
        return CHECKPOINTS / f"{name}.pth"

    def build(self) -> torch.nn.Module:
        return getattr(zoo, self.factory)(**self.kwargs)

    def spikec_args(self, name: str) -> list[str]:
        """The checkpoint and model options of ``spikec verify`` for this example (relative to the repository)."""
        return [str(self.checkpoint(name).relative_to(ROOT)), "--model", f"examples.models.zoo:{self.factory}",
                "--model-kwargs", json.dumps(self.kwargs, separators=(",", ":")),
                "--input-shape", ",".join(map(str, self.input_shape)),
                *(["--time-steps", str(self.time_steps)] if self.time_steps else []), "--dataset", self.held_out]


EXAMPLES: dict[str, Example] = {
    "spikformer_digits": Example("Spikformer (official-code form, legacy neurons)", "spikformer_digits",
                                 dict(embed_dims=32, num_heads=2, depths=1, T=4), dataset="digits", epochs=150),
    "spikformer_digits32": Example("Spikformer (spikingjelly zoo)", "sj_spikformer",
                                   dict(T=2, img=32, embed_dims=32, num_heads=2, depths=1)),
    "sdt_digits32": Example("Spike-Driven Transformer v1 (spikingjelly zoo)", "sj_sdt",
                            dict(T=2, embed_dims=32, num_heads=2, depths=1)),
    "meta_spikformer_digits32": Example("Meta-SpikeFormer (SDT v2)", "meta_spikformer", dict(T=2), fire_at_start=True),
    "qkformer_digits32": Example("QKFormer (spikingjelly zoo)", "sj_qkformer",
                                 dict(T=2, embed_dims=32, num_heads=[1, 2, 2], depths=[1, 1, 1]), epochs=80),
    "maxformer_digits32": Example("MaxFormer (spikingjelly zoo, CIFAR variant)", "sj_maxformer",
                                  dict(T=2, embed_dims=32, depths=[1, 1, 1]), epochs=30),
    "stformer_digits": Example("STFormer (temporal core of causal convolutions over time)", "stformer",
                               dict(T=4, embed_dims=32, num_heads=2, depths=1), dataset="digits", epochs=30),
    "stformer_events": Example("STFormer on event streams whose classes only the order of the steps tells apart",
                               "stformer", dict(T=8, img=16, in_channels=2, embed_dims=32, num_heads=2, depths=1),
                               dataset="events", epochs=10),
    "staa_snn_digits": Example("STAA-SNN (CNN SNN with global-context and step attention)", "staa_snn",
                               dict(T=4, channels=32), dataset="digits", epochs=30),
    "spikeformer_st_digits": Example("Spikeformer (SEW tokenizer, divided space-time attention)",
                                     "spikeformer", dict(T=4, embed_dims=32, num_heads=2, depths=1), dataset="digits",
                                     epochs=80),
    "spikeformer_st_events": Example("Spikeformer on event streams whose classes only the order of the steps tells apart",
                                     "spikeformer", dict(T=8, img=16, in_channels=2, embed_dims=32, num_heads=2, depths=1),
                                     dataset="events", epochs=40),
}

# the project's own digits example, as the tests, demo and benchmarks import it
CONFIG = EXAMPLES["spikformer_digits"].kwargs


EVENTS_T, EVENTS_TRAIN = 8, 3000  # the events examples: T and training samples (held out: spikec.data's "events")


def training_data(ex: Example):
    """(x_train, y_train, x_test, y_test) of an example's dataset as torch tensors; event streams as
    [T, N, 2, 16, 16] (spikec.synthetic_events), digits as images (:func:`digits_split`)."""
    if ex.dataset != "events":
        return digits_split(ex.size)
    from spikec.data import load_dataset
    from spikec.synthetic_events import events

    xtr, ytr = events("train", EVENTS_T, EVENTS_TRAIN, layout="TN")
    xte, yte = load_dataset("events")
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def digits_split(size: int = 8):
    """(x_train, y_train, x_test, y_test) as torch tensors (see :func:`spikec.data.digits`)."""
    xtr, ytr = digits("train", size)
    xte, yte = digits("test", size)
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


def logits(model, x) -> torch.Tensor:
    """The class scores: outputs per time step ([T, B, C]) averaged over time, as spikec verify does."""
    y = model(x)
    zoo._reset(model)  # spikingjelly's neurons keep their state between calls
    y = y[0] if isinstance(y, (tuple, list)) else y
    return y.mean(0) if y.dim() == 3 else y


def evaluate(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return (logits(model, x).argmax(-1) == y).float().mean().item()


def shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Each image moved by a random (dy, dx) in [-max_shift, max_shift]^2, vacated pixels zero."""
    return torch.stack([shifted(xi, dy, dx) for xi, (dy, dx)
                        in zip(x, torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=g).tolist())])


def train(ex: Example, epochs: int | None = None, seed: int = 0, batch: int = 64, log=print) -> torch.nn.Module:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    epochs = epochs or ex.epochs
    xtr, ytr, xte, yte = training_data(ex)
    sequence = ex.time_steps is not None  # [T, N, ...]: samples on axis 1, no pixel shifts
    model = ex.build()
    if ex.fire_at_start:
        zoo.prepare(model, xtr[:, :batch] if sequence else xtr[:batch], seed=seed)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = 0.1  # prepare measured the statistics with a cumulative average
    opt = torch.optim.AdamW(model.parameters(), lr=ex.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    pixel = ex.size // 8
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(ytr), generator=g)
        t0 = time.time()
        for i in range(0, len(ytr), batch):
            idx = perm[i:i + batch]
            xb = xtr[:, idx] if sequence else shift(xtr[idx], pixel, g)
            loss = F.cross_entropy(logits(model, xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if ep % 5 == 4 or ep == epochs - 1:
            log(f"epoch {ep + 1}: loss {loss.item():.3f}, held-out accuracy {evaluate(model, xte, yte):.4f} "
                f"({time.time() - t0:.1f} s/epoch)")
    model.eval()
    return model


EVAL_CHUNK = 128  # samples per forward pass when measuring (a whole held-out set at once is twice as slow)


def accuracies(name: str) -> tuple[float, float, float, int]:
    """(float, integer, agreement, samples): held-out top-1 accuracy of the committed checkpoint as
    PyTorch runs it and as ``spikec compile --target intref`` runs it (what ``spikec verify --dataset``
    reports as "accuracy torch" and "accuracy integer"; Lava and ONNX equal intref bit for bit), and
    the fraction of images on which the two predict the same class."""
    import numpy as np

    import spikec
    from spikec.data import load_dataset

    ex = EXAMPLES[name]
    x, y = load_dataset(ex.held_out)
    model = ex.build()
    model.load_state_dict(torch.load(ex.checkpoint(name), weights_only=True)["model"])
    model.eval()
    xt, axis = torch.from_numpy(x), 1 if ex.time_steps else 0  # samples on axis 1 of a [T, N, ...] sequence
    chunks = [xt.narrow(axis, i, min(EVAL_CHUNK, xt.shape[axis] - i)) for i in range(0, xt.shape[axis], EVAL_CHUNK)]
    with torch.no_grad():
        pred_float = torch.cat([logits(model, c) for c in chunks]).argmax(-1).numpy()
    art = spikec.compile(str(ex.checkpoint(name)), "intref", factory=f"examples.models.zoo:{ex.factory}",
                         model_kwargs=ex.kwargs, input_shape=ex.input_shape,
                         time_steps=ex.time_steps)
    outs = [np.asarray(art.run(c.numpy()), dtype=np.float64) for c in chunks]
    pred_int = np.concatenate([(o.mean(0) if o.ndim == 3 else o).argmax(-1) for o in outs])
    return float((pred_float == y).mean()), float((pred_int == y).mean()), float((pred_float == pred_int).mean()), len(y)


TABLE_HEADER = ("| example | family | data | parameters | float | integer | top-1 agreement | verify |\n"
                "|---|---|---|---|---|---|---|---|")


def table_row(name: str, measured: tuple[float, float, float, int] | None = None) -> str:
    """The README row of ``name`` from :func:`accuracies` (measured now unless given)."""
    ex = EXAMPLES[name]
    acc_float, acc_int, agreement, n = measured or accuracies(name)
    params = sum(p.numel() for p in ex.build().parameters())
    return (f"| `{name}` | {ex.family} | `{ex.held_out}` ({n} held out) | {params:,} | {100 * acc_float:.2f} % | "
            f"{100 * acc_int:.2f} % | {100 * agreement:.2f} % | `spikec verify {shlex.join(ex.spikec_args(name))}` |")


def print_table() -> None:
    print(TABLE_HEADER)
    for name in EXAMPLES:
        print(table_row(name), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=[*EXAMPLES, "all", "table"])
    ap.add_argument("--epochs", type=int, help="default: the example's own")
    ap.add_argument("--out", type=Path, help="checkpoint path (one example only; default examples/checkpoints/NAME.pth)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.name == "table":
        print_table()
        return 0
    names = list(EXAMPLES) if args.name == "all" else [args.name]
    for name in names:
        ex = EXAMPLES[name]
        print(f"=== {name}: {ex.family}, {ex.factory}({ex.kwargs}) on {ex.dataset}", flush=True)
        t0 = time.time()
        model = train(ex, args.epochs, log=lambda s: print(s, flush=True))
        out = args.out if args.out and len(names) == 1 else ex.checkpoint(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "config": ex.kwargs}, out)
        _, _, xte, yte = training_data(ex)
        print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB, {time.time() - t0:.0f} s): held-out accuracy "
              f"{evaluate(model, xte, yte):.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
