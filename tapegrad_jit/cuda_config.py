"""Launch sizes for the CUDA backend, in one place.

The simulator (NUMBA_ENABLE_CUDASIM=1) runs every thread of a block as a Python thread, so it gets
small blocks and grids; a real GPU gets blocks that fill a warp scheduler several times over.
"""
from numba import config

SIMULATOR = bool(config.ENABLE_CUDASIM)

THREADS = 8 if SIMULATOR else 256           # threads per block, 1-D kernels
MAX_BLOCKS = 4 if SIMULATOR else 65535      # grid-stride loops cover the rest
REDUCE_THREADS = 8 if SIMULATOR else 256    # power of two: tree reduction in shared memory
REDUCE_PARTS = 2 if SIMULATOR else 1024     # most blocks one reduction is split over
TILE = 4 if SIMULATOR else 16               # matmul tile edge (shared memory)
# Reductions run one thread per output when outputs are many or each is short; otherwise each
# output is split over blocks (tree-reduced in shared memory) and the partial results summed.
REDUCE_SERIAL_OUTPUTS = 64 if SIMULATOR else 4096
REDUCE_SERIAL_K = 16 if SIMULATOR else 256

# A batched tape is turned into straight-line code per row; past this many scalar operations per
# row that kernel would take long to compile and spill registers, so the rows run on the row
# interpreter instead (the CPU backend's instruction arrays, one compiled kernel for every tape).
MAX_ROW_OPS = 200 if SIMULATOR else 4000
# The interpreter keeps every row's slots in device memory: rows go in launches of at most this
# many bytes of slots.
INTERPRETER_BYTES = 1 << 16 if SIMULATOR else 1 << 30
# Constants with more elements than this are passed to kernels as arrays instead of literals.
MAX_INLINE_CONST = 16


def blocks_for(n, threads=THREADS):
    return max(1, min(MAX_BLOCKS, (n + threads - 1) // threads))
