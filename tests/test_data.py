"""torch.utils.data: Dataset, TensorDataset, DataLoader batching against PyTorch's."""
import collections

import numpy as np
import pytest

import tapegrad as tg
from tapegrad.utils import data

torch = pytest.importorskip("torch")
tdata = torch.utils.data

X = np.arange(30, dtype=np.float32).reshape(10, 3)
Y = np.arange(10)


def _batches(loader):
    return [[t.numpy() for t in batch] if isinstance(batch, list) else batch for batch in loader]


@pytest.mark.parametrize("batch_size,drop_last", [(1, False), (3, False), (3, True), (10, True),
                                                  (4, False), (12, False), (12, True)])
def test_sequential_batches_match_torch(batch_size, drop_last):
    ours = data.DataLoader(data.TensorDataset(tg.tensor(X), tg.tensor(Y)),
                           batch_size=batch_size, drop_last=drop_last)
    theirs = tdata.DataLoader(tdata.TensorDataset(torch.tensor(X), torch.tensor(Y)),
                              batch_size=batch_size, drop_last=drop_last)
    a, b = _batches(ours), _batches(theirs)
    assert len(ours) == len(theirs) == len(a) == len(b)
    for batch_a, batch_b in zip(a, b):
        for u, v in zip(batch_a, batch_b):
            assert u.dtype == v.dtype
            np.testing.assert_array_equal(u, v)


def test_shuffle_is_a_permutation_reproducible_with_manual_seed():
    ds = data.TensorDataset(tg.tensor(X), tg.tensor(Y))
    tg.manual_seed(3)
    first = [b[1].numpy() for b in data.DataLoader(ds, batch_size=4, shuffle=True)]
    tg.manual_seed(3)
    again = [b[1].numpy() for b in data.DataLoader(ds, batch_size=4, shuffle=True)]
    order = np.concatenate(first)
    assert sorted(order.tolist()) == list(range(10))
    assert [len(b) for b in first] == [4, 4, 2]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    loader = data.DataLoader(ds, batch_size=4, shuffle=True)
    epochs = {tuple(np.concatenate([b[1].numpy() for b in loader])) for _ in range(5)}
    assert len(epochs) > 1  # each epoch draws a new order
    for xb, yb in data.DataLoader(ds, batch_size=3, shuffle=True):  # rows stay paired
        np.testing.assert_array_equal(xb.numpy()[:, 0], yb.numpy() * 3)


class Squares(data.Dataset):
    def __len__(self):
        return 7

    def __getitem__(self, i):
        return {"x": np.full(2, i, np.float32), "y": i * i, "w": float(i), "name": f"s{i}"}


class TorchSquares(tdata.Dataset):
    __len__ = Squares.__len__
    __getitem__ = Squares.__getitem__


def test_custom_dataset_collation_matches_torch():
    ours = list(data.DataLoader(Squares(), batch_size=3))
    theirs = list(tdata.DataLoader(TorchSquares(), batch_size=3))
    for a, b in zip(ours, theirs):
        assert a.keys() == b.keys()
        assert a["name"] == b["name"]
        for key in ("x", "y", "w"):
            assert a[key].dtype == getattr(tg, str(b[key].dtype).split(".")[1])
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_tuples_of_tensors_and_namedtuples_collate_like_torch():
    Pair = collections.namedtuple("Pair", "a b")
    samples = [Pair(tg.tensor([i, i + 1.0]), i) for i in range(4)]
    tsamples = [Pair(torch.tensor([i, i + 1.0]), i) for i in range(4)]
    ours = data.default_collate(samples)
    theirs = tdata.default_collate(tsamples)
    assert type(ours) is Pair
    np.testing.assert_array_equal(ours.a.numpy(), theirs.a.numpy())
    np.testing.assert_array_equal(ours.b.numpy(), theirs.b.numpy())
    lists = data.default_collate([(tg.ones(2), tg.zeros(1))] * 3)
    assert isinstance(lists, list) and lists[0].shape == tg.Size([3, 2])


def test_subset_random_split_concat():
    ds = data.TensorDataset(tg.tensor(X), tg.tensor(Y))
    tg.manual_seed(0)
    train, test = data.random_split(ds, [0.7, 0.3])
    assert (len(train), len(test)) == (7, 3)
    seen = sorted(int(train[i][1]) for i in range(7)) + sorted(int(test[i][1]) for i in range(3))
    assert sorted(seen) == list(range(10))
    with pytest.raises(ValueError, match="Sum of input lengths"):
        data.random_split(ds, [3, 3])
    both = train + test
    assert len(both) == 10 and int(both[7][1]) == int(test[0][1])
    sub = data.Subset(ds, [9, 0])
    assert int(sub[0][1]) == 9 and len(sub) == 2
    assert len(data.DataLoader(sub, batch_size=1)) == 2


def test_iterable_dataset_and_samplers():
    class Count(data.IterableDataset):
        def __iter__(self):
            return iter(range(5))

    batches = [b.numpy().tolist() for b in data.DataLoader(Count(), batch_size=2)]
    assert batches == [[0, 1], [2, 3], [4]]
    sampler = data.BatchSampler(data.SequentialSampler(range(7)), 3, drop_last=False)
    assert list(sampler) == list(tdata.BatchSampler(tdata.SequentialSampler(range(7)), 3, False))
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        data.DataLoader(Squares(), batch_size=0)
    with pytest.raises(ValueError, match="mutually exclusive"):
        data.DataLoader(Squares(), sampler=data.SequentialSampler(range(7)), shuffle=True)
    loader = data.DataLoader(Squares(), batch_size=None)
    assert list(loader)[2]["y"] == 4


def test_batches_keep_autograd():
    w = tg.tensor(X, requires_grad=True)
    (xb,) = next(iter(data.DataLoader(data.TensorDataset(w), batch_size=4)))
    xb.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), (np.arange(10) < 4)[:, None] * np.ones(3))
