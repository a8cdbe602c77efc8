"""Plans for the CUDA backend, in plain Python (no numba here, so tests run without a GPU).

Three pieces:
  * `lower`: rewrites composite primitives (mean, logsumexp, norm, softmax, log_softmax, losses,
    clamp, clone) into the small set the kernels implement: elementwise primitives with a scalar
    form, cast, sum/prod/amax/amin, matmul, and shape/index primitives. The lowered tape is an
    ordinary tape: the reference interpreter checks it against the original.
  * `row_kernel_source`: the batched kernel of jit(vmap(...)): the row tape as straight-line
    scalar code, one thread per row. Inputs and outputs are laid out slot-element-major, row-minor
    (`x[j, row]`), so neighbouring threads touch neighbouring addresses; intermediates live in
    registers (CUDA interleaves spilled locals across threads the same way).
  * `fused_kernel_source`: one kernel for a chain of elementwise instructions on arrays, with the
    broadcasting index arithmetic written in from the static shapes.
"""
import math

import numpy as np

from tapegrad import primitives as P
from tapegrad.tape import Guard, Instr, Tape

# ---------------------------------------------------------------------------------------------
# Lowering composite primitives
# ---------------------------------------------------------------------------------------------


class _Lowerer:
    def __init__(self, tape):
        new = Tape()
        new.shapes, new.dtypes = list(tape.shapes), list(tape.dtypes)
        new.inputs, new.consts = list(tape.inputs), dict(tape.consts)
        new.outputs, new.out_tree = list(tape.outputs), tape.out_tree
        self.tape = new
        self.phase = None

    def shape(self, slot):
        return self.tape.shapes[slot]

    def dtype(self, slot):
        return self.tape.dtypes[slot]

    def const(self, value, dtype):
        return self.tape.add_const(np.asarray(value, dtype=dtype))

    def op(self, prim, ins, shape, dtype, /, out=None, **params):
        """Append `prim(ins)`; `out` names the original instruction's slot for the last step."""
        if out is None:
            return self.tape.add_instr(prim, ins, params, shape, dtype, self.phase)
        self.tape.producer[out] = len(self.tape.instrs)
        self.tape.instrs.append(Instr(prim, ins, out, params, self.phase))
        return out


def _keep_shape(shape, axis):
    axes = range(len(shape)) if axis is None else axis
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _lower_mean(lo, ins):
    (x,), axis, keepdims = ins.ins, ins.params.get("axis"), ins.params.get("keepdims", False)
    shape, dtype = lo.shape(ins.out), lo.dtype(ins.out)
    sum_dtype = np.sum(np.zeros(1, lo.dtype(x))).dtype
    total = lo.op(P.sum_, [x], shape, sum_dtype, axis=axis, keepdims=keepdims)
    count = lo.const(P._count(lo.shape(x), axis), dtype if dtype.kind == "f" else np.int64)
    lo.op(P.div, [total, count], shape, dtype, out=ins.out)


def _logsumexp_keepdims(lo, x, axis, dtype, out=None):
    xshape, kshape = lo.shape(x), _keep_shape(lo.shape(x), axis)
    top = lo.op(P.amax, [x], kshape, dtype, axis=axis, keepdims=True)
    # an infinite maximum would give inf - inf: shift by 0 there, as the NumPy forward does
    finite = lo.op(P.eq, [lo.op(P.sub, [top, top], kshape, dtype), lo.const(0, dtype)],
                   kshape, np.bool_)
    shift = lo.op(P.where, [finite, top, lo.const(0, dtype)], kshape, dtype)
    e = lo.op(P.exp, [lo.op(P.sub, [x, shift], xshape, dtype)], xshape, dtype)
    total = lo.op(P.sum_, [e], kshape, dtype, axis=axis, keepdims=True)
    return lo.op(P.add, [lo.op(P.log, [total], kshape, dtype), shift], kshape, dtype, out=out)


def _lower_logsumexp(lo, ins):
    (x,), axis, keepdims = ins.ins, ins.params.get("axis"), ins.params.get("keepdims", False)
    dtype = lo.dtype(ins.out)
    if keepdims:
        _logsumexp_keepdims(lo, x, axis, dtype, out=ins.out)
    else:
        kept = _logsumexp_keepdims(lo, x, axis, dtype)
        lo.op(P.reshape, [kept], lo.shape(ins.out), dtype, out=ins.out, shape=lo.shape(ins.out))


