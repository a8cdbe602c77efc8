"""Numba backends for tapegrad tapes: `cpu` (compiled interpreter over instruction arrays) and
`cuda` (numba.cuda kernels). Everything that imports numba lives here; `tapegrad` imports this
package lazily, the first time a jitted function runs."""

from . import nopython  # noqa: E402,F401  (jitted gradients callable from @numba.njit code)
