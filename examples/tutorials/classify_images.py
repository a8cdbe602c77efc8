"""A small convolutional classifier trained as in PyTorch's quickstart and CIFAR-10 pages, on
synthetic 12x12 one-channel images of 3 classes (so nothing is downloaded). Weights start from a
fixed NumPy draw, so PyTorch and tapegrad print the same losses to float32 rounding. Also:
DataLoader with workers, train/eval modes, state_dict and whole-model saving."""
import os
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(7)
templates = rng.random((3, 1, 12, 12)).astype(np.float32)
labels = rng.integers(0, 3, size=240)
images = 0.7 * templates[labels] + 0.3 * rng.random((240, 1, 12, 12)).astype(np.float32)
train = TensorDataset(torch.from_numpy(images[:192]), torch.from_numpy(labels[:192]))
test = TensorDataset(torch.from_numpy(images[192:]), torch.from_numpy(labels[192:]))
train_loader = DataLoader(train, batch_size=16, shuffle=False, num_workers=2)
test_loader = DataLoader(test, batch_size=16)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(4 * 5 * 5, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = self.pool(F.relu(self.norm(self.conv(x))))
        x = x.view(-1, 4 * 5 * 5)
        return self.fc2(F.relu(self.fc1(x)))


def fixed_start(model):
    draw = np.random.default_rng(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(draw.uniform(-0.3, 0.3, tuple(p.shape)).astype(np.float32)))
    return model


model = fixed_start(Net())
print(model)
print(sum(p.numel() for p in model.parameters()), "parameters")
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def train_epoch():
    model.train()
    for batch, (X, y) in enumerate(train_loader):
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 4 == 0:
            print(f"loss: {loss:>7f}  [{(batch + 1) * len(X):>5d}/{len(train_loader.dataset):>5d}]")


def evaluate():
    model.eval()
    total, correct = 0.0, 0
    with torch.no_grad():
        for X, y in test_loader:
            pred = model(X)
            total += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    print(f"Test: accuracy {100 * correct / len(test_loader.dataset):>0.1f}%, "
          f"avg loss {total / len(test_loader):>8f}")


for epoch in range(3):
    print(f"Epoch {epoch + 1}")
    train_epoch()
    evaluate()
print("running mean", model.norm.running_mean)

with tempfile.TemporaryDirectory() as where:
    path = os.path.join(where, "weights.pth")
    torch.save(model.state_dict(), path)
    again = Net()
    again.load_state_dict(torch.load(path, weights_only=True))
    again.eval()
    X, _ = next(iter(test_loader))
    with torch.no_grad():
        print("same outputs", torch.equal(again(X), model(X)))
    whole = os.path.join(where, "model.pth")
    torch.save(model, whole)
    try:
        torch.load(whole)
    except Exception as e:  # the default weights_only=True refuses a pickled class
        print(type(e).__name__, "Weights only load failed" in str(e))
    print(torch.load(whole, weights_only=False).fc2)
