"""Sparse Jacobians by colouring (as ADOL-C's sparse drivers): jacfwd/jacrev(f, sparsity=...).

Columns (jacfwd) or rows (jacrev) of the Jacobian that share no row (column) get one colour;
one tangent (cotangent) sweep per colour, seeded with the sum of its columns' (rows') unit
vectors, gives every entry of those columns, read back through the pattern. A banded Jacobian of
bandwidth b costs b sweeps whatever its size.

The pattern is given (`sparsity=` a scipy.sparse matrix or a boolean array of shape
(out.size, x.size)) or detected (`sparsity="detect"`): each instruction of the recorded tape maps
which input elements every element of its result depends on (elementwise with broadcasting,
indexing, reshapes, reductions along axes, matmul with a constant matrix's nonzeros; an
instruction without a finer rule is taken as dense), so the detected pattern is structural and
holds at every point on the same path.
Needs scipy.
"""
import numpy as np

from .trace import Tracer


def _sparse():
    try:
        import scipy.sparse as sp
    except ImportError as exc:          # pragma: no cover - scipy is an optional dependency
        raise ImportError("tapegrad: sparse Jacobians (sparsity=) return scipy.sparse matrices; "
                          "install scipy (pip install scipy)") from exc
    return sp


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def _map(sp, rows, cols, n_rows, n_cols):
    rows, cols = np.ravel(rows), np.ravel(cols)
    keep = (rows >= 0) & (cols >= 0)
    return sp.csr_matrix((np.ones(int(keep.sum()), bool), (rows[keep], cols[keep])),
                         shape=(n_rows, n_cols))


def _numbered(shape):
    return np.arange(_size(shape)).reshape(shape)


def _matmul_selection(sp, ins, argnum, shapes, consts):
    """matmul of 1-D/2-D operands: a constant operand's nonzeros, a traced one's every element
    (batched operands: None, taken as dense)."""
    a_shape, b_shape = (shapes[s] for s in ins.ins)
    if len(a_shape) > 2 or len(b_shape) > 2:
        return None
    a_pat, b_pat = (sp.csr_matrix(np.asarray(consts[s]) != 0) if s in consts else
                    sp.csr_matrix(np.ones(shapes[s], bool)) for s in ins.ins)
    a_pat = a_pat if len(a_shape) == 2 else a_pat.reshape(1, -1)      # (n, m)
    b_pat = b_pat if len(b_shape) == 2 else b_pat.reshape(-1, 1)      # (m, p)
    n, p = a_pat.shape[0], b_pat.shape[1]
    if argnum == 0:                  # out[i, k] <- a[i, j] where b[j, k]
        return sp.kron(sp.identity(n, bool), b_pat.T, format="csr").astype(bool)
    return sp.kron(a_pat, sp.identity(p, bool), format="csr").astype(bool)


def _selection(sp, ins, argnum, shapes, consts):
    """Boolean (result size x argument size) matrix: which argument elements each result element
    depends on; None where the argument carries no derivative."""
    prim, params = ins.prim, ins.params
    in_shapes = [shapes[s] for s in ins.ins]
    shape, out_shape = in_shapes[argnum], shapes[ins.out]
    n_in, n_out = _size(shape), _size(out_shape)
    name = prim.name
    if prim.kind == "elementwise" or name in ("clone", "cast") or (
            prim.kind == "loss" and params.get("reduction") == "none"):
        return _map(sp, np.arange(n_out), np.broadcast_to(_numbered(shape), out_shape), n_out,
                    n_in)
    if name in ("reshape", "transpose", "broadcast_to", "getitem"):
        return _map(sp, np.arange(n_out), prim.impl(_numbered(shape), **params), n_out, n_in)
    if name in ("cat", "stack", "setitem"):
        arrays = [np.full(s, -1, np.int64) for s in in_shapes]
        arrays[argnum] = _numbered(shape)
        return _map(sp, np.arange(n_out), prim.impl(*arrays, **params), n_out, n_in)
    if name == "index_add":
        if argnum == 0:
            return sp.identity(n_out, bool, format="csr")
        targets = _numbered(out_shape)[params["index"]]
        rows, cols = np.broadcast_arrays(targets, _numbered(shape))
        return _map(sp, rows, cols, n_out, n_in)
    if name == "matmul":
        return _matmul_selection(sp, ins, argnum, shapes, consts)
    if prim.kind == "reduction" and "axis" in params:
        axis = params["axis"]
        axes = range(len(shape)) if axis is None else (axis,) if np.ndim(axis) == 0 else axis
        kept = tuple(1 if d in set(axes) else n for d, n in enumerate(shape))
        group = np.broadcast_to(_numbered(kept), shape)
        grouping = _map(sp, group, np.arange(n_in), _size(kept), n_in)
        if name in ("softmax", "log_softmax"):          # every element of its own group
            return _map(sp, np.arange(n_out), group, n_out, _size(kept)) @ grouping
        return grouping if _size(kept) == n_out else None
    return None


