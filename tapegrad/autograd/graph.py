"""Graph nodes (`grad_fn`) and the backward engine: a topological sort and a reversed sweep.

Every node stands for one primitive application and owns exactly one output tensor. It keeps the
primitive's inputs, output data and parameters; backward asks the registry rule for each input's
cotangent. Leaves that require grad end in an AccumulateGrad node, as in PyTorch.
"""
import heapq
import itertools
import math
import re
import threading
import weakref

import numpy as np

from ..core import _ERROR_STATE, _QUIET, quiet_errors, restore_errors
from ..primitives import unbroadcast
from .anomaly import _state as _anomaly_state
from .grad_mode import _set_enabled, _state as _grad_state  # noqa: F401 (tensor.py uses it)

# Rules of these primitives read only shapes, so their graphs survive a backward without
# retain_graph, and in-place changes of their inputs are harmless (PyTorch saves nothing for them).
SAVES_NOTHING = frozenset(
    {"add", "sub", "neg", "sum", "mean", "reshape", "transpose", "broadcast_to", "cat", "stack",
     "getitem", "index_add", "setitem", "sign"})
# Rules that read the primitive's output: an in-place change of that output must fail loudly, as
# in PyTorch, since the node keeps the output's memory. The first set reads nothing else: their
# registry rules must read only `ans` (as PyTorch's do), or a write to the input goes unseen.
_SAVES_OUTPUT_ONLY = frozenset(
    {"exp", "expm1", "sqrt", "tan", "tanh", "sigmoid", "relu", "softmax", "log_softmax"})
READS_NO_INPUT = SAVES_NOTHING | _SAVES_OUTPUT_ONLY  # their nodes keep no input versions
_SAVES_OUTPUT = _SAVES_OUTPUT_ONLY | {"div", "pow", "prod", "amax", "amin", "logsumexp", "norm"}

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward.")


# NumPy's ufuncs take a Python number next to an array by a slow path (np.add(a, 2) ~460 ns here
# against ~230 ns with a 0-d array); NEP 50 casts the number to the array's dtype first, so for
# these (correctly rounded) operations a cached 0-d array of that dtype gives identical results
WEAK_SCALAR_OPS = frozenset({"add", "sub", "mul", "div"})
_WEAK_DTYPES = {np.dtype(t): float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}
_weak_cache = {dtype: {} for dtype in _WEAK_DTYPES}  # dtype -> {number: read-only 0-d array}
_WEAK_CACHE_SIZE = 256


def weak_scalar(dtype, value):
    """The exact int or float `value` as a read-only 0-d array of the native float `dtype`, as
    NumPy casts it next to an array of that dtype; None where it might not be the same number
    (other dtypes, overflow, ints beyond 2**53) or is not cached (NaN; -0.0, which shares 0's key)."""
    table = _weak_cache.get(dtype)
    if table is None:
        return None
    if value.__class__ is float:
        if not value and math.copysign(1.0, value) < 0:
            return None
    elif value.__class__ is not int:  # bools (True is a key of 1), complex, NumPy scalars
        return None
    out = table.get(value)
    if out is None:
        if value != value or not -2**53 <= value <= 2**53:
            return None
        if abs(value) > _WEAK_DTYPES[dtype] or len(table) >= _WEAK_CACHE_SIZE:
            return None
        out = np.array(value, dtype)
        out.flags.writeable = False
        table[value] = out
    return out


# Creation order of nodes: a node is made after the nodes its gradient flows to, so the backward
# sweep visits nodes by decreasing number (a heap) with no topological sort, as PyTorch's
# sequence_nr. Accumulators, made lazily, take negative numbers: they come after every other node.
_sequence = itertools.count()


