"""Implementations derived from a workload's own function: every peer and every tapegrad face.

A workload writes its function once against `np` (NumPy names only). Peers run that same code
with `np` rebound to their array module (`torch`, `jax.numpy`, `autograd.numpy`), so every
framework differentiates literally the same program; tapegrad's faces take the function as it is.
Every import happens inside a setup, so `import benchmarks` pulls in none of these packages.
"""
import importlib
import shutil
import types

import numpy as np

from .harness import Impl, Skip


def rebind(f, **names):
    """`f` with some global names replaced (e.g. np=torch); code and closure are shared."""
    env = dict(f.__globals__)
    env.update(names)
    g = types.FunctionType(f.__code__, env, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    return g


def _need(module):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module.split(".")[0]:
            raise                       # installed but broken: say what is missing
        raise Skip(f"{module} not installed") from exc


def _argnums(p):
    # The contract takes an int or a tuple; a single int is what users write.
    return p.argnums[0] if len(p.argnums) == 1 else p.argnums


def gpu_available():
    """True when an NVIDIA GPU can be used through numba.cuda (checked lazily and cheaply)."""
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        from numba import cuda
        return cuda.is_available()
    except ImportError:
        return False


def gpu_only(build):
    """A workload's build that skips the whole workload where no NVIDIA GPU can be used."""
    def build_on_gpu(size):
        if not gpu_available():
            raise Skip("no CUDA GPU here")
        return build(size)
    return build_on_gpu


def _jax():
    jax = _need("jax")
    # float64 workloads need x64; float32 inputs stay float32 under it.
    jax.config.update("jax_enable_x64", True)
    return jax


def _jax_device(jax, device):
    try:
        return jax.devices(device)[0]
    except RuntimeError as exc:
        raise Skip(f"JAX has no {device} backend here") from exc


def _torch_sync(torch, device):
    """What waits for PyTorch's queued GPU work (nothing on the CPU); skips without a GPU."""
    if device == "cpu":
        return lambda: None
    if not torch.cuda.is_available():
        raise Skip("PyTorch sees no CUDA GPU")
    return torch.cuda.synchronize


# ---------------------------------------------------------------- eager, PyTorch-style

def eager_setup(module_name, device="cpu"):
    """Leaves with requires_grad, forward, backward(): PyTorch eager and tapegrad eager alike."""
    def setup(p):
        mod = _need(module_name)
        f = rebind(p.f, np=mod)
        on_gpu = {} if device == "cpu" else {"device": device}    # tapegrad has no device=
        sync = _torch_sync(mod, device)
        # np.asarray keeps Python floats float64 (torch.tensor(0.5) would be float32).
        args = [mod.tensor(np.asarray(a), requires_grad=i in p.argnums, **on_gpu)
                for i, a in enumerate(p.args)]
        leaves = [args[i] for i in p.argnums]

        def run():
            for x in leaves:
                x.grad = None           # fresh gradients, as a training loop does
            out = f(*args)
            if p.batched:               # d sum(f(x)) / dx is f'(x) pointwise
                out.sum().backward()
                out = None
            else:
                out.backward()
            sync()
            return out, [x.grad for x in leaves]
        return run
    return setup


# ---------------------------------------------------------------- functional peers

def jax_setup(device="cpu"):
    def setup(p):
        jax = _jax()
        dev = _jax_device(jax, device)
        f = rebind(p.f, np=importlib.import_module("jax.numpy"))
        if p.batched:
            fn = jax.jit(jax.vmap(jax.grad(f)))
        else:
            fn = jax.jit(jax.value_and_grad(f, argnums=p.argnums))
        args = [jax.device_put(a, dev) for a in p.args]

        def run():                      # JAX dispatches asynchronously: wait for the result
            out = jax.block_until_ready(fn(*args))
            return (None, out) if p.batched else out
        return run
    return setup


def torch_vmap_setup(device="cpu"):
    """torch.func.vmap(grad(f)) for the batched workloads."""
    def setup(p):
        torch = _need("torch")
        sync = _torch_sync(torch, device)
        from torch.func import grad, vmap
        fn = vmap(grad(rebind(p.f, np=torch)))
        args = [torch.tensor(a, device=device) for a in p.args]

        def run():
            out = fn(*args)
            sync()
            return None, out
        return run
    return setup


def autograd_setup(p):
    ag = _need("autograd")
    f = rebind(p.f, np=importlib.import_module("autograd.numpy"))
    if p.batched:
        fn = ag.elementwise_grad(f)
        return lambda: (None, fn(*p.args))
    fn = ag.value_and_grad(f, _argnums(p))
    return lambda: fn(*p.args)


def tangent_setup(p):
    # the `tangent` module of tangent-ad (the maintained successor; tangent 0.1.9 no longer imports)
    tangent = _need("tangent")
    df = tangent.grad(p.f, wrt=p.argnums, preserve_result=True, verbose=0)

    def run():
        out = df(*p.args)               # (grad..., value) with preserve_result
        return out[-1], out[:-1]
    return run


def central_fd_setup(p):
    """Central finite differences on the plain NumPy function; only where inputs are few."""
    f = p.f
    if p.batched:                       # f acts pointwise, so one pair of calls covers all points
        x = p.args[0]
        h = 1e-6 * np.maximum(1.0, np.abs(x))
        return lambda: (None, (f(x + h) - f(x - h)) / (2 * h))

    def run():
        args = [np.array(a, dtype=np.float64) for a in p.args]
        grads = []
        for i in p.argnums:
            flat = args[i].reshape(-1)  # a view: perturbing it perturbs args[i]
            g = np.empty(flat.size)
            for j in range(flat.size):
                x0 = flat[j]
                h = 1e-6 * max(1.0, abs(x0))
                flat[j] = x0 + h
                up = f(*args)
                flat[j] = x0 - h
                down = f(*args)
                flat[j] = x0
                g[j] = (up - down) / (2 * h)
            grads.append(g)
        return f(*args), grads
    return run


# ---------------------------------------------------------------- tapegrad faces

def tapegrad_jit_setup(device="cpu"):
    def setup(p):
        tg = _need("tapegrad")
        args = p.args
        if device == "cuda":
            if not gpu_available():
                raise Skip("no CUDA GPU")
            from numba import cuda
            args = [cuda.to_device(a) for a in args]     # data stays on the device
        if p.batched:
            fn = tg.jit(tg.vmap(tg.grad(p.f)), device=device)
        else:
            fn = tg.jit(tg.value_and_grad(p.f, argnums=_argnums(p)), device=device)

        def run():
            out = fn(*args)
            if device == "cuda":
                from numba import cuda
                cuda.synchronize()
            return (None, out) if p.batched else out
        return run
    return setup


def tapegrad_source_setup(p):
    source = _need("tapegrad.source")
    if p.batched:
        raise Skip("the source face has no vmap")
    fn = source.value_and_grad(p.f, argnums=_argnums(p), jit=True)
    return lambda: fn(*p.args)


# ---------------------------------------------------------------- the standard set

def standard(batched=False, gpu=False, fd=False, notes=None, runs_in=None, exclude=None):
    """Every peer and tapegrad face for a workload's function.

    batched: f maps points to points and is differentiated with vmap(grad); gpu: the GPU
    implementations only; fd: add central finite differences (when inputs are few);
    notes: {impl name: note}; runs_in: {impl name: "full" or "slow"} for the costly ones
    (see harness.LEVELS); exclude: {name: reason} for implementations that would not finish
    (listed as skipped with the reason).
    """
    if gpu:
        impls = [
            Impl("tapegrad jit CUDA", "tapegrad", tapegrad_jit_setup("cuda")),
            Impl("JAX jit GPU", "peer", jax_setup("gpu"), note="first call = trace + compile"),
            Impl("PyTorch func.vmap(grad) GPU", "peer", torch_vmap_setup("cuda")) if batched
            else Impl("PyTorch eager GPU", "peer", eager_setup("torch", "cuda")),
        ]
    else:
        impls = [
            Impl("tapegrad eager", "tapegrad", eager_setup("tapegrad")),
            Impl("tapegrad jit CPU", "tapegrad", tapegrad_jit_setup("cpu")),
            Impl("tapegrad source jit", "tapegrad", tapegrad_source_setup),
            Impl("PyTorch eager", "peer", eager_setup("torch")),
            Impl("JAX jit", "peer", jax_setup("cpu"), note="first call = trace + compile"),
            Impl("HIPS autograd", "peer", autograd_setup),
            Impl("tangent-ad", "peer", tangent_setup),
        ]
        if batched:
            impls.append(Impl("PyTorch func.vmap(grad)", "peer", torch_vmap_setup("cpu")))
        if fd:
            impls.append(Impl("central FD (NumPy)", "hand-written", central_fd_setup, rtol=1e-5))
    notes, runs_in, exclude = notes or {}, runs_in or {}, exclude or {}
    for impl in impls:
        impl.note = notes.get(impl.name, impl.note)
        impl.runs_in = runs_in.get(impl.name, impl.runs_in)
        if impl.name in exclude:
            impl.setup = _excluded(exclude[impl.name])
    return impls


def _excluded(reason):
    def setup(p):
        raise Skip(reason)
    return setup
