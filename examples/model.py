"""The functions of the README's command-line examples (run from the repository root):

    tapegrad tape examples/model.py:energy --grad --arg "np.array([0.5, -0.2, 1.0])"
    tapegrad grad-source examples/model.py:energy --arg "np.ones(3)"
    tapegrad grad-source examples/model.py:pendulum --argnums 2 3 --kinds float,float,float,float,float,int
"""
import math

import numpy as np


def energy(x):
    """A sum of squares whose form depends on the sign of sum(x) (a guard on a tape)."""
    if np.sum(x) > 0:
        return np.sum(np.tanh(x) ** 2)
    return np.sum(x * x)


def pendulum_energy(theta, omega, g):
    """Kinetic plus potential energy of a pendulum of unit mass and length (`tapegrad demo`)."""
    kinetic = 0.5 * omega * omega
    potential = g * (1.0 - np.cos(theta))
    return kinetic + potential


def pendulum(theta, omega, damping, length, dt, steps):
    """The angle of a damped pendulum after `steps` explicit Euler steps."""
    for _ in range(steps):
        alpha = -(9.81 / length) * math.sin(theta) - damping * omega
        theta = theta + dt * omega
        omega = omega + dt * alpha
    return theta


if __name__ == "__main__":
    print(energy(np.array([0.5, -0.2, 1.0])))
    print(pendulum(0.5, 0.0, 0.1, 1.0, 0.01, 1000))
    print(pendulum_energy(0.3, 1.2, 9.81))
