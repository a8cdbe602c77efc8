"""Face 3: the gradient of a simulation as Python source, compiled with Numba.

    python examples/source_pendulum.py
"""
from model import pendulum    # examples/model.py

from tapegrad import source

d_pendulum = source.grad(pendulum, argnums=(2, 3), jit=True)
args = (0.5, 0.0, 0.1, 1.0, 0.01, 1000)
d_damping, d_length = d_pendulum(*args)
print(f"d theta(T) / d damping = {d_damping:.6f}")
print(f"d theta(T) / d length  = {d_length:.6f}")

# central differences agree
h = 1e-6
for i, derivative in ((2, d_damping), (3, d_length)):
    up, down = list(args), list(args)
    up[i] += h
    down[i] -= h
    numeric = (pendulum(*up) - pendulum(*down)) / (2 * h)
    assert abs(derivative - numeric) < 1e-5 * max(1.0, abs(numeric)), (derivative, numeric)

print(d_pendulum.source)