class Node:
    """Base of every grad_fn. `next_functions` pairs each input with the node its gradient flows to.
    Subclasses set `_seq` to next(_sequence) when they are made (see run_backward).

    `_next` holds those nodes (None for inputs without gradient), one flat tuple: graphs of many
    small operations keep fewer objects alive for the cyclic collector to walk, which cost more
    than the operations themselves; PyTorch's (node, 0) pairs are built when asked for."""

    __slots__ = ("_next", "_pre_hooks", "_retained", "_seq", "__weakref__")

    @property
    def next_functions(self):
        return tuple([(node, 0) for node in self._next])

    @next_functions.setter
    def next_functions(self, pairs):
        self._next = tuple([node for node, _ in pairs])

    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {hex(id(self))}>"

    def register_hook(self, hook):
        """hook(grad_inputs, grad_outputs) after this node ran; kept simple: called with grads."""
        raise NotImplementedError(
            "tapegrad: Node.register_hook is not supported; use Tensor.register_hook instead")


def _modified_error(tensor_type, shape, producer, version, expected, where):
    # PyTorch's wording, naming the modified tensor by the op that last wrote it (a node or its
    # name; ExpBackward0 is "Exp", PowBackward1 "Pow1")
    name = producer if isinstance(producer, str) or producer is None else producer.name()
    which = "" if name is None else f", which is output 0 of {re.sub(r'Backward0?', '', name)},"
    return RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [{tensor_type} {list(shape)}]{which} is at version {version}; expected "
        f"version {expected} instead. Hint: {where}; the operation that modified it is in-place "
        "(name ends in '_') or an element assignment: clone() the tensor before modifying it.")


class VersionSince:
    """A node's output version counted from `start`: for an in-place op whose node keeps its
    result, the tensor written is at version `start` right after the write, and errors name it by
    `producer`, the name of its grad_fn then (a view's is AsStridedBackward0; a name, not the
    node, which may hold the tensor: no reference cycle)."""
    __slots__ = ("counter", "start", "producer")

    def __init__(self, counter, start, producer):
        self.counter, self.start, self.producer = counter, start, producer

    def __getitem__(self, i):
        return self.counter[0] - self.start


class AccumulateGrad(Node):
    __slots__ = ("variable",)

    def __init__(self, variable):
        self.variable = variable
        self._seq = -1 - next(_sequence)
        self._next = ()
        self._pre_hooks = None
        self._retained = None


# The Tensor class: tensor.py sets it as it loads (it imports this module before defining Tensor).
Tensor = None

_node_classes = {}


def node_class(name):
    """One Node subclass per PyTorch name, so type(t.grad_fn).__name__ reads 'MulBackward0'."""
    cls = _node_classes.get(name)
    if cls is None:
        cls = _node_classes[name] = type(name, (PrimitiveNode,), {"__slots__": ()})
    return cls


