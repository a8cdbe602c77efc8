"""Dense vs coloured Jacobian of a 1-D PDE residual (tg.jacfwd(f, sparsity=...)).

    python -m benchmarks.sparse_jacobian [--n 100000] [--dense-n 1000 2000]

The residual of -u'' + u^2 - sin(u) on n points with Dirichlet rows has a tridiagonal Jacobian:
three colours, so three tangent sweeps whatever n. The dense Jacobian takes n sweeps and n^2
numbers (80 GB at n = 1e5), so it is timed at the smaller --dense-n sizes only. Reported: seconds
for the pattern (detected from the tape, or given), the colouring, and the whole Jacobian.
Not a timed test: numbers vary by machine.
"""
import argparse
import time

import numpy as np

import tapegrad as tg


def residual(u):
    inner = (u[2:] - 2 * u[1:-1] + u[:-2]) * (len(u) - 1) ** 2 + u[1:-1] ** 2 - np.sin(u[1:-1])
    return np.concatenate([u[:1] - 1.0, inner, u[-1:]])


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main(argv=None):
    import scipy.sparse as sp
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dense-n", type=int, nargs="*", default=[1000, 2000])
    args = parser.parse_args(argv)
    print(f"{'n':>8} {'method':<22}{'seconds':>9}")
    for n in args.dense_n:
        u = np.linspace(0.0, 1.0, n)
        dense, t_dense = timed(tg.jacfwd(residual), u)
        coloured, t_col = timed(tg.jacfwd(residual, sparsity="detect"), u)
        np.testing.assert_allclose(coloured.toarray(), dense, rtol=1e-10, atol=1e-6)
        print(f"{n:>8} {'dense jacfwd':<22}{t_dense:>9.2f}")
        print(f"{n:>8} {'coloured, detected':<22}{t_col:>9.2f}")
    n = args.n
    u = np.linspace(0.0, 1.0, n)
    band = sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr")
    jac, t_given = timed(tg.jacfwd(residual, sparsity=band), u)
    jac2, t_detect = timed(tg.jacfwd(residual, sparsity="detect"), u)
    assert abs(jac - jac2).max() == 0
    print(f"{n:>8} {'coloured, given band':<22}{t_given:>9.2f}")
    print(f"{n:>8} {'coloured, detected':<22}{t_detect:>9.2f}   ({jac.nnz} entries, 3 colours)")


if __name__ == "__main__":
    main()
