"""Operations that convert to no IR node: copies and float casts, dropout in eval mode, shape
assertions, and indexing the tuple a multi-output op returns."""

from __future__ import annotations

import torch

from .base import Act, Poison, handles


@handles("aten.clone", "aten.contiguous", "aten.alias", "aten.detach", "aten.lift_fresh_copy",
         "aten._to_copy", "aten.to")
def _identity(c, x, *args, **kwargs):
    if isinstance(x, Act):
        if c.cur.meta.get("val") is not None and c.cur.meta["val"].dtype not in (torch.float32,):
            raise c.unsupported(f"a cast of an activation to {c.cur.meta['val'].dtype}")
        return x
    if isinstance(x, Poison):
        raise x.error.with_traceback(None)
    return x


@handles("aten.dropout", "aten.feature_dropout")
def _dropout(c, x, p, train):
    if train:
        raise c.unsupported("dropout in training mode (call model.eval())")
    return c.act(x)


@handles("aten.sym_size", "aten._assert_tensor_metadata", "aten._assert_scalar", "aten.sym_constrain_range_for_size")
def _ignore(c, *args, **kwargs):
    return None


@handles("getitem")
def _getitem(c, seq, i):
    if isinstance(seq, Poison):
        return seq
    if isinstance(seq, (tuple, list)):
        return seq[i]
    raise c.unsupported("indexing a tensor")
