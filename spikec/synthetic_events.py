"""A synthetic event-camera dataset in which only the temporal order tells the classes apart.

Generated in code (numpy, seeded, no downloads; 4000 samples in ~0.2 s); ``T`` is 8 or 4.  Each
sample is one period of a small bright blob moving along a straight path of ``T`` equally spaced
points ``p_0 … p_{T-1}`` (10.5 px long, random centre, random orientation between 30° and 150° from
the image x axis, so that "forward" always has a downward component).  The class is the *order* in
which the blob visits the points: a permutation ``π_c`` of ``0 … T-1`` (ten motion programs, five
patterns × two directions, see :data:`PROGRAMS_8` and :data:`PROGRAMS_4`).  At step ``t`` the blob is
at ``p_{π_c(t)}``.

Frames are binary events (0 / 1) on 2 polarity channels (a DVS sees a bright blob *appear* where it
arrives and *disappear* where it left):

    ON[t]  ~ Bernoulli(q(p_{π(t)}))            q(p) = a + ε - a·ε,  a = min(1, g · exp(-|(y, x) - p|² / 2σ²))
    OFF[t] ~ Bernoulli(q(p_{π(t-1 mod T)}))    (periodic motion: step 0's "previous" point is p_{π(T-1)})

with g = 1.6, σ = 0.7 px and background noise events of probability ε = 0.01 per pixel, step and
polarity.  Overlapping footprints are not cancelled (no frame differencing), which makes the time
sum exactly class-independent: Σ_t ON[t] and Σ_t OFF[t] both have the distribution of Σ_i Bernoulli(q(p_i))
whatever the permutation, so a classifier of the time-summed frames is at chance.  A single step
is informative (its ON blob and OFF blob give that step's displacement); the sequence of
displacements identifies the program.

``events(split, T, n, seed)`` returns ``(x, y)``: ``x`` float32 of shape ``[N, T, 2, H, W]``
(sample-major, values 0 / 1; the models take ``[T, B, 2, H, W]``: use ``x.transpose(0, 1)`` or
``layout="TN"``) and ``y`` int64 ``[N]``, balanced.  ``split`` only picks the default seed (train 0,
test 1), so the two splits are independent draws.  ``spikec verify --dataset events`` reads the
held-out split :data:`HELD_OUT` (T = 8, 1000 samples, [T, B, 2, 16, 16]).

Check (``python -m spikec.synthetic_events``, :func:`check`; 3000 train / 1000 test samples, held-out
accuracy): logistic regression on the time-summed frames 10.3 % (T = 8) / 12.0 % (T = 4), i.e.
chance, and an MLP (256 hidden) on them 10.3 % / 12.3 %; on the flattened per-step frames logistic
regression reaches 92.5 % / 88.7 % and the MLP 94.2 % / 92.3 %.
"""

from __future__ import annotations

import numpy as np

# the ten motion programs for T = 8: visiting order of the path points 0..7 (0 = the upper end).
# Odd classes are the even ones with the path reversed (index i -> 7 - i): the same pattern moving up.
PROGRAMS_8 = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7],  # 0 sweep down
    [7, 6, 5, 4, 3, 2, 1, 0],  # 1 sweep up
    [0, 2, 4, 6, 1, 3, 5, 7],  # 2 two fast sweeps down
    [7, 5, 3, 1, 6, 4, 2, 0],  # 3 two fast sweeps up
    [0, 2, 4, 6, 7, 5, 3, 1],  # 4 bounce: down then up
    [7, 5, 3, 1, 0, 2, 4, 6],  # 5 bounce: up then down
    [1, 0, 3, 2, 5, 4, 7, 6],  # 6 zigzag drifting down (back 1, forward 3)
    [6, 7, 4, 5, 2, 3, 0, 1],  # 7 zigzag drifting up
    [0, 4, 1, 5, 2, 6, 3, 7],  # 8 leapfrog drifting down (forward 4, back 3)
    [7, 3, 6, 2, 5, 1, 4, 0],  # 9 leapfrog drifting up
])
PROGRAMS_4 = np.array([
    [0, 1, 2, 3], [3, 2, 1, 0],  # sweep down / up
    [0, 2, 1, 3], [3, 1, 2, 0],  # two fast sweeps
    [0, 2, 3, 1], [3, 1, 0, 2],  # bounce
    [1, 0, 3, 2], [2, 3, 0, 1],  # zigzag
    [0, 3, 1, 2], [3, 0, 2, 1],  # leapfrog
])
NUM_CLASSES = 10
SIZE = 16
LENGTH = 10.5  # path length in pixels (points 1.5 px apart at T = 8)
SIGMA = 0.7
GAIN = 1.6
NOISE = 0.01
SEEDS = {"train": 0, "test": 1}
HELD_OUT = dict(T=8, n=1000)  # the ``events`` dataset of spikec.data: the test split at T = 8


