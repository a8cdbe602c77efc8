"""Compile the backend's kernels to PTX for a real GPU (sm_90) with numba-cuda's own compiler,
without a GPU: the simulator runs kernels as Python and would not catch what Numba's CUDA typing
or NVVM refuse. Run by test_cuda.py in a process without NUMBA_ENABLE_CUDASIM; needs the CUDA
compiler libraries (pip install nvidia-nvvm nvidia-cuda-nvrtc, or numba-cuda[cu13])."""
import math
import sys

import numpy as np
from numba import cuda, from_dtype, types

import tapegrad as tg
from tapegrad_jit import cpu
from tapegrad_jit import cuda_config as config
from tapegrad_jit import cuda_kernels as K
from tapegrad_jit.cuda_plan import fused_kernel_source, lower, row_kernel_source

f64, f32, i64, i32 = types.float64, types.float32, types.int64, types.int32


def arr(dtype, ndim=1):
    return types.Array(dtype, ndim, "C")


def kernel_function(source, name):
    namespace = {"cuda": cuda, "np": np, "math": math}
    exec(source, namespace)
    return namespace[name]


def bumpy(x):
    y = x
    for _ in range(3):
        y = 0.9 * np.sin(y) + 0.1 * y * np.tanh(0.3 * x) + 0.05 * np.exp(-y * y)
    return np.where(y > 0, y, y * y)


def chain(x, w):
    return np.sum(np.exp(np.sin(x) * w + 1.0) > 1.5) + np.sum(np.tanh(x) * w)


NO_COMPILER = 77


def compiler_present():
    def trivial(x):
        x[0] = 1.0
    try:
        cuda.compile_ptx(trivial, (arr(f64),), cc=(9, 0))
    except Exception as exc:            # noqa: BLE001  (NVVM/NVRTC libraries not found)
        print(f"no CUDA compiler libraries: {type(exc).__name__}: {exc}")
        return False
    return True


def main():
    if not compiler_present():
        return NO_COMPILER
    checks = []
    # the batched row kernel (straight-line code) of a gradient, with a guard-free select
    for dtype, nbtype in ((np.float64, f64), (np.float32, f32)):
        tape = lower(tg.make_tape(tg.value_and_grad(bumpy))(dtype(0.5)))
        source, big = row_kernel_source(tape, (True,), 10_000, config.MAX_INLINE_CONST)
        sig = (arr(i64), i64, types.boolean, arr(nbtype, 2), arr(nbtype, 2), arr(nbtype, 2),
               arr(i32), arr(i32))
        checks.append(("row_kernel", kernel_function(source, "row_kernel"), sig))
    # fused elementwise kernels of an array tape (broadcasting, booleans)
    x, w = np.ones((3, 4)), np.ones(4)
    tape = lower(tg.make_tape(tg.value_and_grad(chain, argnums=(0, 1)))(x, w))
    groups, run = [], []
    for ins in tape.instrs:
        if getattr(ins.prim, "scalar", None) and (not run or tape.shapes[ins.out] ==
                                                  tape.shapes[run[0].out]):
            run.append(ins)
        else:
            if run:
                groups.append(run)
            run = [ins] if getattr(ins.prim, "scalar", None) else []
    for group in groups:
        view = type("View", (), {"instrs": group, "shapes": tape.shapes,
                                 "dtypes": tape.dtypes, "consts": tape.consts})()
        stored = [ins.out for ins in group]
        source, inputs = fused_kernel_source(view, list(range(len(group))), stored)
        sig = ((i64,) + tuple(arr(from_dtype(tape.dtypes[s])) for s in inputs)
               + tuple(arr(from_dtype(tape.dtypes[s])) for s in stored))
        checks.append(("fused", kernel_function(source, "fused"), sig))
    # reductions, matmul, the row interpreter, the fixed kernels
    for op, nbtype, acc in (("sum", f64, "float64"), ("amax", f32, "float32"),
                            ("sum", i64, "int64")):
        source = K._REDUCE_SOURCE.format(acc=f"np.{acc}", acc_name=acc, init=K._REDUCE_INIT[op],
                                         combine=K._REDUCE_COMBINE[op], threads=256)
        checks.append(("reduce_serial", kernel_function(source, "reduce_serial"),
                       (arr(nbtype), arr(nbtype), i64, i64, i64)))
        checks.append(("reduce_parts", kernel_function(source, "reduce_parts"),
                       (arr(nbtype), arr(nbtype), i64, i64, i64, i64)))
    for dtype, nbtype in (("float64", f64), ("float32", f32)):
        source = K._MATMUL_SOURCE.format(tile=16, dtype=dtype)
        checks.append(("matmul", kernel_function(source, "matmul"),
                       (arr(nbtype), arr(nbtype), arr(nbtype), arr(i64), arr(i64), i64, i64, i64)))
    interpreter = K.interpreter(cpu.ELEMENTWISE_FORMS, cpu.OPCODE)
    checks.append(("interpret_rows", interpreter.py_func,
                   (arr(i32, 2), arr(i32), arr(f64), arr(f64, 2), arr(i64), types.boolean, i64,
                    i64, arr(i64), arr(i64), arr(f64, 2), arr(i64), arr(i64), arr(f64, 2),
                    arr(i32), arr(i32))))
    fixed = {"_gather": (arr(f64), arr(i64), arr(f64)), "_copy": (arr(f32), arr(f64)),
             "_scatter": (arr(f64), arr(i64), arr(i64), arr(f64)),
             "_scatter_add": (arr(f64), arr(i64), arr(i64), arr(f64)),
             "_to_rows_minor": (arr(f32), i64, i64, i64, arr(f32, 2)),
             "_to_rows_major": (arr(f64, 2), arr(f64)),
             "_add_run": (arr(f64), types.boolean, arr(f64), i64, arr(f64))}
    for name, sig in fixed.items():
        checks.append((name, getattr(K, name).py_func, sig))
    failed = 0
    for name, function, sig in checks:
        try:
            cuda.compile_ptx(function, sig, cc=(9, 0))
        except Exception as exc:        # noqa: BLE001  (report every refusal, then fail)
            failed += 1
            print(f"FAILED {name} {sig}: {type(exc).__name__}: {exc}")
    print(f"compiled {len(checks) - failed} of {len(checks)} kernels to PTX")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
