"""Autograd as PyTorch's tutorials show it: graphs of grad_fn nodes, backward with and without
a gradient argument, accumulation, switching recording off, and a custom Function."""
import torch
from torch.autograd import Variable

x = torch.ones(2, 2, requires_grad=True)
y = x + 2
z = y * y * 3
out = z.mean()
print(y, z, out, sep="\n")
print(type(y.grad_fn).__name__, type(out.grad_fn).__name__)
out.backward()
print(x.grad)

# the graph, walked from the output back to the leaf
a = torch.linspace(0.0, 3.0, steps=4, requires_grad=True)
d = 2 * torch.sin(a) + 1
node = d.grad_fn
while node is not None:
    print(type(node).__name__, [None if f is None else type(f).__name__
                                for f, _ in node.next_functions])
    node = node.next_functions[0][0] if node.next_functions else None
d.sum().backward()
print(a.grad)

# a vector-Jacobian product, and accumulation across backward calls
v = torch.tensor([2.0, 1.0], requires_grad=True)
w = v * 4
w.backward(torch.tensor([1.0, 0.5]), retain_graph=True)
print(v.grad)
w.backward(torch.tensor([1.0, 0.5]))
print(v.grad)
v.grad.zero_()
print(v.grad)

# recording off: no_grad as a block and as a decorator, detach, requires_grad_
print((v ** 2).requires_grad)
with torch.no_grad():
    print((v ** 2).requires_grad)


@torch.no_grad()
def doubled(t):
    return t * 2


print(doubled(v).requires_grad, v.detach().requires_grad)
plain = torch.tensor([1.0, 2.0])
print(plain.requires_grad, plain.requires_grad_().requires_grad)

# legacy Variable: a Tensor by another name
old = Variable(torch.tensor([3.0]), requires_grad=True)
(old * old).sum().backward()
print(old.grad, isinstance(old, Variable))

# assigning .grad checks its type and size, as in PyTorch
try:
    v.grad = 0.0
except TypeError as e:
    print("TypeError:", e)


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return t ** 3

    @staticmethod
    def backward(ctx, grad_output):
        t, = ctx.saved_tensors
        return grad_output * 3 * t ** 2


s = torch.tensor([1.0, -2.0], requires_grad=True)
Cube.apply(s).sum().backward()
print(s.grad)
print(torch.autograd.functional.jacobian(lambda p, q: 2 * p.exp() + 3 * q,
                                         (torch.zeros(2), torch.ones(2))))

# the profiler's table lists the operations it saw
p = torch.ones(2, 3, requires_grad=True)
q = torch.full((2, 3), 2.0, requires_grad=True)
with torch.autograd.profiler.profile() as prof:
    for _ in range(5):
        p = (p / q) * q
table = prof.key_averages().table(sort_by="self_cpu_time_total")
print(sorted(line.split()[0] for line in table.splitlines() if "aten::" in line))