def programs(T: int) -> np.ndarray:
    """The ten visiting orders ([10, T]) for ``T`` = 8 (:data:`PROGRAMS_8`) or ``T`` = 4 (the same
    five patterns, coarser)."""
    if T == 8:
        return PROGRAMS_8
    if T == 4:
        return PROGRAMS_4
    raise ValueError(f"events: T must be 4 or 8, not {T}")


def events(split: str = "train", T: int = 8, n: int = 2000, seed: int | None = None,
           layout: str = "NT") -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples (balanced classes, shuffled): ``x`` float32 [N, T, 2, 16, 16] (``layout="NT"``)
    or [T, N, 2, 16, 16] (``layout="TN"``), ``y`` int64 [N].  ``seed`` defaults to 0 for "train"
    and 1 for "test"."""
    if split not in SEEDS:
        raise ValueError(f"events: split must be 'train' or 'test', not {split!r}")
    rng = np.random.default_rng(SEEDS[split] if seed is None else seed)
    prog = programs(T)
    y = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    # path: T points along direction theta through a random centre
    theta = rng.uniform(np.pi / 6, 5 * np.pi / 6, n)
    half = LENGTH / 2
    spacing = LENGTH / (T - 1)
    margin = 0.5 + abs(np.cos(theta)) * half, 0.5 + np.sin(theta) * half  # keep the path inside the frame
    cx = rng.uniform(margin[0], SIZE - 1 - margin[0])
    cy = rng.uniform(margin[1], SIZE - 1 - margin[1])
    offset = (np.arange(T) - (T - 1) / 2) * spacing  # [T], point i of the path
    point = prog[y]  # [N, T]: the point visited at step t
    py = cy[:, None] + offset[point] * np.sin(theta)[:, None]  # [N, T]
    px = cx[:, None] + offset[point] * np.cos(theta)[:, None]
    grid = np.arange(SIZE, dtype=np.float32)
    fy = np.exp(-(grid - py[..., None].astype(np.float32)) ** 2 / (2 * SIGMA ** 2))  # [N, T, H]
    fx = np.exp(-(grid - px[..., None].astype(np.float32)) ** 2 / (2 * SIGMA ** 2))  # [N, T, W]
    on = np.minimum(1.0, GAIN * fy[..., :, None] * fx[..., None, :])  # [N, T, H, W]
    on = on + NOISE - on * NOISE  # an object event or a noise event
    p = np.empty((n, T, 2, SIZE, SIZE), dtype=np.float32)
    p[:, :, 0] = on
    p[:, :, 1] = np.roll(on, 1, axis=1)  # OFF at step t: where the blob was at step t-1 (periodic)
    x = (rng.random(p.shape, dtype=np.float32) < p).astype(np.float32)
    if layout == "TN":
        x = np.ascontiguousarray(x.transpose(1, 0, 2, 3, 4))
    elif layout != "NT":
        raise ValueError(f"events: layout must be 'NT' or 'TN', not {layout!r}")
    return x, y


def check(T: int = 8, n_train: int = 3000, n_test: int = 1000) -> dict[str, float]:
    """Held-out accuracies of logistic regression on the time-summed frames (should be chance) and on
    the flattened sequence, and of a small MLP on the sequence."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    xtr, ytr = events("train", T, n_train)
    xte, yte = events("test", T, n_test)
    out = {}
    lr = LogisticRegression(max_iter=2000, C=0.1)
    out["logreg_time_sum"] = lr.fit(xtr.sum(1).reshape(n_train, -1), ytr).score(xte.sum(1).reshape(n_test, -1), yte)
    lr = LogisticRegression(max_iter=2000, C=0.1)
    out["logreg_sequence"] = lr.fit(xtr.reshape(n_train, -1), ytr).score(xte.reshape(n_test, -1), yte)
    mlp = MLPClassifier((256,), max_iter=300, random_state=0)
    out["mlp_time_sum"] = mlp.fit(xtr.sum(1).reshape(n_train, -1), ytr).score(xte.sum(1).reshape(n_test, -1), yte)
    mlp = MLPClassifier((256,), max_iter=300, random_state=0)
    out["mlp_sequence"] = mlp.fit(xtr.reshape(n_train, -1), ytr).score(xte.reshape(n_test, -1), yte)
    return out


if __name__ == "__main__":
    import time

    t0 = time.time()
    x, y = events("train", 8, 4000)
    print(f"events('train', 8, 4000): x {x.shape} {x.dtype}, y {y.shape}, {time.time() - t0:.2f} s, "
          f"{x.mean():.3f} events per pixel and step")
    for k, v in check().items():
        print(f"{k}: {v:.3f}")
