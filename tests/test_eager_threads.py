"""Backward in several threads at once (issue 9, case 9): separate graphs that share a leaf must
not lose any accumulation into its .grad (PyTorch accumulates under a lock per leaf).

NumPy releases the GIL inside in-place adds of large arrays, so without a lock two threads adding
into one .grad interleave their read-modify-writes; a short switch interval makes the other races
(read .grad, add, store) likely too. Each test repeats many times so it fails on unlocked code.
"""
import sys
import threading

import numpy as np
import pytest

import tapegrad

THREADS, STEPS = 8, 40


@pytest.fixture
def fast_switching():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


def _in_threads(worker):
    barrier = threading.Barrier(THREADS)
    errors = []

    def run():
        try:
            barrier.wait()
            worker()
        except Exception as e:  # reported in the main thread
            errors.append(e)
    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


@pytest.mark.parametrize("size", [3, 200_000])
def test_threads_sharing_a_leaf_lose_no_accumulation(size, fast_switching):
    lost = []
    for repeat in range(12):
        w = tapegrad.ones(size, requires_grad=True)

        def worker():
            for _ in range(STEPS):
                (w * 1.0).sum().backward()  # a graph of its own each time, one shared leaf
        _in_threads(worker)
        if not np.all(w.grad.numpy() == THREADS * STEPS):
            lost.append((repeat, float(w.grad.numpy().min())))
    assert not lost, f"expected {THREADS * STEPS} everywhere; got less in repeats {lost}"


def test_threads_with_retained_graphs_and_a_first_accumulation_race(fast_switching):
    # every thread builds its graph first, then all run backward on them repeatedly: the very first
    # accumulations (w.grad is None) race too
    for _ in range(12):
        w = tapegrad.ones(100_000, dtype=tapegrad.float64, requires_grad=True)
        b = tapegrad.ones(5, requires_grad=True)

        def worker():
            y = (w * 2.0).sum() + (b * b).sum()
            for _ in range(STEPS):
                y.backward(retain_graph=True)
        _in_threads(worker)
        assert np.all(w.grad.numpy() == 2.0 * THREADS * STEPS)
        assert np.all(b.grad.numpy() == 2.0 * THREADS * STEPS)


def test_threads_accumulating_with_create_graph(fast_switching):
    for _ in range(6):
        w = tapegrad.tensor([1.0, 2.0, 3.0], requires_grad=True)

        def worker():
            for _ in range(10):
                (w * w).sum().backward(create_graph=True)
        _in_threads(worker)
        expected = 2.0 * w.detach().numpy() * THREADS * 10
        np.testing.assert_array_equal(w.grad.detach().numpy(), expected)


def test_threads_share_one_grad_accumulator_per_leaf(fast_switching):
    # autograd.grad finds a leaf by its accumulator node: each thread must see the same one
    for _ in range(20):
        w = tapegrad.ones(4, requires_grad=True)
        nodes = []

        def worker():
            y = (w * 3.0).sum()
            nodes.append(y.grad_fn.next_functions[0][0].next_functions[0][0])
            g, = tapegrad.autograd.grad(y, w)
            assert np.all(g.numpy() == 3.0)
        _in_threads(worker)
        assert len({id(n) for n in nodes}) == 1


def test_matches_torch_when_torch_is_installed(fast_switching):
    torch = pytest.importorskip("torch")
    results = []
    for lib in (tapegrad, torch):
        w = lib.ones(200_000, requires_grad=True)

        def worker():
            for _ in range(STEPS):
                (w * 1.0).sum().backward()
        _in_threads(worker)
        results.append(w.grad.detach().numpy().copy())
    np.testing.assert_array_equal(results[0], results[1])
    assert results[0][0] == THREADS * STEPS


def test_accumulating_a_grad_that_requires_grad_does_not_deadlock():
    # the second accumulation adds two tensors under the lock; one is a leaf that requires grad,
    # whose accumulator is made under the same lock
    w = tapegrad.tensor([1.0, 2.0], requires_grad=True)
    seed = tapegrad.tensor([1.0, 1.0], requires_grad=True)
    done = []

    def run():
        w.backward(seed, create_graph=True)  # w.grad is seed itself: a leaf that requires grad
        w.backward(seed, create_graph=True)
        done.append(w.grad.detach().tolist())
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=20)
    assert done == [[2.0, 2.0]]
