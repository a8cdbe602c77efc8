"""Spellings that `numba.njit` compiles, for the constructs whose NumPy spelling it does not.

Numba reduces over one integer axis with np.sum only (no `axis` for max/min/mean/prod, no tuple
axes, no `keepdims`), and its `@` takes 1-D and 2-D arrays only. The emitted code spells those
constructs here instead, for both jit=True and jit=False (one emission, so both give the same
numbers):

    np.mean(X, axis=1)              np.sum(X, axis=1) / X.shape[1]
    np.sum(X, axis=(0, 2))          np.sum(np.sum(X, axis=2), axis=0)
    np.sum(X, axis=1, keepdims=1)   np.sum(X, axis=1)[:, None]
    np.max(X, axis=0)               a loop over the kept axes: c[j] = np.max(X[:, j])
    A @ B on stacks                 a loop over the batch axes: C[k] = A[k] @ B[k]

Each function returns source text; loops come as lines that the caller parses.
"""


def sum_over(text, ndim, axes):
    """np.sum over `axes` of an ndim-D array, one integer axis at a time (highest first, so
    the lower axis numbers stay valid)."""
    if len(axes) == ndim:
        return f"np.sum({text})"
    for axis in sorted(axes, reverse=True):
        text = f"np.sum({text}, axis={axis})"
    return text


def count_over(like, ndim, axes):
    """How many elements each reduction over `axes` of `like` takes."""
    if len(axes) == ndim:
        return f"{like}.size"
    counts = [f"{like}.shape[{axis}]" for axis in axes]
    return counts[0] if len(counts) == 1 else f"({' * '.join(counts)})"


def keep_dims(text, ndim, axes):
    """A reduced value indexed back to the keepdims shape (`r[:, None]`); a full reduction is a
    scalar, made an array of ones in every axis."""
    if len(axes) == ndim:
        shape = "1" if ndim == 1 else f"({', '.join(['1'] * ndim)})"
        return f"np.full({shape}, {text})"
    parts = ["None" if k in axes else ":" for k in range(ndim)]
    return f"({text})[{', '.join(parts)}]" if not text.isidentifier() \
        else f"{text}[{', '.join(parts)}]"


def _index(parts):
    """Index text without trailing full slices (`X[i]`, not `X[i, :]`)."""
    while len(parts) > 1 and parts[-1] == ":":
        parts = parts[:-1]
    return ", ".join(parts)


def loop_reduce(target, function, x, ndim, axes, keepdims, fresh, dtype=None, wrap="{}"):
    """Lines that set `target` to function(x) over `axes` (max, min, prod, ...): one call per
    element of the kept axes. `wrap` is applied to each slice (`np.abs({})` for inf-norms)."""
    kept = [k for k in range(ndim) if k not in axes]
    names = {k: fresh(name) for k, name in zip(kept, "ijklmn")}
    shape = [f"{x}.shape[{k}]" if k in names else "1" for k in range(ndim)
             if k in names or keepdims]
    shape_text = shape[0] if len(shape) == 1 else f"({', '.join(shape)})"
    lines = [f"{target} = np.empty({shape_text}{', ' + dtype if dtype else ''})"]
    for depth, k in enumerate(kept):
        lines.append("    " * depth + f"for {names[k]} in range({x}.shape[{k}]):")
    out = ", ".join(names[k] if k in names else "0" for k in range(ndim) if k in names or keepdims)
    part = wrap.format(f"{x}[{_index([names.get(k, ':') for k in range(ndim)])}]")
    lines.append("    " * len(kept) + f"{target}[{out}] = {function}({part})")
    return lines


def loop_matmul(target, a, na, b, nb, fresh):
    """Lines that set `target` to a @ b for stacks of matrices: one 2-D product per batch
    element (a 2-D operand meets every matrix of the stack)."""
    n = max(na, nb)
    big = a if na == n else b
    batch = [fresh(name) for name in "klmn"[:n - 2]]
    shape = [f"{big}.shape[{d}]" for d in range(n - 2)]
    shape += [f"{a}.shape[{na - 2}]", f"{b}.shape[{nb - 1}]"]
    lines = [f"{target} = np.empty(({', '.join(shape)}))"]
    for depth, name in enumerate(batch):
        lines.append("    " * depth + f"for {name} in range({big}.shape[{depth}]):")
    lines.append("    " * len(batch) + f"{target}[{', '.join(batch)}] = "
                 f"{slice_of(a, na, batch)} @ {slice_of(b, nb, batch)}")
    return lines


def slice_of(name, ndim, batch):
    """One matrix of a stack at the batch indices (the last ones when the stack is shorter)."""
    if ndim <= 2:
        return name
    return f"{name}[{', '.join(batch[len(batch) - (ndim - 2):])}]"


def loop_matmul_adjoint(g, a, na, b, nb, a_cot, b_cot, fresh, like):
    """Lines for the cotangents of `a @ b` on stacks (primitives._matmul_vjp_left/right):
    a_cot = g @ b^T and b_cot = a^T @ g per matrix; an operand with fewer batch axes gets the
    sum over the others. `a_cot`/`b_cot` are None for operands that take no gradient; `like`
    gives a name shaped like an operand."""
    n = max(na, nb)
    batch = [fresh(name) for name in "klmn"[:n - 2]]
    lines, body = [], []
    g_s, a_s, b_s = (slice_of(g, n, batch), slice_of(a, na, batch), slice_of(b, nb, batch))
    for cot, name, nd, rule in ((a_cot, a, na, f"{g_s} @ {b_s}.T"),
                                (b_cot, b, nb, f"{a_s}.T @ {g_s}")):
        if cot is None:
            continue
        if nd == n:  # one matrix per batch element: each is written once
            lines.append(f"{cot} = np.empty_like({like(name)})")
            body.append(f"{slice_of(cot, nd, batch)} = {rule}")
        else:  # shared by the batch: summed over it
            lines.append(f"{cot} = np.zeros_like({like(name)})")
            body.append(f"{slice_of(cot, nd, batch)} += {rule}")
    for depth, index in enumerate(batch):
        lines.append("    " * depth + f"for {index} in range({g}.shape[{depth}]):")
    lines += ["    " * len(batch) + line for line in body]
    return lines
