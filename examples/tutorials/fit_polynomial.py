"""Fit y = cos(x) on [-pi, pi] with a cubic, three ways PyTorch's "learning by examples" pages
do: a Module of Parameters with SGD + momentum, a Sequential of Linear + Flatten updated by hand
under no_grad, and the same Sequential with an optimizer. Starting points are fixed, so PyTorch
and tapegrad print the same losses (to float32 rounding)."""
import math

import torch


class Cubic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3))
        self.b = torch.nn.Parameter(torch.tensor(-0.2))
        self.c = torch.nn.Parameter(torch.tensor(0.1))
        self.d = torch.nn.Parameter(torch.tensor(0.02))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3

    def string(self):
        return (f"y = {self.a.item():.4f} + {self.b.item():.4f} x + {self.c.item():.4f} x^2 + "
                f"{self.d.item():.4f} x^3")


x = torch.linspace(-math.pi, math.pi, 1000)
y = torch.cos(x)

model = Cubic()
print(model, [name for name, _ in model.named_parameters()])
criterion = torch.nn.MSELoss(reduction="sum")
optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
for t in range(1500):
    loss = criterion(model(x), y)
    if t % 300 == 299:
        print("loss", t, loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(model.string())

# x, x^2, x^3 as columns: a linear layer then
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)
net = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
with torch.no_grad():
    net[0].weight.copy_(torch.tensor([[-0.2, 0.1, 0.02]]))
    net[0].bias.fill_(0.3)
print(net)
loss_fn = torch.nn.MSELoss(reduction="sum")
for t in range(1000):
    loss = loss_fn(net(xx), y)
    if t % 250 == 249:
        print("loss", t, loss.item())
    net.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in net.parameters():
            param -= 1e-6 * param.grad
layer = net[0]
print(f"Result: y = {layer.bias.item():.4f} + {layer.weight[:, 0].item():.4f} x + "
      f"{layer.weight[:, 1].item():.4f} x^2 + {layer.weight[:, 2].item():.4f} x^3")
print(list(net.state_dict().keys()))

optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-3)
for t in range(100):
    loss = loss_fn(net(xx), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("loss", "rmsprop", loss.item())
