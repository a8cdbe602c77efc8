"""The normal form: three-address statements over named values, with structured control flow.

Every differentiable operation has its own named result, so the adjoint of each statement is one
registry rule applied to names. `forward` holds the expression as the user spelled it (with
operands replaced by names), which is what the forward sweep prints.
"""
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Const:
    value: Any


@dataclass
class Origin:
    """Where a statement came from: shown in the comment above its adjoint."""
    lineno: int
    text: str
    filename: Optional[str] = None  # an inlined helper's file, when not the function's


@dataclass
class Call:
    """target = op(args): `op` is a table entry (Elementwise, Reduction, MatMul, Identity,
    Constant) or the string 'copy' for a plain `target = name`."""
    op: Any
    args: list  # names (str) or Const
    forward: Any  # ast.expr to print in the forward sweep


@dataclass
class Index:
    """target = array[index]; the index is plain integer code (`i`, `i + 1`, `1:n`)."""
    array: str
    index: Any  # ast.expr
    reads: list  # names the index reads


@dataclass
class Assign:
    target: str
    expr: Any  # Call | Index
    origin: Origin


@dataclass
class SetIndex:
    """array[index] = value"""
    array: str
    index: Any
    reads: list
    value: Any  # name or Const
    origin: Origin


@dataclass
class If:
    cond: Any  # name or Const
    body: list
    orelse: list
    origin: Origin


@dataclass
class Loop:
    """`for target in range(start, stop, step)` or `while True` (target None, bounds None)."""
    target: Optional[str]
    start: Any
    stop: Any
    step: Any
    body: list
    origin: Origin
    counted: bool = False  # a range loop with no break: trips known on entry, stacks preallocated
    count: Optional[str] = None  # iteration counter of other loops (the adjoint replays that many)
    inlined_from: Optional[str] = None


@dataclass
class Break:
    origin: Origin


@dataclass
class Continue:
    origin: Origin


@dataclass
class Function:
    name: str
    params: list
    body: list
    result: str
    temps: set = field(default_factory=set)  # single-use names made by the normaliser
    constants: dict = field(default_factory=dict)  # global name -> value read by the code
    filename: str = "<unknown>"
    lines: list = field(default_factory=list)
    reads: dict = field(default_factory=dict)  # (function, name) -> value looked up
