"""torch.optim: 50-step trajectories from the same start equal PyTorch's to float rounding."""
import numpy as np
import pytest

import tapegrad as tg
from tapegrad import nn, optim

torch = pytest.importorskip("torch")

SHAPES = [(3, 4), (5,), ()]


def _quadratic_loss(params, lib, targets):
    # a loss with a different curvature per parameter, so the optimisers' states differ
    total = 0
    for p, t in zip(params, targets):
        d = p - lib.tensor(t)
        total = total + (d * d * lib.tensor(np.linspace(0.5, 2.0, d.numel()).reshape(d.shape)
                                            .astype(np.float32))).sum() + (d ** 4).sum() * 0.1
    return total


def _trajectories(make, steps=50, dtype=np.float32, schedule=None, closure=False):
    rng = np.random.default_rng(0)
    starts = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    targets = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    results = []
    for lib, opt_mod in ((tg, optim), (torch, torch.optim)):
        params = [lib.tensor(s.copy(), requires_grad=True) for s in starts]
        opt = make(opt_mod, params)
        sched = schedule(opt_mod.lr_scheduler, opt) if schedule else None
        path = []
        for _ in range(steps):
            def step():
                opt.zero_grad()
                loss = _quadratic_loss(params, lib, targets)
                loss.backward()
                return loss
            if closure:
                opt.step(step)
            else:
                step()
                opt.step()
            if sched:
                sched.step()
            path.append([p.detach().numpy().copy() for p in params])
        results.append((path, opt))
    return results


OPTIMISERS = {
    "sgd": lambda m, p: m.SGD(p, lr=0.01),
    "sgd_momentum": lambda m, p: m.SGD(p, lr=0.01, momentum=0.9),
    "sgd_dampening_wd": lambda m, p: m.SGD(p, lr=0.01, momentum=0.8, dampening=0.3,
                                           weight_decay=0.05),
    "sgd_nesterov": lambda m, p: m.SGD(p, lr=0.01, momentum=0.9, nesterov=True,
                                       weight_decay=1e-2),
    "adam": lambda m, p: m.Adam(p, lr=0.05),
    "adam_wd_amsgrad": lambda m, p: m.Adam(p, lr=0.05, betas=(0.8, 0.99), weight_decay=0.1,
                                           amsgrad=True),
    "adamw": lambda m, p: m.AdamW(p, lr=0.05),
    "adamw_amsgrad": lambda m, p: m.AdamW(p, lr=0.02, weight_decay=0.3, amsgrad=True),
    "rmsprop": lambda m, p: m.RMSprop(p, lr=0.01),
    "rmsprop_centered_momentum": lambda m, p: m.RMSprop(p, lr=0.01, momentum=0.9, centered=True,
                                                        weight_decay=0.01),
    "adagrad": lambda m, p: m.Adagrad(p, lr=0.1),
    "adagrad_decay": lambda m, p: m.Adagrad(p, lr=0.1, lr_decay=0.01, weight_decay=0.02,
                                            initial_accumulator_value=0.1),
}


@pytest.mark.parametrize("name", sorted(OPTIMISERS))
def test_trajectory_matches_torch(name):
    (ours, _), (theirs, _) = _trajectories(OPTIMISERS[name])
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6, err_msg=f"step {step}")


@pytest.mark.parametrize("name", ["sgd_nesterov", "adam_wd_amsgrad", "rmsprop_centered_momentum"])
def test_trajectory_float64_and_closure(name):
    (ours, _), (theirs, _) = _trajectories(OPTIMISERS[name], dtype=np.float64, closure=True)
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-13)


def test_maximize_ascends():
    make = lambda m, p: m.Adam(p, lr=0.01, maximize=True)  # noqa: E731
    (ours, _), (theirs, _) = _trajectories(make, steps=20)
    for x, y in zip(ours[-1], theirs[-1]):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


SCHEDULES = {
    "step": lambda s, o: s.StepLR(o, step_size=7, gamma=0.5),
    "exponential": lambda s, o: s.ExponentialLR(o, gamma=0.93),
    "cosine": lambda s, o: s.CosineAnnealingLR(o, T_max=12, eta_min=1e-3),
    "multistep": lambda s, o: s.MultiStepLR(o, milestones=[3, 9, 9, 20], gamma=0.7),
    "linear": lambda s, o: s.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=15),
    "lambda": lambda s, o: s.LambdaLR(o, lambda epoch: 0.95 ** epoch),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedulers_match_torch(name):
    make = lambda m, p: m.SGD(p, lr=0.05, momentum=0.9)  # noqa: E731
    (ours, opt), (theirs, topt) = _trajectories(make, schedule=SCHEDULES[name])
    for a, b in zip(ours, theirs):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
    assert opt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], rel=1e-13)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_scheduler_rates_over_many_epochs(name):
    rates = []
    for lib_optim, lib in ((optim, tg), (torch.optim, torch)):
        opt = lib_optim.SGD([lib.zeros(1, requires_grad=True)], lr=0.1)
        sched = SCHEDULES[name](lib_optim.lr_scheduler, opt)
        seq = []
        for _ in range(40):
            opt.step()
            sched.step()
            seq.append(sched.get_last_lr()[0])
        rates.append(seq)
    np.testing.assert_allclose(rates[0], rates[1], rtol=1e-13)