def _lower_log_softmax(lo, ins):
    (x,), axis, dtype = ins.ins, (ins.params["axis"],), lo.dtype(ins.out)
    lse = _logsumexp_keepdims(lo, x, axis, dtype)
    lo.op(P.sub, [x, lse], lo.shape(ins.out), dtype, out=ins.out)


def _lower_softmax(lo, ins):
    (x,), axis, dtype = ins.ins, (ins.params["axis"],), lo.dtype(ins.out)
    xshape, kshape = lo.shape(x), _keep_shape(lo.shape(x), axis)
    top = lo.op(P.amax, [x], kshape, dtype, axis=axis, keepdims=True)
    e = lo.op(P.exp, [lo.op(P.sub, [x, top], xshape, dtype)], xshape, dtype)
    total = lo.op(P.sum_, [e], kshape, dtype, axis=axis, keepdims=True)
    lo.op(P.div, [e, total], xshape, dtype, out=ins.out)


def _lower_norm(lo, ins):
    (x,), params = ins.ins, ins.params
    order, axis, keepdims = params.get("ord", 2), params.get("axis"), params.get("keepdims", False)
    shape, dtype, xshape = lo.shape(ins.out), lo.dtype(ins.out), lo.shape(x)
    if order == 2:
        total = lo.op(P.sum_, [lo.op(P.mul, [x, x], xshape, dtype)], shape, dtype, axis=axis,
                      keepdims=keepdims)
        lo.op(P.sqrt, [total], shape, dtype, out=ins.out)
        return
    size = lo.op(P.abs_, [x], xshape, dtype)
    reduce = P.sum_ if order == 1 else P.amax
    lo.op(reduce, [size], shape, dtype, out=ins.out, axis=axis, keepdims=keepdims)


def _finish_loss(lo, ins, losses, lshape):
    """The elementwise losses reduced as `reduction` asks, written to the instruction's slot."""
    reduction = ins.params.get("reduction", "mean")
    shape, dtype = lo.shape(ins.out), lo.dtype(ins.out)
    if reduction not in ("mean", "sum"):
        lo.op(P.reshape, [losses], shape, dtype, out=ins.out, shape=shape)
        return
    total = lo.op(P.sum_, [losses], shape, dtype, axis=None, keepdims=False)
    if reduction == "sum":
        lo.op(P.reshape, [total], shape, dtype, out=ins.out, shape=shape)
    else:
        lo.op(P.div, [total, lo.const(math.prod(lshape), dtype)], shape, dtype, out=ins.out)


def _lower_mse_loss(lo, ins):
    (x, y), dtype = ins.ins, lo.dtype(ins.out)
    dshape = np.broadcast_shapes(lo.shape(x), lo.shape(y))
    d = lo.op(P.sub, [x, y], dshape, dtype)
    _finish_loss(lo, ins, lo.op(P.mul, [d, d], dshape, dtype), dshape)


def _lower_binary_cross_entropy(lo, ins):
    (p, y, weight), dtype = ins.ins, lo.dtype(ins.out)
    pshape = lo.shape(p)
    lshape = np.broadcast_shapes(pshape, lo.shape(y), lo.shape(weight))
    one, floor = lo.const(1, dtype), lo.const(-100.0, dtype)

    def clamped_log(v):    # PyTorch clamps the logs at -100
        return lo.op(P.maximum, [lo.op(P.log, [v], pshape, dtype), floor], pshape, dtype)

    log_p = clamped_log(p)
    log_1mp = clamped_log(lo.op(P.sub, [one, p], pshape, dtype))
    yshape = lo.shape(y)
    hit = lo.op(P.mul, [y, log_p], np.broadcast_shapes(yshape, pshape), dtype)
    miss = lo.op(P.mul, [lo.op(P.sub, [one, y], yshape, dtype), log_1mp],
                 np.broadcast_shapes(yshape, pshape), dtype)
    both = lo.op(P.add, [hit, miss], np.broadcast_shapes(yshape, pshape), dtype)
    neg = lo.op(P.neg, [both], np.broadcast_shapes(yshape, pshape), dtype)
    _finish_loss(lo, ins, lo.op(P.mul, [neg, weight], lshape, dtype), lshape)


def _lower_clamp(lo, ins):
    (x,), shape, dtype = ins.ins, lo.shape(ins.out), lo.dtype(ins.out)
    low, high = ins.params.get("min"), ins.params.get("max")
    steps = [(P.maximum, low), (P.minimum, high)]
    steps = [(prim, bound) for prim, bound in steps if bound is not None]
    if not steps:
        lo.op(P.reshape, [x], shape, dtype, out=ins.out, shape=shape)
    for k, (prim, bound) in enumerate(steps):
        last = k == len(steps) - 1
        x = lo.op(prim, [x, lo.const(bound, dtype)], shape, dtype, out=ins.out if last else None)


