"""tapegrad.compile against eager tapegrad and torch (eager and torch.compile'd where cheap)."""
import warnings

import numpy as np
import pytest

import tapegrad as tg
import tapegrad.nn.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional
rng = np.random.default_rng(1)


def close(ours, theirs, tol=1e-10):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    np.testing.assert_allclose(ours.detach().numpy(), theirs, rtol=tol, atol=tol)


def no_warnings():
    return warnings.catch_warnings(record=True)


def test_compiled_function_follows_guards_and_shapes():
    def f(x):
        if x.sum() > 0:                  # a guard: each outcome gets its own tape
            return (x * 2).sin()
        return x.exp() - 1
    cf = tg.compile(f)
    for shape in [(3,), (3,), (2, 4)]:
        for sign in (1, -1):
            x = np.abs(rng.standard_normal(shape)) * sign
            close(cf(tg.tensor(x)), f(torch.tensor(x)))
    assert cf._compiled._eager == set()          # nothing fell back to eager


def test_decorator_forms_options_and_disable():
    @tg.compile
    def a(x):
        return x * 3

    @tg.compile(mode="max-autotune", fullgraph=True, dynamic=False)
    def b(x, *, k):
        return x * k

    x = tg.tensor([1.0, 2.0])
    close(a(x), np.array([3.0, 6.0]))
    close(b(x, k=tg.tensor(2.0)), np.array([2.0, 4.0]))
    plain = lambda x: x   # noqa: E731
    assert tg.compile(plain, disable=True) is plain
    with pytest.raises(RuntimeError, match="Unrecognized mode"):
        tg.compile(plain, mode="fastest")
    with pytest.raises(TypeError, match="expected a function or an nn.Module"):
        tg.compile(3)


@pytest.mark.parametrize("shape", [(4,), (2, 3), (2, 1, 3)])
def test_gradients_through_a_compiled_function_match_torch(shape):
    def f(x, w):
        return (x * w).tanh() + w.exp()          # non-scalar: backward gets a cotangent
    xd, wd = rng.standard_normal(shape), rng.standard_normal(shape[-1:])
    cf, cs = tg.compile(f), tg.compile(lambda x, w: f(x, w).sum())
    # the scalar function's first call learns it is scalar; later calls sweep once per call
    for scalar in (False, True, True, True):
        x, w = tg.tensor(xd, requires_grad=True), tg.tensor(wd, requires_grad=True)
        tx, tw = torch.tensor(xd, requires_grad=True), torch.tensor(wd, requires_grad=True)
        if scalar:
            out, tout = cs(x, w), f(tx, tw).sum()
            close(out, tout)
            (out * 3.0).backward()
            (tout * 3.0).backward()
        else:
            out, tout = cf(x, w), f(tx, tw)
            close(out, tout)
            cot = rng.standard_normal(out.shape)
            out.backward(tg.tensor(cot))
            tout.backward(torch.tensor(cot))
        close(x.grad, tx.grad)
        close(w.grad, tw.grad)


def test_untraceable_function_runs_eagerly_with_one_warning():
    def f(x):
        return x * float(x.sum())               # float() of a traced value cannot be recorded
    cf = tg.compile(f)
    x = tg.tensor([1.0, 2.0])
    with pytest.warns(RuntimeWarning, match="cannot be traced.*test_torch_compile.py") as record:
        close(cf(x), np.array([3.0, 6.0]))
    assert record[0].filename == __file__        # the warning points at the user's call
    with no_warnings() as caught:
        warnings.simplefilter("always")
        close(cf(x * 2), np.array([12.0, 24.0]))
    assert not caught


def test_random_numbers_inside_run_eagerly():
    def f(x):
        return x + tg.rand(3)
    cf = tg.compile(f)
    x = tg.zeros(3)
    with pytest.warns(RuntimeWarning, match="random numbers"):
        first = cf(x)
    assert not np.array_equal(first.numpy(), cf(x).numpy())     # fresh numbers each call


