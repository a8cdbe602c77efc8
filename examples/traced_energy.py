"""Face 2: a function traced onto a tape, compiled with Numba, checked against finite differences.

    python examples/traced_energy.py
"""
import numpy as np

import tapegrad as tg
from model import energy      # examples/model.py

value_and_grad = tg.jit(tg.value_and_grad(energy))

x = np.array([0.5, -0.2, 1.0])
value, gradient = value_and_grad(x)
print(f"energy(x)   = {float(value):.6f}")
print(f"d energy/dx = {gradient}")

# central differences agree to about 1e-9
h = 1e-6
numeric = np.array([(energy(x + h * e) - energy(x - h * e)) / (2 * h) for e in np.eye(3)])
assert np.allclose(gradient, numeric, rtol=1e-6), (gradient, numeric)

# the other branch of `if np.sum(x) > 0`: its guard fails, so the function is traced again
print("other branch:", value_and_grad(-x)[1])

# one gradient per row, rows in parallel
rows = np.random.default_rng(0).standard_normal((4, 3))
print("per row:\n", tg.jit(tg.vmap(tg.grad(energy)))(rows))
print(value_and_grad.tape(x))
