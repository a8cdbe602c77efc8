"""Format tensors exactly as PyTorch 2.x ``repr(tensor)``/``str(tensor)`` do.

Pure NumPy: the eager ``Tensor`` hands over its values (an ``np.ndarray``) and
autograd state, and gets back the string PyTorch would print, character for
character.  The rules follow ``torch/_tensor_str.py`` (dense, strided, CPU
tensors of real and bool dtypes):

* one element formatter per tensor picks integer-looking (``1.``), fixed
  (``1.2346``) or scientific (``1.2346e+05``) notation and one column width
  from the nonzero finite values that will be shown;
* tensors with more than ``threshold`` elements are summarised with ``...``,
  keeping ``edgeitems`` entries at each end of every long dimension;
* rows wrap at ``linewidth``; nested dimensions indent by one column each and
  are separated by ``ndim - 1`` newlines;
* suffixes (``size=``, ``dtype=``, ``grad_fn=``/``requires_grad=``) follow the
  closing bracket, or go on a new line when they would pass ``linewidth``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

__all__ = [
    "PrintOptions",
    "PRINT_OPTS",
    "set_printoptions",
    "get_printoptions",
    "printoptions",
    "format_tensor",
]


@dataclass
class PrintOptions:
    """Printing options, with the same names and defaults as torch's."""

    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


PRINT_OPTS = PrintOptions()

_PROFILES = {
    "default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
    "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
    "full": dict(precision=4, threshold=math.inf, edgeitems=3, linewidth=80),
}

# dtypes whose torch name is "torch." + the NumPy name.
_SUPPORTED_DTYPES = frozenset(
    np.dtype(t)
    for t in (
        np.bool_,
        np.int8, np.int16, np.int32, np.int64,
        np.uint8, np.uint16, np.uint32, np.uint64,
        np.float16, np.float32, np.float64,
    )
)

DEFAULT_FLOAT = [np.dtype(np.float32)]   # torch.get_default_dtype(), set by set_default_dtype

# Besides the default float dtype, torch never names these in a non-empty repr.
_IMPLICIT_DTYPES = (np.dtype(np.int64), np.dtype(np.bool_))


def set_printoptions(
    precision=None,
    threshold=None,
    edgeitems=None,
    linewidth=None,
    profile=None,
    sci_mode=None,
):
    """Set printing options, as ``torch.set_printoptions`` does.

    ``profile`` is one of ``"default"``, ``"short"`` or ``"full"``; the other
    arguments override it.  Like torch, an unknown profile is ignored and
    ``sci_mode`` is reset to ``None`` (automatic) unless it is passed.
    """
    if profile is not None and profile in _PROFILES:
        for name, value in _PROFILES[profile].items():
            setattr(PRINT_OPTS, name, value)
    if precision is not None:
        PRINT_OPTS.precision = precision
    if threshold is not None:
        PRINT_OPTS.threshold = threshold
    if edgeitems is not None:
        PRINT_OPTS.edgeitems = edgeitems
    if linewidth is not None:
        PRINT_OPTS.linewidth = linewidth
    PRINT_OPTS.sci_mode = sci_mode


def get_printoptions() -> dict[str, Any]:
    """The current options, as keyword arguments for ``set_printoptions``."""
    return dataclasses.asdict(PRINT_OPTS)


@contextlib.contextmanager
def printoptions(**kwargs) -> Iterator[None]:
    """Change the printing options inside a ``with`` block only."""
    saved = get_printoptions()
    set_printoptions(**kwargs)
    try:
        yield
    finally:
        set_printoptions(**saved)


def torch_dtype_name(dtype) -> str:
    """The name torch prints for a NumPy dtype, e.g. ``'torch.float64'``."""
    dtype = np.dtype(dtype)
    if dtype not in _SUPPORTED_DTYPES:
        raise TypeError(f"cannot print a tensor of dtype {dtype}")
    return "torch." + dtype.name


class _ElementFormatter:
    """Turns single elements into fixed-width strings, one style per tensor.

    The style and width are chosen from ``sample``: the values that will be
    printed (the whole tensor, or its edges when summarised), so that hidden
    values do not widen the columns.
    """

    def __init__(self, sample: np.ndarray):
        self.is_float = sample.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.width = 1
        flat = sample.ravel()

        if not self.is_float:
            for value in flat.tolist():
                self.width = max(self.width, len(str(value)))
            return

        shown = flat[np.isfinite(flat) & (flat != 0)]
        if shown.size == 0:
            # Only zeros, infs and nans: torch keeps integer style, width 1.
            return

        magnitudes = np.abs(shown).astype(np.float64)
        smallest = float(magnitudes.min())
        largest = float(magnitudes.max())
        self.int_mode = bool(np.all(shown == np.ceil(shown)))
        if PRINT_OPTS.sci_mode is None:
            self.sci_mode = (
                largest / smallest > 1000.0
                or largest > 1.0e8
                or smallest < 1.0e-4
            )
        else:
            self.sci_mode = PRINT_OPTS.sci_mode

        values = shown.tolist()
        if self.sci_mode:
            texts = [self._sci(v) for v in values]
            self.width = max(self.width, max(map(len, texts)))
        elif self.int_mode:
            # +1 for the trailing "." that marks a float.
            texts = [f"{v:.0f}" for v in values]
            self.width = max(self.width, max(map(len, texts)) + 1)
        else:
            texts = [self._fixed(v) for v in values]
            self.width = max(self.width, max(map(len, texts)))

    @staticmethod
    def _sci(value: float) -> str:
        return f"{value:.{PRINT_OPTS.precision}e}"

    @staticmethod
    def _fixed(value: float) -> str:
        return f"{value:.{PRINT_OPTS.precision}f}"

    def format(self, value) -> str:
        """``value`` is a Python scalar (from ``ndarray.tolist``/``item``)."""
        if not self.is_float:
            text = str(value)
        elif self.sci_mode:
            text = self._sci(value)
        elif self.int_mode:
            text = f"{value:.0f}"
            if math.isfinite(value):
                text += "."
        else:
            text = self._fixed(value)
        return text.rjust(self.width)