def test_user_errors_are_the_eager_ones():
    cf = tg.compile(lambda x, y: x @ y)
    with pytest.raises(Exception) as ours:
        cf(tg.ones(2, 3), tg.ones(2, 3))
    with pytest.raises(Exception) as eager:
        tg.ones(2, 3) @ tg.ones(2, 3)
    assert str(ours.value) == str(eager.value)


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------

def twins(kind):
    tg.manual_seed(3)
    if kind == "mlp":
        ours = tg.nn.Sequential(tg.nn.Linear(8, 16), tg.nn.ReLU(), tg.nn.Linear(16, 4))
        theirs = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                     torch.nn.Linear(16, 4))
    else:
        ours = tg.nn.Sequential(tg.nn.Conv2d(1, 3, 3), tg.nn.ReLU(), tg.nn.MaxPool2d(2),
                                tg.nn.Flatten(), tg.nn.Linear(3 * 3 * 3, 4))
        theirs = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU(),
                                     torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                     torch.nn.Linear(3 * 3 * 3, 4))
    ours.double()
    theirs.double().load_state_dict(
        {n: torch.tensor(v.detach().numpy()) for n, v in ours.state_dict().items()})
    return ours, theirs


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("optim", ["SGD", "Adam"])
def test_compiled_module_trains_as_torch(kind, optim):
    ours, theirs = twins(kind)
    compiled = tg.compile(ours)
    kwargs = {"lr": 0.05, "momentum": 0.9} if optim == "SGD" else {"lr": 0.01}
    opt = getattr(tg.optim, optim)(compiled.parameters(), **kwargs)
    topt = getattr(torch.optim, optim)(theirs.parameters(), **kwargs)
    shape = (6, 8) if kind == "mlp" else (6, 1, 8, 8)
    with no_warnings() as caught:
        warnings.simplefilter("always")
        for step in range(12):
            xd, yd = rng.standard_normal(shape), rng.integers(0, 4, 6)
            if step == 7:                       # another batch size: a new signature
                xd, yd = xd[:3], yd[:3]
            opt.zero_grad()
            loss = F.cross_entropy(compiled(tg.tensor(xd)), tg.tensor(yd))
            loss.backward()
            opt.step()
            topt.zero_grad()
            tloss = TF.cross_entropy(theirs(torch.tensor(xd)), torch.tensor(yd))
            tloss.backward()
            topt.step()
            close(loss, tloss, 1e-9)
    assert not [w for w in caught if "tapegrad.compile" in str(w.message)]
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        close(p, tp, 1e-9)
    assert [n for n, _ in compiled.named_parameters()][0] == "_orig_mod.0.weight"


def test_compiled_module_in_a_func_training_step():
    """The issue's step: module forward and loss under grad_and_value, compiled."""
    ours, theirs = twins("mlp")
    params = {k: v.detach() for k, v in ours.named_parameters()}
    tparams = {k: v.detach() for k, v in theirs.named_parameters()}

    def step(func, fn, model):
        def loss(p, x, y):
            return fn(func.functional_call(model, p, (x,)), y)
        return func.grad_and_value(loss)
    cstep = tg.compile(step(tg.func, F.cross_entropy, ours))
    for _ in range(3):
        xd, yd = rng.standard_normal((5, 8)), rng.integers(0, 4, 5)
        g, v = cstep(params, tg.tensor(xd), tg.tensor(yd))
        tgr, tv = step(torch.func, TF.cross_entropy, theirs)(tparams, torch.tensor(xd),
                                                                torch.tensor(yd))
        close(v, tv)
        for k in g:
            close(g[k], tgr[k])
            params[k] = params[k] - 0.1 * g[k]
            tparams[k] = tparams[k] - 0.1 * tgr[k]
    assert cstep._compiled._eager == set()


