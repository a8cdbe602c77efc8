"""Tensors as a PyTorch beginner meets them: making, printing, reshaping, joining, indexing,
writing in place, and sharing memory with NumPy. Every value printed is deterministic."""
import numpy as np
import torch

# making tensors: the dtype follows the data, or is asked for
ints = torch.tensor([[1, 2], [3, 4]])
floats = torch.tensor([0.5, 1.5, -2.0])
print(ints, ints.dtype)
print(floats, floats.dtype)
print(torch.zeros(2, 3, dtype=torch.long))
print(ints.new_ones(2, 2, dtype=torch.double))
print(torch.full((2,), 7.0), torch.arange(1, 7).view(2, 3))
print(torch.Tensor([1, 2]), torch.LongTensor([3, 4]), torch.FloatTensor(2, 2).shape)
print(torch.linspace(0, 1, steps=5))
print(torch.eye(3, 2))

# shapes
grid = torch.arange(24.0).view(2, 3, 4)
print(grid.size(), grid.shape[1], grid.dim(), grid.numel())
print(grid.permute(2, 0, 1).shape, grid.transpose(0, 2).shape, grid.view(-1, 8).shape)
print(grid.flatten(1).shape, torch.flatten(grid).shape, grid.unsqueeze(0).shape)
column = torch.arange(3.0)
column.unsqueeze_(1)
print(column, column.squeeze().shape)

# joining, indexing and writing
rows = torch.cat([ints, ints * 10], dim=0)
print(rows)
print(torch.stack([floats, floats * 2], dim=1))
print(rows[1], rows[:, 0], rows[..., -1], rows[rows > 10])
board = torch.ones(3, 4)
board[:, 1] = 0
board[2][3] = 5
print(board)

# arithmetic, in-place writes and out=
a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
b = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
print(a @ b, a.matmul(b.T), a.mm(b), a * b, torch.mul(a, b))
result = torch.empty(2, 2)
same = torch.add(a, b, out=result)
print(result, same is result)
a.add_(1)
a.mul_(2)
print(a)
print(a.sum(), a.mean(dim=0), a.max(dim=1), a.argmax(dim=1), a.std())

# one-element tensors become Python numbers
total = a.sum()
print(total.item(), type(total.item()).__name__, f"{total:>9.3f}", f"{total}")
print(int(torch.tensor(3)), float(torch.tensor([2.5])))

# dtype changes
print(a.to(torch.int32), a.type(torch.long).dtype, a.long().float().dtype, a.double().dtype)
print(torch.tensor([1, 5, 11]).bitwise_xor(torch.tensor([2, 7, 10])), torch.eq(a, 4.0))

# a few of the 300 operations
data = torch.tensor([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]])
print(torch.sort(data, dim=1), data.topk(2).indices)
print(data.cumsum(dim=1), torch.tril(torch.ones(3, 3)), data.flip(1), data.roll(1, 1))
print(torch.einsum("ij,kj->ik", data, data), torch.unique(torch.tensor([3, 1, 3, 2])))
print(data.clamp(min=0), torch.where(data > 1, data, torch.zeros_like(data)))
print(torch.cross(torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0]), dim=0))

# NumPy bridge: both ways share memory
t = torch.ones(4)
n = t.numpy()
t.add_(1)
print(t, n)
n2 = np.arange(3.0)
t2 = torch.from_numpy(n2)
np.add(n2, 10, out=n2)
print(t2, t2.dtype)
w = torch.tensor([1.0, -1.0], requires_grad=True)
print(w.detach().numpy(), (w * 2).detach().clone())