class PrimitiveNode(Node):
    """One primitive application. Tensor._bind makes them (its hot path sets the slots itself):
    prim, inputs (the operands), ans (the output's data), params, versions (the inputs' versions
    when recorded; None where the rule reads no input), freed, out_version (the output's version
    counter)."""
    __slots__ = ("prim", "inputs", "ans", "params", "versions", "freed", "out_version")

    def check_saved(self):
        name = self.prim.name
        if name in SAVES_NOTHING:
            return
        if self.freed:
            raise RuntimeError(_FREED_MESSAGE)
        out = self.out_version
        if name in _SAVES_OUTPUT and out is not None and out[0]:
            from ..dtypes import from_numpy_dtype
            version, expected, producer = ((out.counter[0], out.start, out.producer)
                                           if isinstance(out, VersionSince) else (out[0], 0, self))
            raise _modified_error(f"torch.{from_numpy_dtype(self.ans.dtype).tensor_type}",
                                  self.ans.shape, producer, version, expected,
                                  f"it is the output of {self.name()}")
        if name in _SAVES_OUTPUT_ONLY:
            return
        versions = self.versions
        i = 0
        for x in self.inputs:
            version = versions[i]
            if version is not None and x._version_counter[0] != version:
                raise _modified_error(x.type(), x.shape, x.grad_fn, x._version, version,
                                      f"it is input {i} of {self.name()}")
            i += 1

    def input_grads(self, g, create_graph):
        """Cotangents of the inputs that need one, each summed back to its input's shape."""
        name = self.prim.name
        if name not in SAVES_NOTHING:
            # check_saved's common outcome inlined (nothing freed or written since): it runs, and
            # raises, only where a check fails
            out = self.out_version
            if self.freed or (out is not None and out[0]):
                self.check_saved()
            versions = self.versions
            if versions is not None:
                i = 0
                for x in self.inputs:
                    version = versions[i]
                    if version is not None and x._version_counter[0] != version:
                        self.check_saved()
                    i += 1
        if create_graph:
            args = self.inputs
            ans = Tensor._from_node(self.ans, self)
        else:
            fast = _NUMERIC_VJPS.get(name)
            if fast is not None:
                grads = fast(self, g)
                if grads is not None:
                    return grads
            ans = self.ans
            # a 0-d node's values reach its rules as NumPy scalars: their arithmetic costs a
            # fifth of 0-d arrays' (NumPy's scalar path), with the same types and rounding
            scalar = not ans.ndim
            if scalar:
                ans = ans[()]
                if type(g) is np.ndarray:
                    g = g[()]
            inputs = self.inputs
            if len(inputs) == 2:  # unrolled for the common arities
                g, a, b = _binary_operands(self, g, False)
                args = (a, b)
            elif len(inputs) == 1:
                a = getattr(inputs[0], "_data", inputs[0])
                args = (a[()] if scalar and type(a) is np.ndarray and not a.ndim else a,)
            else:
                args = tuple([getattr(x, "_data", x) for x in inputs])
        prim, params = self.prim, self.params
        # Primitive.vjp inlined for the common case: one rule per argument
        rules = prim.vjp_rules if prim.variadic_vjp is None and prim.differentiable else ()
        grads = []
        i = 0
        for nxt in self._next:
            if nxt is None:
                grads.append(None)
            else:
                if i < len(rules):
                    rule = rules[i]
                    ct = None if rule is None else (
                        rule(g, ans, *args, **params) if params else rule(g, ans, *args))
                else:
                    ct = prim.vjp(i, g, ans, args, params)
                if ct is not None:
                    shape = args[i].shape
                    if getattr(ct, "shape", ()) != shape:
                        ct = unbroadcast(ct, shape)
                grads.append(ct)
            i += 1
        return grads


def _filled(shape, g):
    out = np.empty(shape, g.dtype)  # np.full's two steps without its Python wrapper
    out[...] = g
    return out


def _sum_all_vjp(node, g):
    if node.params["axis"] is not None:
        return None
    x = node.inputs[0]
    return [_filled(getattr(x, "_data", x).shape, g)]


def _mean_all_vjp(node, g):
    if node.params["axis"] is not None:
        return None
    x = node.inputs[0]
    x = getattr(x, "_data", x)
    if type(g) is np.ndarray:
        g = g[()]  # a NumPy scalar: its division costs a tenth of a 0-d array's, same rounding
    return [_filled(x.shape, g / x.size)]  # as the registry rule: g spread, divided by the count


def _binary_operands(node, g, weak=True):
    """input_grads' preparation for a two-operand rule: (g, a, b) as the rule sees them: a 0-d
    node's values as NumPy scalars; with `weak` (add/sub/mul/div), a number beside an array as
    its cached 0-d array (g * 3 without NumPy's slow path for Python scalars)."""
    a, b = node.inputs
    a, b = getattr(a, "_data", a), getattr(b, "_data", b)
    if not node.ans.ndim:
        if type(g) is np.ndarray:
            g = g[()]
        if type(a) is np.ndarray and not a.ndim:
            a = a[()]
        if type(b) is np.ndarray and not b.ndim:
            b = b[()]
    elif weak and type(g) is np.ndarray:
        if b.__class__ is float or b.__class__ is int:
            number = weak_scalar(g.dtype, b)
            if number is not None:
                b = number
        elif a.__class__ is float or a.__class__ is int:
            number = weak_scalar(g.dtype, a)
            if number is not None:
                a = number
    return g, a, b


def _fitted(ct, x):
    """ct summed back to x's shape (as input_grads does with every rule's cotangent)."""
    shape = x.shape
    return ct if getattr(ct, "shape", ()) == shape else unbroadcast(ct, shape)


# add, sub, mul: the registry rules (g, g; g, -g; g * y, g * x) without input_grads' generic
# rule calls, one frame for the node instead of one per operand
def _add_vjp(node, g):
    g, a, b = _binary_operands(node, g, False)  # (its rules read no operand)
    na, nb = node._next
    return [None if na is None else _fitted(g, a), None if nb is None else _fitted(g, b)]


