"""PyTorch's autograd tutorial, cell by cell, as one script.

Run it with tapegrad (the default) or with PyTorch, unchanged:

    python examples/seed_tutorial.py                  # import tapegrad as torch
    TORCH=torch python examples/seed_tutorial.py      # the real PyTorch

Both print expected_output_torch.txt (beside this file), except the lines that print random
numbers (torch.randn) and object addresses.
"""
import importlib
import os

torch = importlib.import_module(os.environ.get("TORCH", "tapegrad"))
F = importlib.import_module(torch.__name__ + ".nn.functional")

# A tensor that records what is done to it
x = torch.ones(2, 2, requires_grad=True)
print(x)
y = x + 2
print(y)
print(y.grad_fn)
z = y * y * 3
out = z.mean()
print('z=', z)
print('out=', out)

# requires_grad_() switches recording on in place
a = torch.randn(2, 2)
a = ((a * 3) / (a - 1))
print(a.requires_grad)
a.requires_grad_(True)
print(a.requires_grad)
b = (a * a).sum()
print(b.grad_fn)

# Gradients: d(out)/dx = 3 * (x + 2) / 2 = 4.5
out.backward()
print(x.grad)

# A vector-Jacobian product through a data-dependent loop
x = torch.randn(3, requires_grad=True)
y = x * 2
while y.data.norm() < 1000:
    y = y * 2
print(y)

v = torch.tensor([0.1, 1.0, 0.0001], dtype=torch.float)
y.backward(v)
print(x.grad)

# no_grad() stops recording
print(x.requires_grad)
print((x ** 2).requires_grad)
with torch.no_grad():
    print((x ** 2).requires_grad)

# torch.autograd.grad returns gradients instead of accumulating them into .grad
x = torch.ones(1)
print(x)
w = torch.full([1], 2, dtype=torch.float)
w.requires_grad_()
print(w)
b = torch.ones(1, requires_grad=True)
print(b)
mse = F.mse_loss(x * w, torch.ones(1))
print(torch.autograd.grad(mse, [w]))

# backward() accumulates into .grad
x = torch.ones(1)
print(x)
w = torch.full([1], 2, dtype=torch.float)
w.requires_grad_()
print(w)
mse = F.mse_loss(x * w, torch.ones(1))
mse.backward()
print(w.grad)
