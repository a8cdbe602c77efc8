"""torch.linalg: inverse, determinants and solve through the registry's linear-algebra primitives
(on Tensors, traced values and arrays alike)."""
from collections import namedtuple

from . import primitives as P
from .core import shape_of

SlogdetResult = namedtuple("slogdet", ["sign", "logabsdet"])


def inv(A):
    return P.inv(A)


def det(A):
    return P.det(A)


def slogdet(A):
    return SlogdetResult(P.sign(P.det(A)), P.logabsdet(A))


def solve(A, B, *, left=True):
    if not left:
        raise NotImplementedError("tapegrad.linalg.solve(left=False): solve A^T X^T = B^T")
    a, b = shape_of(A), shape_of(B)
    # PyTorch's rule: B is a vector (or a batch of them) when it has one dimension less than A
    if len(b) == 1 or (len(b) == len(a) - 1 and b == a[:-1]):
        column = P.solve(A, P.reshape(B, shape=b + (1,)))
        return P.reshape(column, shape=shape_of(column)[:-1])
    return P.solve(A, B)


__all__ = ["inv", "det", "slogdet", "solve"]
