"""Readable, collision-free names for generated variables (`x_bar`, `theta_stack`, `alpha_1`)."""


class Namer:
    def __init__(self, taken=()):
        self.taken = set(taken)

    def reserve(self, name):
        self.taken.add(name)
        return name

    def fresh(self, base):
        """`base` itself when free, else base_1, base_2, ..."""
        if base not in self.taken:
            return self.reserve(base)
        k = 1
        while f"{base}_{k}" in self.taken:
            k += 1
        return self.reserve(f"{base}_{k}")