def _lower_clone(lo, ins):
    shape = lo.shape(ins.out)
    lo.op(P.reshape, list(ins.ins), shape, lo.dtype(ins.out), out=ins.out, shape=shape)


_LOWERINGS = {
    "mean": _lower_mean, "logsumexp": _lower_logsumexp, "log_softmax": _lower_log_softmax,
    "softmax": _lower_softmax, "norm": _lower_norm, "mse_loss": _lower_mse_loss,
    "binary_cross_entropy": _lower_binary_cross_entropy,
    "clamp": _lower_clamp, "clone": _lower_clone,
}


def lower(tape):
    """The tape with composite primitives rewritten into the ones the kernels implement."""
    lo = _Lowerer(tape)
    position = {}
    for k, ins in enumerate(tape.instrs):
        position[k] = len(lo.tape.instrs)
        rule = _LOWERINGS.get(ins.prim.name)
        if rule is None:
            lo.tape.producer[ins.out] = len(lo.tape.instrs)
            lo.tape.instrs.append(ins)
        else:
            lo.phase = ins.phase
            rule(lo, ins)
    end = len(lo.tape.instrs)
    lo.tape.guards = [Guard(g.slot, g.expected, position.get(g.position, end), g.where)
                      for g in tape.guards]
    return lo.tape


# ---------------------------------------------------------------------------------------------
# Scalar expressions shared by the row kernel and the fused elementwise kernels
# ---------------------------------------------------------------------------------------------

REDUCTIONS = frozenset(("sum", "prod", "amax", "amin"))
GATHERS = frozenset(("reshape", "transpose", "broadcast_to", "getitem", "cat", "stack",
                     "setitem"))


class UnsupportedOnCuda(NotImplementedError):
    """A primitive the CUDA backend has no kernel for."""


def is_elementwise(prim):
    return getattr(prim, "scalar", None) is not None or prim.name == "cast"


def literal(value):
    """Source text of a constant scalar (booleans are 0.0/1.0, as in the scalar forms)."""
    value = float(value)
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "(-math.inf)"
    return repr(value)


def is_f32(dtype):
    return np.dtype(dtype) == np.float32


def scalar_expr(prim, params, operands, out_dtype):
    """Source of one elementwise result from operand expressions (float64 unless float32 out)."""
    if prim.name == "cast":
        target = np.dtype(params["dtype"])
        (x,) = operands
        if target.kind == "b":
            return f"(1.0 if {x} != 0.0 else 0.0)"
        if target.kind in "iu":
            return f"np.float64(np.int64({x}))"
        return f"np.float32({x})" if is_f32(target) else f"np.float64({x})"
    form = getattr(prim, "scalar", None)
    if form is None:
        raise UnsupportedOnCuda(f"tapegrad.jit(device='cuda'): primitive '{prim.name}' has no "
                                "scalar form for the CUDA kernels")
    expr = form.format(*operands)
    return f"np.float32({expr})" if is_f32(out_dtype) else expr


def load_expr(array_expr, dtype):
    """Read an element: floats keep their type, booleans and integers become float64."""
    return array_expr if np.dtype(dtype).kind == "f" else f"np.float64({array_expr})"