def detect(lin):
    """The Jacobian's structural pattern (out.size x x.size, CSR) from lin's tape."""
    sp = _sparse()
    tape = lin.ctx.tape
    (w,), (o,) = lin.wrt, lin.out_leaves
    deps = {w._slot: sp.identity(_size(w.shape), bool, format="csr")}
    n_in = _size(w.shape)
    for ins in tape.instrs[lin.start:]:
        if not ins.prim.differentiable:
            continue
        total = None
        for argnum, slot in enumerate(ins.ins):
            d = deps.get(slot)
            if d is None or tape.dtypes[slot].kind != "f":
                continue
            rules = ins.prim.vjp_rules
            if ins.prim.variadic_vjp is None and argnum < len(rules) and rules[argnum] is None:
                continue
            selection = _selection(sp, ins, argnum, tape.shapes, tape.consts)
            if selection is None:     # no finer rule: every result element, every dependency
                row = (d.sum(axis=0) > 0).A.ravel()
                selection_d = sp.csr_matrix(np.broadcast_to(row, (_size(tape.shapes[ins.out]),
                                                                  n_in)))
            else:
                selection_d = selection @ d
            total = selection_d if total is None else total + selection_d
        if total is not None:
            deps[ins.out] = total.astype(bool)
    if not isinstance(o, Tracer) or o._slot not in deps:
        return sp.csr_matrix((_size(np.shape(o._value if isinstance(o, Tracer) else o)), n_in),
                             dtype=bool)
    return deps[o._slot]


def colour_columns(pattern):
    """Greedy colouring of the pattern's columns: columns sharing a row differ. -> (colours,
    number of colours)."""
    csc, csr = pattern.tocsc(), pattern.tocsr()
    n = pattern.shape[1]
    colours = np.full(n, -1, np.int64)
    for j in range(n):
        rows = csc.indices[csc.indptr[j]:csc.indptr[j + 1]]
        taken = set()
        for r in rows:
            taken.update(colours[csr.indices[csr.indptr[r]:csr.indptr[r + 1]]].tolist())
        c = 0
        while c in taken:
            c += 1
        colours[j] = c
    return colours, int(colours.max()) + 1 if n else 0


def as_pattern(sparsity, shape):
    sp = _sparse()
    pattern = sp.csr_matrix(sparsity, dtype=bool)
    if pattern.shape != shape:
        raise ValueError(f"tapegrad: sparsity has shape {pattern.shape} but the Jacobian is "
                         f"{shape} (output size x input size); give the pattern of the "
                         "flattened Jacobian")
    return pattern


def sparse_jacobian(lin, sparsity, forward):
    """The Jacobian of lin's (one input, one output) function as a CSR matrix."""
    sp = _sparse()
    if len(lin.wrt) != 1 or len(lin.out_leaves) != 1:
        raise TypeError("tapegrad: sparse Jacobians (sparsity=) take a function of one array "
                        "returning one array; flatten other arguments and results into one")
    (w,), (o,) = lin.wrt, lin.out_leaves
    x_shape = w.shape
    out_shape = np.shape(o._value if isinstance(o, Tracer) else o)
    shape = (_size(out_shape), _size(x_shape))
    pattern = detect(lin) if isinstance(sparsity, str) and sparsity == "detect" else \
        as_pattern(sparsity, shape)
    oriented = pattern if forward else pattern.T.tocsr()
    colours, n_colours = colour_columns(oriented)
    compressed = []
    for c in range(n_colours):
        seed = (colours == c).astype(np.float64)
        if forward:
            result = lin.pushforward_leaves([seed.reshape(x_shape)])[0]
        else:
            result = lin.pullback_leaves([seed.reshape(out_shape)])[0]
        compressed.append(np.ravel(result._value if isinstance(result, Tracer) else result))
    coo = oriented.tocoo()
    table = np.stack(compressed, axis=1) if compressed else np.zeros((oriented.shape[0], 0))
    values = table[coo.row, colours[coo.col]]
    jac = sp.csr_matrix((values, (coo.row, coo.col)), shape=oriented.shape)
    return jac if forward else jac.T.tocsr()