def _summary_sample(values: np.ndarray) -> np.ndarray:
    """The elements a summarised print shows, for sizing the columns.

    Every dimension longer than ``2 * edgeitems`` keeps only its first and
    last ``edgeitems`` entries.
    """
    edge = PRINT_OPTS.edgeitems
    if values.ndim == 0:
        return values
    if not edge:
        # Nothing but "..." is printed, so nothing needs sizing.
        return values[:0]
    for axis, size in enumerate(values.shape):
        if size > 2 * edge:
            keep = np.r_[0:edge, size - edge:size]
            values = np.take(values, keep, axis=axis)
    return values


def _vector_str(
    values: np.ndarray,
    indent: int,
    summarize: bool,
    formatter: _ElementFormatter,
) -> str:
    # Each element costs its width plus ", ".
    per_line = max(
        1, math.floor((PRINT_OPTS.linewidth - indent) / (formatter.width + 2))
    )
    edge = PRINT_OPTS.edgeitems
    if summarize and not edge:
        items = ["..."]
    elif summarize and values.shape[0] > 2 * edge:
        items = (
            [formatter.format(v) for v in values[:edge].tolist()]
            + [" ..."]
            + [formatter.format(v) for v in values[-edge:].tolist()]
        )
    else:
        items = [formatter.format(v) for v in values.tolist()]

    lines = [
        ", ".join(items[start:start + per_line])
        for start in range(0, len(items), per_line)
    ]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested_str(
    values: np.ndarray,
    indent: int,
    summarize: bool,
    formatter: _ElementFormatter,
) -> str:
    if values.ndim == 0:
        return formatter.format(values.item())
    if values.ndim == 1:
        return _vector_str(values, indent, summarize, formatter)

    size = values.shape[0]
    edge = PRINT_OPTS.edgeitems
    if summarize and size > 2 * edge:
        rows = list(range(edge)) + [None] + list(range(size - edge, size))
    else:
        rows = list(range(size))
    parts = [
        "..." if row is None
        else _nested_str(values[row], indent + 1, summarize, formatter)
        for row in rows
    ]
    # Deeper blocks are set apart by more blank lines: ndim - 1 newlines.
    separator = "," + "\n" * (values.ndim - 1) + " " * (indent + 1)
    return "[" + separator.join(parts) + "]"


def _contents_str(values: np.ndarray, indent: int) -> str:
    """The bracketed numbers of a non-empty tensor."""
    summarize = values.size > PRINT_OPTS.threshold
    sample = _summary_sample(values) if summarize else values
    formatter = _ElementFormatter(sample)
    return _nested_str(values, indent, summarize, formatter)


def _append_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    pieces = [text]
    # torch counts the last line two characters longer than it looks (room
    # for ", "); keeping its measure keeps its line breaks.
    line_length = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if line_length + len(suffix) + 2 > PRINT_OPTS.linewidth:
            pieces.append(",\n" + " " * indent + suffix)
            line_length = indent + len(suffix)
        else:
            pieces.append(", " + suffix)
            line_length += len(suffix) + 2
    pieces.append(")")
    return "".join(pieces)


def format_tensor(
    values: np.ndarray,
    *,
    requires_grad: bool = False,
    grad_fn_name: str | None = None,
    default_dtype=None,
) -> str:
    """The full repr of a tensor holding ``values``, as PyTorch prints it.

    ``grad_fn_name`` (e.g. ``"MulBackward0"``) wins over ``requires_grad``,
    as in torch.  ``default_dtype`` is the float dtype that goes unnamed
    (``torch.get_default_dtype()``).

    >>> format_tensor(np.ones((2, 2), np.float32), requires_grad=True)
    'tensor([[1., 1.],\\n        [1., 1.]], requires_grad=True)'
    """
    values = np.asarray(values)
    dtype_name = torch_dtype_name(values.dtype)
    if default_dtype is None:
        default_dtype = DEFAULT_FLOAT[0]
    is_default_float = values.dtype == np.dtype(default_dtype)
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []

    if values.size == 0:
        # Mirrors NumPy: the shape is shown unless it is (0,), and the dtype
        # is shown unless it is the default float dtype (nothing to infer
        # int64 or bool from).
        if values.ndim != 1:
            suffixes.append(f"size={tuple(values.shape)}")
        if not is_default_float:
            suffixes.append(f"dtype={dtype_name}")
        contents = "[]"
    else:
        if not PRINT_OPTS.edgeitems:
            suffixes.append(f"size={tuple(values.shape)}")
        if not (is_default_float or values.dtype in _IMPLICIT_DTYPES):
            suffixes.append(f"dtype={dtype_name}")
        contents = _contents_str(values, indent)

    if grad_fn_name is not None:
        suffixes.append(f"grad_fn=<{grad_fn_name}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")

    return _append_suffixes(prefix + contents, suffixes, indent)