def _sub_vjp(node, g):
    g, a, b = _binary_operands(node, g, False)  # (its rules read no operand)
    na, nb = node._next
    return [None if na is None else _fitted(g, a), None if nb is None else _fitted(-g, b)]


def _mul_vjp(node, g):
    g, a, b = _binary_operands(node, g)
    na, nb = node._next
    return [None if na is None else _fitted(g * b, a), None if nb is None else _fitted(g * a, b)]


def _div_vjp(node, g):
    g, a, b = _binary_operands(node, g)
    na, nb = node._next
    quotient = g / b  # both rules' g / y, made once (div_vjps)
    ans = node.ans
    if not ans.ndim:
        ans = ans[()]
    return [None if na is None else _fitted(quotient, a),
            None if nb is None else _fitted(-(quotient * ans), b)]


_INT_OF_WIDTH = {2: np.int16, 4: np.int32, 8: np.int64}


def masked(cond, g, keep_where_true):
    """where(cond, g, 0) (keep_where_true) or where(cond, 0, g) as a bit mask, for a float g of
    2, 4 or 8 bytes an element: np.where branches per element and a ReLU's mask is noise to the
    branch predictor (600 us against 40 us for 173k float32 here); the bits of g are kept (NaN,
    inf, -0 included) where g is kept, and the zeros are +0, as np.where's."""
    ints = _INT_OF_WIDTH[g.dtype.itemsize]
    mask = cond.view(np.uint8).astype(ints)
    if keep_where_true:
        np.negative(mask, out=mask)  # all bits set where cond holds
    else:
        mask -= 1  # all bits set where it does not
    return np.bitwise_and(g.view(ints), mask).view(g.dtype)


def _relu_vjp(node, g):
    """where(ans <= 0, 0, g), the rule, as a bit mask (masked)."""
    ans = node.ans
    if (ans.dtype.itemsize not in _INT_OF_WIDTH or type(g) is not np.ndarray
            or g.dtype != ans.dtype or g.shape != ans.shape or ans.dtype.kind != "f"):
        return None
    return [masked(ans <= 0, g, keep_where_true=False)]


def _max_pool2d_vjp(node, g):
    from .. import primitives_nn  # (not at import: primitives_nn needs the registry loaded)
    if type(g) is not np.ndarray or g.shape != node.ans.shape:
        return None
    out = primitives_nn.pool_scatter_tiled(g, node.inputs[0]._data, node.ans, **node.params)
    return None if out is None else [out]


# Numeric backward (no create_graph) of common rules: the registry rule's values in fewer NumPy
# calls (tests compare the two); None from one means "use the rule"
_NUMERIC_VJPS = {"sum": _sum_all_vjp, "mean": _mean_all_vjp, "relu": _relu_vjp,
                 "max_pool2d": _max_pool2d_vjp, "add": _add_vjp, "sub": _sub_vjp, "mul": _mul_vjp,
                 "div": _div_vjp}


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------

