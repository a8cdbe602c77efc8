"""Hand-written Numba gradients: the yardsticks a compiled tape is measured against.

Imported only inside implementation setups (it imports numba). Kernels are cached on disk so a
second benchmark run does not pay their compile time again; none uses fastmath unless its name
says so, since tapegrad does not either.
"""
import math

import numpy as np
from numba import njit, prange


# ---------------------------------------------------------------- scalar graph

@njit(cache=True)
def graph_sweeps(code, nin, out, ins, v, g, target):
    """Forward and adjoint sweep of the scalar graph's op list (the same layout as the C one)."""
    for k in range(code.shape[0]):
        o = out[k]
        if code[k] == 0:                            # softplus
            x = v[ins[k, 0]]
            v[o] = max(x, 0.0) + math.log1p(math.exp(-abs(x)))
        elif code[k] == 1:                          # sum
            s = 0.0
            for i in range(nin[k]):
                s += v[ins[k, i]]
            v[o] = s
        elif code[k] == 2:                          # product
            v[o] = v[ins[k, 0]] * v[ins[k, 1]]
        else:                                       # softmax, nin outputs from out
            m = -np.inf
            for i in range(nin[k]):
                m = max(m, v[ins[k, i]])
            s = 0.0
            for i in range(nin[k]):
                v[o + i] = math.exp(v[ins[k, i]] - m)
                s += v[o + i]
            for i in range(nin[k]):
                v[o + i] /= s
    g[:] = 0.0
    g[target] = 1.0
    for k in range(code.shape[0] - 1, -1, -1):
        o = out[k]
        if code[k] == 0:
            x = v[ins[k, 0]]
            g[ins[k, 0]] += g[o] / (1.0 + math.exp(-x))
        elif code[k] == 1:
            for i in range(nin[k]):
                g[ins[k, i]] += g[o]
        elif code[k] == 2:
            a, b = ins[k, 0], ins[k, 1]
            g[a] += g[o] * v[b]
            g[b] += g[o] * v[a]
        else:
            dot = 0.0
            for i in range(nin[k]):
                dot += v[o + i] * g[o + i]
            for i in range(nin[k]):
                g[ins[k, i]] += v[o + i] * (g[o + i] - dot)
    return v[target]


# ---------------------------------------------------------------- Rosenbrock

def _rosenbrock_value_and_grad(x, g):
    # One pass: term i touches g[i] and g[i+1]; g[i+1] is first written here, then completed
    # by term i+1, so no separate zeroing pass is needed.
    f = 0.0
    g[0] = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        f += 100.0 * a * a + b * b
        g[i] += -400.0 * a * x[i] - 2.0 * b
        g[i + 1] = 200.0 * a
    return f


rosenbrock_value_and_grad = njit(cache=True)(_rosenbrock_value_and_grad)
# Not cached: the on-disk cache does not tell the two compilations of one function apart.
rosenbrock_value_and_grad_fastmath = njit(fastmath=True)(_rosenbrock_value_and_grad)


@njit(cache=True)
def rosenbrock_value(x):
    f = 0.0
    for i in range(x.shape[0] - 1):
        a = x[i + 1] - x[i] * x[i]
        b = 1.0 - x[i]
        f += 100.0 * a * a + b * b
    return f


# ---------------------------------------------------------------- pendulum ODE

@njit(cache=True)
def pendulum_adjoint(k, c, theta, omega, steps, dt):
    """Value and (d/dk, d/dc) of the angle after `steps` Euler steps, by a hand-written adjoint."""
    thetas = np.empty(steps)
    omegas = np.empty(steps)
    for i in range(steps):
        thetas[i] = theta
        omegas[i] = omega
        theta, omega = theta + dt * omega, omega - dt * (k * math.sin(theta) + c * omega)
    value = theta
    theta_bar, omega_bar, k_bar, c_bar = 1.0, 0.0, 0.0, 0.0
    for i in range(steps - 1, -1, -1):
        th, om = thetas[i], omegas[i]
        k_bar -= dt * math.sin(th) * omega_bar
        c_bar -= dt * om * omega_bar
        theta_bar, omega_bar = (theta_bar - dt * k * math.cos(th) * omega_bar,
                                dt * theta_bar + (1.0 - dt * c) * omega_bar)
    return value, k_bar, c_bar


# ---------------------------------------------------------------- batched scalar function

@njit(parallel=True, cache=True)
def bumpy_grad(x, steps, out):
    """f'(x) pointwise by forward mode (a dual number through the loop), rows in parallel."""
    for j in prange(x.shape[0]):
        xj = x[j]
        t = math.tanh(0.3 * xj)
        dt = 0.3 * (1.0 - t * t)
        y, dy = xj, 1.0
        for _ in range(steps):
            e = 0.05 * math.exp(-y * y)
            y, dy = (0.9 * math.sin(y) + 0.1 * y * t + e,
                     0.9 * math.cos(y) * dy + 0.1 * (dy * t + y * dt) - 2.0 * y * dy * e)
        out[j] = dy
    return out