def test_param_groups_and_repr_match_torch():
    ours = optim.SGD([{"params": [tg.zeros(2, requires_grad=True)]},
                      {"params": [tg.zeros(1, requires_grad=True)], "lr": 0.5}], lr=0.1,
                     momentum=0.9)
    theirs = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)]},
                              {"params": [torch.zeros(1, requires_grad=True)], "lr": 0.5}],
                             lr=0.1, momentum=0.9)
    assert repr(ours) == repr(theirs)
    for name in ("Adam", "AdamW", "RMSprop", "Adagrad"):
        a = getattr(optim, name)([tg.zeros(2, requires_grad=True)], lr=0.1)
        b = getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], lr=0.1)
        assert repr(a) == repr(b)


def test_state_dict_round_trip_resumes_identically():
    (path, opt), _ = _trajectories(OPTIMISERS["adam_wd_amsgrad"], steps=10)
    state = opt.state_dict()
    assert sorted(state["state"][0]) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    assert state["param_groups"][0]["params"] == [0, 1, 2]
    params = [tg.tensor(p.copy(), requires_grad=True) for p in path[-1]]
    fresh = optim.Adam(params, lr=0.5)
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["lr"] == 0.05 and fresh.param_groups[0]["amsgrad"]
    for p_old, p_new in zip(opt.param_groups[0]["params"], params):
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_array_equal(opt.state[p_old][key].numpy(),
                                          fresh.state[p_new][key].numpy())
        assert fresh.state[p_new][key] is not opt.state[p_old][key]  # copied, not shared
        p_old.grad = p_new.grad = tg.ones(p_old.shape)
    opt.step()
    fresh.step()
    for a, b in zip(opt.param_groups[0]["params"], params):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_torch_state_layout_matches():
    (_, opt), (_, topt) = _trajectories(OPTIMISERS["rmsprop_centered_momentum"], steps=3)
    ours, theirs = opt.state_dict(), topt.state_dict()
    assert sorted(ours["state"][1]) == sorted(theirs["state"][1])
    assert ours["param_groups"][0].keys() == theirs["param_groups"][0].keys()
    assert float(ours["state"][1]["step"]) == float(theirs["state"][1]["step"]) == 3.0


def test_zero_grad_set_to_none_and_zeroing():
    p = tg.ones(3, requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    (p * p).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(p.grad.numpy(), np.zeros(3))
    assert not p.grad.requires_grad
    opt.zero_grad()
    assert p.grad is None and grad is not None
    opt.step()  # no gradient: nothing moves
    np.testing.assert_array_equal(p.detach().numpy(), np.ones(3))


def test_module_zero_grad_and_step_with_model_parameters():
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().numpy().copy()
    model(tg.ones(4, 3)).sum().backward()
    opt.step()
    np.testing.assert_allclose(model.weight.detach().numpy(), before - 0.1 * 4, rtol=1e-6)
    model.zero_grad()
    assert model.weight.grad is None


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optim.Adam([tg.zeros(1, requires_grad=True)], lr=-1)
    with pytest.raises(ValueError, match="non-leaf"):
        optim.SGD([tg.zeros(1, requires_grad=True) * 2], lr=0.1)
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(tg.zeros(1, requires_grad=True), lr=0.1)
    p = tg.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([p], lr=0.1, nesterov=True)


@pytest.mark.parametrize("kwargs", [dict(patience=2), dict(mode="max", factor=0.5, patience=1,
                                                             threshold_mode="abs", cooldown=2,
                                                             min_lr=0.02)])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    metrics = [1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.5, 0.6, 0.61, 0.62, 0.63, 0.64, 0.7, 0.2,
               0.21, 0.22, 0.23, 0.24, 0.25]
    rates = []
    for lib_optim, lib in ((optim, tg), (torch.optim, torch)):
        opt = lib_optim.SGD([lib.zeros(1, requires_grad=True)], lr=0.1)
        sched = lib_optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        seq = []
        for m in metrics:
            opt.step()
            sched.step(m)
            seq.append(sched.get_last_lr()[0])
        rates.append(seq)
    assert rates[0] == rates[1]
    assert len(set(rates[0])) > 1


def test_named_parameters_keep_their_names_like_torch():
    ours = optim.Adam(nn.Linear(2, 2).named_parameters(), lr=0.1)
    theirs = torch.optim.Adam(torch.nn.Linear(2, 2).named_parameters(), lr=0.1)
    assert ours.param_groups[0]["param_names"] == ["weight", "bias"]
    assert repr(ours) == repr(theirs)
    assert ours.state_dict()["param_groups"] == theirs.state_dict()["param_groups"]