def test_train_eval_switch_and_dropout_fallback():
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Linear(4, 4), tg.nn.Dropout(0.5)).double()
    cm = tg.compile(m)
    x = tg.tensor(rng.standard_normal((3, 4)))
    m.eval()
    with no_warnings() as caught:
        warnings.simplefilter("always")
        close(cm(x), m(x))                      # eval: dropout is the identity; compiled
    assert not caught
    cm.train()
    assert m.training
    with pytest.warns(RuntimeWarning, match="random numbers"):
        out = cm(x)
    assert (out.detach().numpy() == 0).any()    # a real dropout mask, drawn eagerly
    cm.eval()
    close(cm(x), m(x))                          # back to the compiled eval program


def test_batchnorm_running_stats_update():
    tg.manual_seed(0)
    m = tg.nn.Sequential(tg.nn.Linear(4, 3), tg.nn.BatchNorm1d(3)).double()
    t = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).double()
    t.load_state_dict({n: torch.tensor(v.detach().numpy()) for n, v in m.state_dict().items()})
    cm = tg.compile(m)
    x = rng.standard_normal((5, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        close(cm(tg.tensor(x)), t(torch.tensor(x)))   # training: running stats change
    close(m[1].running_mean, t[1].running_mean)
    m.eval()
    t.eval()
    close(cm(tg.tensor(x)), t(torch.tensor(x)))


def test_gradients_reach_tensors_inside_dict_and_list_arguments():
    def f(p, xs):
        return ((xs[0] @ p["w"]).tanh() + p["b"]).sum() * xs[1]
    wd, bd, xd = rng.standard_normal((3, 2)), rng.standard_normal(2), rng.standard_normal((4, 3))
    p = {"w": tg.tensor(wd, requires_grad=True), "b": tg.tensor(bd, requires_grad=True)}
    tp = {"w": torch.tensor(wd, requires_grad=True), "b": torch.tensor(bd, requires_grad=True)}
    s, ts = tg.tensor(2.0, requires_grad=True), torch.tensor(2.0, requires_grad=True)
    cf = tg.compile(f)
    for _ in range(2):
        for t in (*p.values(), s, *tp.values(), ts):
            t.grad = None
        out, tout = cf(p, [tg.tensor(xd), s]), f(tp, [torch.tensor(xd), ts])
        out.backward()
        tout.backward()
        close(out, tout)
        for k in p:
            close(p[k].grad, tp[k].grad)
        close(s.grad, ts.grad)


def test_a_changed_module_setting_traces_again():
    m = tg.nn.Sequential(tg.nn.Linear(3, 3), tg.nn.LeakyReLU(0.01)).double()
    cm = tg.compile(m)
    x = tg.tensor(-np.abs(rng.standard_normal((2, 3))) * 10)
    close(cm(x), m(x))
    m[1].negative_slope = 0.5                  # a constant of the first tape
    close(cm(x), m(x))


def _traced_tape(fun, args):
    from tapegrad import transforms
    from tapegrad.tape import optimize
    tape, _ = transforms.trace_to_tape(fun, list(args))
    return optimize(tape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_program_masks_cotangents_bit_for_bit(dtype):
    """A compiled module's NumPy part writes ReLU's masked cotangent as a bit mask: the same bits
    as the reference interpreter's np.where, NaN, inf and -0 of the cotangent included."""
    from tapegrad.compile import _NumPyProgram
    from tapegrad import transforms

    def loss(x, c):
        return (tg.relu(x) * c).sum() + (tg.where(x > 0.5, 0.0, x) * c).sum()
    fun = transforms.grad(loss, 0)
    x = rng.standard_normal((6, 7)).astype(dtype)
    x[0, :3] = 0.0
    c = rng.standard_normal((6, 7)).astype(dtype)
    c[1, :4] = [np.nan, np.inf, -0.0, -np.inf]
    x[1, :4] = 1.0
    tape = _traced_tape(fun, (x, c))
    assert any(ins.prim.name == "where" for ins in tape.instrs)
    ok, (ours,) = _NumPyProgram(tape)((x, c))
    expected = tape.run(x, c)
    assert ok and ours.dtype == expected.dtype == dtype
    assert np.array_equal(ours.view(np.uint8), np.asarray(expected).view(np.uint8))


def test_numpy_program_gives_weight_gradients_in_the_weights_layout():
    """x.T @ g transposed (a Linear weight's gradient) comes out C-contiguous, equal to the
    reference to float rounding; the guards of a path are checked as the reference checks."""
    from tapegrad.compile import _NumPyProgram
    from tapegrad import transforms

    def loss(w, x):
        h = x @ w.T
        if h.sum() > 0:
            return (h * h).sum()
        return h.sum()
    fun = transforms.grad(loss, 0)
    w, x = rng.standard_normal((5, 8)), rng.standard_normal((4, 8))
    x = x if (x @ w.T).sum() > 0 else -x
    tape = _traced_tape(fun, (w, x))
    program = _NumPyProgram(tape)
    ok, (ours,) = program((w, x))
    assert ok and ours.flags.c_contiguous
    np.testing.assert_allclose(ours, tape.run(w, x), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ours, 2 * (x @ w.T).T @ x, rtol=1e-13)
    assert program((w, -x)) == (False, None)      # the other branch: a guard fails


def test_module_state_walk_matches_named_parameters_and_buffers():
    """compile's one-walk state of a module: named_parameters() then named_buffers(), shared
    modules and tensors once, None parameters skipped, each module's settings in modules() order."""
    from tapegrad.compile import _settings, _state
    shared = tg.nn.Linear(3, 3, bias=False)
    net = tg.nn.Sequential(shared, tg.nn.BatchNorm1d(3), tg.nn.Sequential(shared, tg.nn.ReLU()),
                           tg.nn.Linear(3, 2))
    net.register_buffer("scale", tg.ones(1))
    net[1].register_buffer("alias", net[1].running_mean)
    names, tensors, settings, attributes = _state(net)
    expected = list(net.named_parameters()) + list(net.named_buffers())
    assert names == tuple(n for n, _ in expected)
    assert all(a is b for a, (_, b) in zip(tensors, expected)) and len(tensors) == len(expected)
    assert settings == tuple(_settings(m) for m in net.modules())
    assert "2.0.weight" not in names and "0.bias" not in names and "1.alias" not in names


def test_numpy_program_returns_inputs_constants_and_views_as_the_reference():
    from tapegrad.compile import _NumPyProgram

    def f(x, y):
        return x, np.float64(2.0) * np.ones(3), (y.T * 2.0).reshape(6), x.sum()
    x, y = np.arange(3.0), rng.standard_normal((2, 3))
    tape = _traced_tape(f, (x, y))
    assert tape.consts and any(ins.prim.name == "reshape" for ins in tape.instrs)
    ok, ours = _NumPyProgram(tape)((list(x), y.astype(np.float32)))   # converted as inputs
    expected = tape.run(list(x), y.astype(np.float32))
    assert ok and len(ours) == len(expected) == 4
    for a, b in zip(ours, expected):
        assert type(a) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)


def test_jit_programs_of_compile_run_the_faster_program_with_the_guards():
    """compile's no-grad forward (jit with _FasterBackend): a guard failing before the choice
    chooses nothing; a passing call chooses, and either program gives the reference's tree."""
    from tapegrad.compile import _FasterBackend, _numpy_may_win

    def f(x, y):
        if x.sum() > 0:
            return {"a": x * y, "b": (x + 1.0,)}
        return {"a": x - y, "b": (x,)}
    small = _traced_tape(f, (np.ones(4), np.ones(4)))
    assert not _numpy_may_win(small)            # small arrays: compiled, no NumPy program
    assert not hasattr(_FasterBackend().compile(small), "numpy_program")
    x, y = np.abs(rng.standard_normal(500)), rng.standard_normal(500)
    tape = _traced_tape(f, (x, y))
    program = _FasterBackend().compile(tape)
    assert program((-x, y)) == (False, None) and program.chosen is None
    ok, out = program((x, y))
    assert ok and program.chosen is not None
    np.testing.assert_array_equal(out["a"], x * y)
    np.testing.assert_array_equal(out["b"][0], x + 1.0)
    for chosen in (program.compiled, program.numpy_program):
        program.chosen = chosen
        assert program.call_arrays((-x, y)) is None
        np.testing.assert_array_equal(program.call_arrays((x, y))["a"], x * y)
    cf = tg.compile(f)
    for sign in (1, -1, 1):
        ours = cf(tg.tensor(sign * x), tg.tensor(y))
        np.testing.assert_array_equal(ours["a"].numpy(), f(sign * x, y)["a"])


@pytest.mark.parametrize("fn", ["erf", "erfc"])
def test_erf_rules_keep_float32_on_the_tape(fn):
    """erf's and erfc's rules scale by 2/sqrt(pi) as a weak Python float: a float32 gradient
    stays float32 on the traced face (a float64 constant promoted a compiled GELU model's
    backward, its weight-gradient matmul mixing float32 and float64 at twice the cost)."""
    from tapegrad import transforms
    x = rng.standard_normal((3, 4)).astype(np.float32)
    tape = _traced_tape(transforms.grad(lambda v: getattr(tg, fn)(v).sum(), 0), (x,))
    assert {str(tape.dtypes[ins.out]) for ins in tape.instrs} <= {"float32", "bool"}
    ours = tape.run(x)
    t = torch.tensor(x, requires_grad=True)
    getattr(torch, fn)(t).sum().backward()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-6, atol=1e-6)
    eager = tg.tensor(x, requires_grad=True)
    getattr(tg, fn)(eager).sum().backward()
    assert eager.grad.dtype == tg.float32
    np.testing.assert_allclose(eager.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("grad", [False, True])
def test_a_submodule_swapped_for_another_class_or_function_traces_again(grad):
    """Sigmoid and Tanh have the same settings (training only): the module's class selects the
    tape too, as does a function held as an attribute (it used to replay the first tape)."""
    class Act(tg.nn.Module):
        def __init__(self):
            super().__init__()
            self.fn = tg.sigmoid

        def forward(self, x):
            return self.fn(x)
    net = tg.nn.Sequential(tg.nn.Linear(3, 2), tg.nn.Sigmoid(), Act())
    compiled = tg.compile(net)
    x = tg.tensor(rng.standard_normal((4, 3)), requires_grad=grad)
    for change in (lambda: None, lambda: net.__setitem__(1, tg.nn.Tanh()),
                   lambda: setattr(net[2], "fn", tg.tanh)):
        change()
        np.testing.assert_allclose(compiled(x).detach().numpy(), net(x).detach().numpy(),
                                   rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
def test_numpy_program_sums_as_the_reference_bit_for_bit(dtype):
    """A NumPy program's float sums call np.add.reduce directly (np.sum's dispatch costs ~1 us):
    the reference interpreter's bits, dtypes and shapes, every axis form and keepdims."""
    from tapegrad.compile import _NumPyProgram

    def f(x, s):
        return (x.sum(), x.sum((0, 2)), x.sum(1, keepdims=True), x.sum(-1), s.sum(),
                (x * 2).sum(axis=()))
    x = (rng.standard_normal((5, 6, 7)) * 100).astype(dtype)
    s = np.asarray(3, dtype)
    tape = _traced_tape(f, (x, s))
    program = _NumPyProgram(tape)
    reduces = [step for step in program.steps if step[0] == np.add.reduce]
    assert len(reduces) == (6 if np.dtype(dtype).kind == "f" else 0)
    ok, ours = program((x, s))
    expected = tape.run(x, s)
    assert ok and len(ours) == len(expected) == 6
    for a, b in zip(ours, expected):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


def test_flat_tensor_calls_key_programs_as_tree_flatten():
    """A call of Tensors only skips tree_flatten: the same structure, so the same programs, as a
    call whose values go through it (a Tensor inside a list gets its own)."""
    from tapegrad.compile import _any, _flat_structure
    from tapegrad.tape import tree_flatten
    values = [tg.ones(2), tg.nn.Parameter(tg.ones(3)), tg.ones(1, requires_grad=True)]
    assert _flat_structure(3) == tree_flatten(list(values), _any)[1]
    compiled = tg.compile(lambda a, b: (a * b[0]).sum())
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    compiled(a, [tg.tensor([3.0, 4.0])]).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])
    compiled(a, tg.tensor([[5.0, 6.0]])).backward()
    np.testing.assert_array_equal(a.grad.numpy(), [8.0, 10.0])
    assert len(compiled._compiled._programs) == 2


class _Scaled(tg.nn.Module):
    """A module holding Tensors as plain attributes (not parameters or buffers)."""

    def __init__(self):
        super().__init__()
        self.lin = tg.nn.Linear(3, 2)
        self.scale = tg.tensor(2.0)
        self.learned = tg.tensor([0.5, -1.0], requires_grad=True)
        self.alias = self.lin.weight            # an attribute naming a parameter

    def forward(self, x):
        return ((self.lin(x) * self.scale + self.learned) * self.alias.sum()).sum()


def test_plain_tensor_attributes_are_read_on_every_call():
    tg.manual_seed(0)
    m, x = _Scaled(), tg.tensor(rng.standard_normal((4, 3)), dtype=tg.float32)
    compiled = tg.compile(m)

    def both():
        results = []
        for fn in (compiled, m):
            for t in (m.lin.weight, m.learned):
                t.grad = None
            out = fn(x)
            out.backward()
            results.append((out.item(), m.lin.weight.grad.numpy().copy(), m.learned.grad.numpy().copy()))
        (a, wa, la), (b, wb, lb) = results
        assert a == pytest.approx(b, rel=1e-5)
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(la, lb, rtol=1e-5, atol=1e-6)

    both()
    m.scale = tg.tensor(3.0)                  # a new value: replayed the old constant before
    both()
    with tg.no_grad():
        m.scale.mul_(2.0)                     # an in-place change of the attribute
        m.lin.weight.add_(0.25)               # reaches the alias too
    both()


SCALE = tg.tensor(2.0)
WEIGHT = tg.tensor([1.0, -2.0, 0.5], requires_grad=True)


def _uses_globals(x):
    return (x * SCALE * WEIGHT).sum()


def test_tensors_read_from_globals_and_closures_are_read_on_every_call():
    global SCALE
    x = tg.tensor([0.5, 1.5, -1.0])
    offset = tg.tensor(1.0)

    def closes_over(x):
        return (x + offset).pow(2).sum()

    compiled_global, compiled_closure = tg.compile(_uses_globals), tg.compile(closes_over)
    programs = compiled_global._compiled._programs

    def check():
        WEIGHT.grad = None
        got = compiled_global(x)
        got.backward()
        compiled_grad = WEIGHT.grad.numpy().copy()
        WEIGHT.grad = None
        want = _uses_globals(x)
        want.backward()
        assert got.item() == pytest.approx(want.item())
        np.testing.assert_allclose(compiled_grad, WEIGHT.grad.numpy())
        assert compiled_closure(x).item() == pytest.approx(closes_over(x).item())

    check()
    SCALE = tg.tensor(3.0)                  # rebound global
    offset = tg.tensor(-2.0)                # rebound closure variable
    check()
    with tg.no_grad():
        SCALE.mul_(2.0)                     # in-place changes
        WEIGHT.add_(1.0)
        offset.sub_(1.0)
    check()
    assert len(programs) == 1               # inputs, not a program per value


class _ReadsAGlobal(tg.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = tg.nn.Linear(3, 1)

    def forward(self, x):
        return (self.lin(x) * SCALE).sum()


def test_a_module_forward_reads_global_tensors_on_every_call():
    global SCALE
    tg.manual_seed(0)
    m, x = _ReadsAGlobal(), tg.ones(4, 3)
    compiled = tg.compile(m)
    for change in (None, "rebind", "in place"):
        if change == "rebind":
            SCALE = tg.tensor(-1.5)
        elif change == "in place":
            with tg.no_grad():
                SCALE.mul_(3.0)
        assert compiled(x).item() == pytest.approx(m(x).item(), rel=1e-6)
