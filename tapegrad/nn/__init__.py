"""torch.nn: the functional interface (layers are out of scope)."""
from . import functional

__all__ = ["functional"]
