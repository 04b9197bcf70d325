"""Batch norm in inference mode (running statistics, time merged into batch)."""

from __future__ import annotations

import torch

from ... import ir
from .. import layouts
from .base import Act, handles


def _bn(c, x, weight, bias, mean, var, eps):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("batch norm on a [T, B, ...] tensor (it would normalise over time)")
    layouts.need_plain(c, x, "batch norm")
    if not isinstance(mean, torch.Tensor):
        raise c.unsupported("batch norm without running statistics (track_running_stats=False)")
    return Act(
        c.emit(ir.BatchNormNode, [x.value], primary=True, mean=c.const(mean), var=c.const(var),
               weight=c.const(weight), bias=c.const(bias), eps=float(eps), axis=0),
        "merged",
    )


@handles("aten.batch_norm")
def _batch_norm(c, x, weight, bias, running_mean, running_var, training, momentum, eps, cudnn=False):
    if training:
        raise c.unsupported("batch norm in training mode")
    return _bn(c, x, weight, bias, running_mean, running_var, eps)


@handles("aten._native_batch_norm_legit_no_training")
def _bn_no_training(c, x, weight, bias, running_mean, running_var, momentum, eps):
    return (_bn(c, x, weight, bias, running_mean, running_var, eps), None, None)