def store_expr(value, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return f"({value} != 0.0)"
    if dtype.kind in "iu":
        return f"np.int64({value})"
    return f"np.float32({value})" if is_f32(dtype) else value


# ---------------------------------------------------------------------------------------------
# The batched row kernel: one thread per row, straight-line scalar code
# ---------------------------------------------------------------------------------------------

class _Lines:
    def __init__(self, limit):
        self.lines = []
        self.count = 0
        self.limit = limit

    def emit(self, line):
        self.lines.append("    " + line)

    def var(self, expr):
        name = f"v{self.count}"
        self.count += 1
        if self.count > self.limit:
            raise UnsupportedOnCuda(
                f"tapegrad.jit(device='cuda'): one row of this vmap needs more than {self.limit} "
                "scalar operations; the batched GPU kernel is straight-line code per row. Run "
                "it with jit(...) on the CPU, or without vmap as an array tape on the GPU")
        self.emit(f"{name} = {expr}")
        return name


def _objects(shape, names):
    array = np.empty(len(names), dtype=object)
    array[:] = names
    return array.reshape(shape)


def _reduce_symbols(lines, x, axis, keepdims, combine, f32):
    ndim = x.ndim
    axes = tuple(range(ndim)) if axis is None else tuple(axis)
    kept = [i for i in range(ndim) if i not in axes]
    moved = np.transpose(x, kept + list(axes)).reshape(
        tuple(x.shape[i] for i in kept) + (-1,))
    out = np.empty(moved.shape[:-1], dtype=object)
    for index in np.ndindex(out.shape):
        terms = list(moved[index])
        acc = terms[0]
        for term in terms[1:]:
            acc = lines.var(scalar_expr_named(combine, acc, term, f32))
        out[index] = acc
    if keepdims:
        out = out.reshape(tuple(1 if i in axes else n for i, n in enumerate(x.shape)))
    return out


_COMBINE = {"sum": "add", "prod": "mul", "amax": "maximum", "amin": "minimum"}


_BINARY = {"add": P.add, "mul": P.mul, "maximum": P.maximum, "minimum": P.minimum}


def scalar_expr_named(name, a, b, f32):
    expr = _BINARY[name].scalar.format(a, b)
    return f"np.float32({expr})" if f32 else expr


def _matmul_symbols(lines, a, b, f32):
    a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a
    b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = np.broadcast_to(a2, batch + a2.shape[-2:])
    b3 = np.broadcast_to(b2, batch + b2.shape[-2:])
    m, k, n = a3.shape[-2], a3.shape[-1], b3.shape[-1]
    out = np.empty(batch + (m, n), dtype=object)
    for index in np.ndindex(batch + (m, n)):
        *bi, i, j = index
        bi = tuple(bi)
        terms = [f"{a3[bi + (i, t)]} * {b3[bi + (t, j)]}" for t in range(k)]
        expr = " + ".join(terms) if terms else "0.0"
        out[index] = lines.var(f"np.float32({expr})" if f32 else expr)
    shape = batch + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())
    return out.reshape(shape)


def _index_add_symbols(lines, base, values, index, f32):
    out = base.copy()
    dst = np.arange(base.size).reshape(base.shape)[index]
    vals = np.broadcast_to(values, np.shape(dst))
    flat = out.reshape(-1)
    for d, v in zip(np.ravel(dst), np.ravel(vals)):
        flat[d] = lines.var(scalar_expr_named("add", flat[d], v, f32))
    return flat.reshape(base.shape)


def _row_value(lines, tape, ins, operands):
    """Object array of variable names holding `ins`'s result for one row."""
    name, shape, dtype = ins.prim.name, tape.shapes[ins.out], tape.dtypes[ins.out]
    f32 = is_f32(dtype)
    if is_elementwise(ins.prim):
        parts = np.broadcast_arrays(*operands) if len(operands) > 1 else operands
        names = [lines.var(scalar_expr(ins.prim, ins.params, element, dtype))
                 for element in zip(*(np.ravel(p) for p in parts))]
        return _objects(shape, names)
    if name in REDUCTIONS:
        return _reduce_symbols(lines, operands[0], ins.params.get("axis"),
                               ins.params.get("keepdims", False), _COMBINE[name], f32)
    if name == "matmul":
        return _matmul_symbols(lines, operands[0], operands[1], f32)
    if name == "index_add":
        return _index_add_symbols(lines, operands[0], operands[1], ins.params["index"], f32)
    if name in GATHERS:
        # moving values around is NumPy's own indexing applied to arrays of names
        return np.asarray(ins.prim.impl(*operands, **ins.params), dtype=object).reshape(shape)
    raise UnsupportedOnCuda(f"tapegrad.jit(device='cuda'): primitive '{name}' has no CUDA kernel")


