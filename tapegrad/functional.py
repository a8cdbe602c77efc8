"""torch.functional: the functions PyTorch keeps in this module, re-exported from tapegrad's
torch namespace (`import torch.functional as F` appears in PyTorch's tutorials)."""
from .functions import (block_diag, cdist, chain_matmul, einsum, meshgrid, norm, split,  # noqa
                        tensordot, unique)


def broadcast_tensors(*tensors):
    import numpy as np
    shape = np.broadcast_shapes(*(tuple(t.shape) for t in tensors))
    return tuple(t.expand(*shape) for t in tensors)


def broadcast_shapes(*shapes):
    import numpy as np
    from .tensor import Size
    return Size(np.broadcast_shapes(*shapes))


def atleast_1d(*tensors):
    out = tuple(t.reshape(1) if t.ndim == 0 else t for t in tensors)
    return out[0] if len(out) == 1 else out


def atleast_2d(*tensors):
    out = tuple(t.reshape(1, -1) if t.ndim < 2 else t for t in tensors)
    return out[0] if len(out) == 1 else out


__all__ = ["block_diag", "broadcast_shapes", "broadcast_tensors", "cdist", "chain_matmul",
           "einsum", "meshgrid", "norm", "split", "tensordot", "unique", "atleast_1d",
           "atleast_2d"]
