"""A slow pure-Python Loihi 2 LIF, written from the documented recurrences
(../shared/notes/lava-fixed-point.md), independent of spikec.loihi: the reference the tests hold
spikec.loihi, intref's kernels and the Lava process models to."""

import numpy as np

TWO23 = 1 << 23


# ---- pure-Python references (Python ints, one neuron) ------------------------------------------------
def ref_trunc0(x: int, factor: int) -> int:
    p = x * factor
    return (abs(p) >> 12) * (1 if p >= 0 else -1)


def ref_step(u, v, a, du, dv, vth, bias, reset, reset_value):
    u = ref_trunc0(u, 4096 - (du + 1)) + a * 64
    if u > TWO23:
        u -= 1 << 24
    elif u <= -TWO23:
        u += 1 << 24
    v = ref_trunc0(v, 4096 - dv) + u + bias
    v = max(-(TWO23 - 1), min(TWO23 - 1, v))
    s = v > vth * 64
    if s:
        v = 0 if reset == "zero" else v - (vth * 64 + 1) if reset == "soft" else reset_value
    return u, v, s


def ref_run(a, du, dv, vth, bias, reset, reset_value, v_init):
    """a: [T, n] ints; bias: [n] ints.  Returns spikes, v, u as [T, n] int64 arrays."""
    T, n = a.shape
    u, v = [0] * n, [v_init] * n
    S, V, U = (np.zeros((T, n), np.int64) for _ in range(3))
    for t in range(T):
        for i in range(n):
            u[i], v[i], s = ref_step(u[i], v[i], int(a[t, i]), du, dv, vth, int(bias[i]), reset, reset_value)
            S[t, i], V[t, i], U[t, i] = s, v[i], u[i]
    return S, V, U


RESETS = ["zero", "soft", "value"]