def row_kernel_source(tape, mapped, limit, inline_limit):
    """(source, big constant slots) of the kernel running a lowered row tape, one thread a row.

    mapped: per tape input, whether it has a batch axis (else every row reads the same value).
    Signature: kernel(rows, m, full, x0.., c0.., out0.., status, failures); x and out are
    (elements, rows), unmapped inputs (elements, 1), big constants flat. status[t] = 0, or 1 + the
    failed guard; failures[0] counts the rows that stopped, so that the host reads one number when
    every row took the traced path.
    """
    lines = _Lines(limit)
    values = {}
    for k, slot in enumerate(tape.inputs):
        column = "r" if mapped[k] else "0"
        size = math.prod(tape.shapes[slot])
        names = [lines.var(load_expr(f"x{k}[{j}, {column}]", tape.dtypes[slot]))
                 for j in range(size)]
        values[slot] = _objects(tape.shapes[slot], names)
    big = []
    for slot, value in tape.consts.items():
        array = np.asarray(value)
        if array.size > inline_limit:
            names = [f"c{len(big)}[{j}]" for j in range(array.size)]
            big.append(slot)
        else:
            names = [literal(v) for v in array.ravel()]
        values[slot] = _objects(array.shape, names)
    guards = sorted(enumerate(tape.guards), key=lambda item: item[1].position)
    g = 0
    for k, ins in enumerate(tape.instrs + [None]):
        while g < len(guards) and guards[g][1].position <= k:
            number, guard = guards[g]
            flag = values[guard.slot].reshape(-1)[0]
            lines.emit(f"if ({flag} != 0.0) != {guard.expected}:")
            lines.emit(f"    status[t] = {number + 1}")
            lines.emit("    cuda.atomic.add(failures, 0, 1)")
            lines.emit("    return")
            g += 1
        if ins is None:
            break
        values[ins.out] = _row_value(lines, tape, ins, [values[s] for s in ins.ins])
    for k, slot in enumerate(tape.outputs):
        for j, element in enumerate(values[slot].reshape(-1)):
            lines.emit(f"out{k}[{j}, t] = {store_expr(element, tape.dtypes[slot])}")
    lines.emit("status[t] = 0")
    args = (["rows", "m", "full"] + [f"x{k}" for k in range(len(tape.inputs))]
            + [f"c{k}" for k in range(len(big))] + [f"out{k}" for k in range(len(tape.outputs))]
            + ["status", "failures"])
    head = [f"def row_kernel({', '.join(args)}):",
            "    t = cuda.grid(1)",
            "    if t >= m:",
            "        return",
            "    r = t if full else rows[t]"]
    return "\n".join(head + lines.lines) + "\n", big


# ---------------------------------------------------------------------------------------------
# Fused elementwise kernels for array tapes
# ---------------------------------------------------------------------------------------------

def broadcast_index(in_shape, out_shape):
    """Source of the flat index into an input of in_shape for flat output index `i`."""
    size = math.prod(in_shape)
    if size == 1:
        return "0"
    if tuple(in_shape) == tuple(out_shape) or size == math.prod(out_shape):
        return "i"
    in_shape = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    terms, out_stride, in_stride = [], 1, 1
    for d in reversed(range(len(out_shape))):
        if in_shape[d] != 1:
            position = f"(i // {out_stride})" if out_stride != 1 else "i"
            if d > 0:
                position = f"({position} % {out_shape[d]})"
            terms.append(f"{position} * {in_stride}" if in_stride != 1 else position)
            in_stride *= in_shape[d]
        out_stride *= out_shape[d]
    return " + ".join(reversed(terms))


def fused_kernel_source(tape, group, stored):
    """(source, input slots) of one kernel computing the instructions `group` (indices) over the
    elements of their common shape; `stored` are the results written to memory, in order.

    Signature: fused(n, a0.., o0..), a grid-stride loop over the flat index i.
    """
    shape = tape.shapes[tape.instrs[group[0]].out]
    members = {tape.instrs[k].out for k in group}
    inputs, names, body = [], {}, []
    for k in group:
        ins = tape.instrs[k]
        operands = []
        for slot in ins.ins:
            if slot not in names:
                if slot in tape.consts and np.size(tape.consts[slot]) == 1:
                    names[slot] = literal(np.ravel(tape.consts[slot])[0])
                else:
                    a = len(inputs)
                    inputs.append(slot)
                    index = broadcast_index(tape.shapes[slot], shape)
                    names[slot] = f"l{a}"
                    body.append(f"        l{a} = {load_expr(f'a{a}[{index}]', tape.dtypes[slot])}")
            operands.append(names[slot])
        assert ins.out in members
        names[ins.out] = f"v{ins.out}"
        body.append(f"        v{ins.out} = "
                    f"{scalar_expr(ins.prim, ins.params, operands, tape.dtypes[ins.out])}")
    for k, slot in enumerate(stored):
        body.append(f"        o{k}[i] = {store_expr(names[slot], tape.dtypes[slot])}")
    args = ["n"] + [f"a{k}" for k in range(len(inputs))] + [f"o{k}" for k in range(len(stored))]
    head = [f"def fused({', '.join(args)}):",
            "    for i in range(cuda.grid(1), n, cuda.gridsize(1)):"]
    return "\n".join(head + body) + "\n", inputs
