"""Scalar ODE loop: 1000 explicit Euler steps of a damped pendulum
theta'' = -k sin(theta) - c theta', gradient of the final angle with respect to (k, c). float64.

Scalar Python code in a loop: the source transformer's home ground. The hand-written Numba
adjoint is the yardstick; JAX gets its idiomatic lax.fori_loop besides the unrolled Python loop.
"""
import dataclasses

import numpy as np

from ..frameworks import jax_setup, standard
from ..harness import CS_STEP, Goal, Impl, Problem, Workload, complex_step

DT = 0.01
PARAMS = (9.81, 0.5, 1.0, 0.0)   # k, c, initial angle, initial angular velocity


def make_pendulum(steps):
    def pendulum(k, c, theta, omega):
        for _ in range(steps):
            theta, omega = theta + DT * omega, omega - DT * (k * np.sin(theta) + c * omega)
        return theta
    return pendulum


def build(steps):
    f = make_pendulum(steps)
    k, c, theta, omega = PARAMS
    # Two directions at once: element 0 perturbs k, element 1 perturbs c.
    value, grad = complex_step(f, k + 1j * CS_STEP * np.array([1.0, 0.0]),
                               c + 1j * CS_STEP * np.array([0.0, 1.0]), theta, omega)
    return Problem(f=f, args=PARAMS, argnums=(0, 1), value=float(value[0]), grad=grad,
                   size=f"{steps} steps", extra=dict(steps=steps))


def numba_setup(p):
    from ..kernels import pendulum_adjoint
    steps = p.extra["steps"]

    def run():
        value, k_bar, c_bar = pendulum_adjoint(*p.args, steps, DT)
        return value, (k_bar, c_bar)
    return run


def jax_fori_setup(p):
    from jax import lax
    import jax.numpy as jnp
    steps = p.extra["steps"]

    def pendulum(k, c, theta, omega):
        def step(_, state):
            th, om = state
            return th + DT * om, om - DT * (k * jnp.sin(th) + c * om)
        return lax.fori_loop(0, steps, step, (theta, omega))[0]
    return jax_setup("cpu")(dataclasses.replace(p, f=pendulum))


WORKLOAD = Workload(
    name="ode",
    title="damped pendulum, explicit Euler, grad wrt (k, c)",
    build=build,
    sizes={"full": 1000, "quick": 1000},
    impls=[Impl("Numba adjoint", "hand-written", numba_setup, note="hand-written reverse loop"),
           Impl("JAX jit fori_loop", "peer", jax_fori_setup, note="first call = trace + compile")]
    + standard(fd=True, runs_in={"JAX jit": "full"},
               notes={"JAX jit": "unrolled Python loop; first call = trace + compile (~50 s)"}),
    yardsticks=("Numba adjoint",),
    dtype="float64",
    target="tapegrad source jit and tapegrad jit CPU <= 1.5x Numba adjoint; faster than JAX jit "
           "incl. compile",
    # the traced face: 1,000 identical step bodies on the tape run as one rolled loop
    # (tapegrad_jit/rolled.py)
    goals=(Goal("tapegrad source jit", 1.5), Goal("tapegrad jit CPU", 1.5)),
    rtol=1e-8,
    atol=1e-10,
)