def run_backward(roots, root_grads, retain_graph=False, create_graph=False, capture=None):
    """Push root_grads back through the graph.

    Nodes run by decreasing creation number (a heap holding the nodes that received a gradient):
    every node that sends gradient to a node was made after it, so it has run by then.

    capture: None to accumulate into leaves' .grad (backward), or a dict {node: None} whose entries
    receive the total gradient arriving at those nodes (autograd.grad); leaves are then untouched.
    """
    buffer, heap = {}, []
    push, pop = heapq.heappush, heapq.heappop
    for node, g in zip(roots, root_grads):
        if node is not None:
            _send(buffer, heap, node, g)
    check_nan = _anomaly_state.enabled
    # as `with enable_grad()/no_grad()` and np.errstate, without the context objects
    previous = _grad_state.enabled
    _grad_state.enabled = bool(create_graph)
    errors = _ERROR_STATE.set(_QUIET) if _ERROR_STATE is not None else quiet_errors()
    try:
        following = None  # a node to run next that skipped the heap (see below)
        while True:
            if following is not None:
                node, following = following, None
            elif heap:
                node = pop(heap)[1]
            else:
                break
            g = buffer.pop(node)
            if node._pre_hooks or node._retained is not None:
                g = _run_tensor_hooks(node, g)
            if capture is not None and node in capture:
                capture[node] = g if capture[node] is None else capture[node] + g
            if type(node) is AccumulateGrad:
                if capture is None:
                    _accumulate_into_leaf(node.variable, g, create_graph)
                continue
            cts = node.input_grads(g, create_graph)
            if check_nan:
                _check_nan(node, cts)
            i = 0
            first = None
            for nxt in node._next:
                ct = cts[i]
                i += 1
                if ct is not None:
                    old = buffer.get(nxt)
                    if old is None:
                        buffer[nxt] = ct
                        if first is None and not heap:
                            first = nxt
                        else:
                            push(heap, (-nxt._seq, nxt))
                    else:
                        buffer[nxt] = old + ct
            if first is not None:
                # the only node now waiting (a chain's next link) runs next without heap traffic;
                # with others waiting, it takes its place in the order
                if heap:
                    push(heap, (-first._seq, first))
                else:
                    following = first
            if not retain_graph:
                node.freed = True
    finally:
        if _ERROR_STATE is not None:
            _ERROR_STATE.reset(errors)
        else:
            restore_errors(errors)
        _grad_state.enabled = previous


def _send(buffer, heap, node, g):
    """Add g to node's incoming gradient; a node's first gradient puts it on the heap."""
    old = buffer.get(node)
    if old is None:
        buffer[node] = g
        heapq.heappush(heap, (-node._seq, node))
    else:
        buffer[node] = old + g


def _check_nan(node, cts):
    for i, ct in enumerate(cts):
        data = getattr(ct, "_data", ct)
        if data is not None and np.isnan(data).any():
            raise RuntimeError(f"Function '{node.name()}' returned nan values in its {i}th output.")


def _run_tensor_hooks(node, g):
    if node._pre_hooks:
        for hook in list(node._pre_hooks.values()):
            wrapped = g if isinstance(g, Tensor) else Tensor._wrap(g)
            result = hook(wrapped)
            if result is not None:
                g = result if isinstance(g, Tensor) else result._data
    if node._retained is not None:
        tensor = node._retained()
        if tensor is not None:
            data = g.detach() if isinstance(g, Tensor) else Tensor._wrap(np.array(g))
            with leaf_grad_lock:
                tensor._grad = data if tensor._grad is None else tensor._grad + data
    return g


# Backward passes in several threads may reach one leaf at once: the read-modify-write of its
# .grad (NumPy drops the GIL inside large in-place adds) must not interleave. One lock serves all
# leaves: it is taken once per leaf per backward, uncontended in a single thread. Reentrant: with
# create_graph, the sum of two grads may need a leaf's accumulator, which takes it too.
leaf_grad_lock = threading.RLock()


def _accumulate_into_leaf(variable, g, create_graph):
    if not isinstance(g, Tensor):  # a numeric backward's array: copied once, or added in place
        dtype = variable._data.dtype
        with leaf_grad_lock:
            if variable._grad is None:
                # PyTorch's layout contract: a leaf's .grad has the leaf's strides (a transposed
                # cotangent kept as it is would make every later update a strided pass)
                data = variable._data
                order = "C" if data.flags.c_contiguous else "F" if data.flags.f_contiguous else "K"
                variable._grad = Tensor._wrap(np.array(g, dtype=dtype, order=order))
            else:
                variable._grad._data += np.asarray(g).astype(dtype, copy=False)
        return
    new = g if create_graph else g.detach()
    if new._data.dtype != variable._data.dtype:
        new = new.to(variable.dtype)
    with leaf_grad_lock:
        if variable._grad is None:
            variable._grad = new
        elif create_graph:
            variable._grad = variable._grad + new
        else:
            variable._grad._data += new._data


def node_of(tensor):
    """The node whose incoming gradient is this tensor's gradient (its grad_fn or AccumulateGrad)."""
    if tensor.grad_fn is not None:
        return tensor.grad_fn
    if tensor.requires_grad:
        return tensor._grad_accumulator()
    return None


def retain(node, tensor):
    node._retained = weakref.ref(tensor)
