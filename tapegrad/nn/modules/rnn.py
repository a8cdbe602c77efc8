"""RNN, LSTM, GRU and their cells: PyTorch's parameters, gate order, shapes and initialisation,
unrolled over time with registry operations (so gradients come from the registry's rules)."""
import math

from ... import functions as _f
from .. import init
from ..parameter import Parameter
from .module import Module

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _linear(x, weight, bias):
    out = x @ weight.t()
    return out if bias is None else out + bias


def _rnn_tanh_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    return (_linear(x, w_ih, b_ih) + _linear(h, w_hh, b_hh)).tanh()


def _rnn_relu_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    return (_linear(x, w_ih, b_ih) + _linear(h, w_hh, b_hh)).relu()


def _lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh):
    h, c = state
    gates = _linear(x, w_ih, b_ih) + _linear(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, -1)   # PyTorch's order: input, forget, cell, output
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def _gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    xr, xz, xn = _linear(x, w_ih, b_ih).chunk(3, -1)   # reset, update, new
    hr, hz, hn = _linear(h, w_hh, b_hh).chunk(3, -1)
    r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    return (1 - z) * n + z * h


_CELLS = {"RNN_TANH": _rnn_tanh_cell, "RNN_RELU": _rnn_relu_cell, "LSTM": _lstm_cell,
          "GRU": _gru_cell}


class RNNBase(Module):
    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if proj_size:
            raise NotImplementedError("LSTM(proj_size=...) is not supported by tapegrad")
        if not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, 0
        gate_size = _GATES[mode] * hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(directions):
                layer_input = input_size if layer == 0 else hidden_size * directions
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = [("weight_ih", (gate_size, layer_input)),
                          ("weight_hh", (gate_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                for name, shape in shapes:
                    setattr(self, name + suffix, Parameter(_f.empty(*shape, dtype=dtype)))
                    self._flat_weights_names.append(name + suffix)
        self.reset_parameters()

    def reset_parameters(self):
        # PyTorch's default: every weight and bias U(-1/sqrt(hidden), 1/sqrt(hidden))
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    @property
    def all_weights(self):
        return [[getattr(self, n) for n in self._flat_weights_names[i:i + (4 if self.bias
                                                                             else 2)]]
                for i in range(0, len(self._flat_weights_names), 4 if self.bias else 2)]

    def _weights(self, layer, direction):
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
        return [getattr(self, n + suffix) if self.bias or n.startswith("weight") else None
                for n in names]

    def forward(self, input, hx=None):
        is_lstm = self.mode == "LSTM"
        batched = input.ndim == 3
        if input.ndim not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{input.ndim}D instead")
        x = input if batched else input.unsqueeze(1)
        if self.batch_first and batched:
            x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        directions = 2 if self.bidirectional else 1
        n = x.shape[1]
        shape = (self.num_layers * directions, n, self.hidden_size)
        if hx is None:
            zeros = _f.zeros(*shape, dtype=x.dtype)
            hx = (zeros, zeros) if is_lstm else zeros
        elif not batched:
            hx = tuple(h.unsqueeze(1) for h in hx) if is_lstm else hx.unsqueeze(1)
        for h in (hx if is_lstm else (hx,)):
            if tuple(h.shape) != shape:
                raise RuntimeError(f"Expected hidden size {shape}, got {list(h.shape)}")
        cell = _CELLS[self.mode]
        steps = list(x.unbind(0))
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                k = layer * directions + direction
                state = (hx[0][k], hx[1][k]) if is_lstm else hx[k]
                weights = self._weights(layer, direction)
                order = range(len(steps) - 1, -1, -1) if direction else range(len(steps))
                seq = [None] * len(steps)
                for t in order:
                    state = cell(steps[t], state, *weights)
                    seq[t] = state[0] if is_lstm else state
                outputs.append(seq)
                finals_h.append(state[0] if is_lstm else state)
                if is_lstm:
                    finals_c.append(state[1])
            steps = [_f.cat([o[t] for o in outputs], -1) if directions == 2 else outputs[0][t]
                     for t in range(len(steps))]
            if self.dropout and self.training and layer < self.num_layers - 1:
                from ..functional import dropout
                steps = [dropout(s, self.dropout) for s in steps]
        output = _f.stack(steps, 0)
        h_n = _f.stack(finals_h, 0)
        if self.batch_first and batched:
            output = output.transpose(0, 1)
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
        if is_lstm:
            c_n = _f.stack(finals_c, 0)
            return output, (h_n, c_n if batched else c_n.squeeze(1))
        return output, h_n

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             "'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, dtype=dtype)


class LSTM(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, dtype=dtype)


class GRU(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, dtype=dtype)


class _CellBase(Module):
    def __init__(self, mode, input_size, hidden_size, bias, dtype):
        super().__init__()
        self.mode, self.input_size, self.hidden_size, self.bias = mode, input_size, hidden_size, bias
        gates = _GATES[mode] * hidden_size
        self.weight_ih = Parameter(_f.empty(gates, input_size, dtype=dtype))
        self.weight_hh = Parameter(_f.empty(gates, hidden_size, dtype=dtype))
        self.register_parameter("bias_ih", Parameter(_f.empty(gates, dtype=dtype)) if bias
                                else None)
        self.register_parameter("bias_hh", Parameter(_f.empty(gates, dtype=dtype)) if bias
                                else None)
        RNNBase.reset_parameters(self)

    def forward(self, input, hx=None):
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        zeros = _f.zeros(x.shape[0], self.hidden_size, dtype=x.dtype)
        if self.mode == "LSTM":
            h, c = (zeros, zeros) if hx is None else hx
            if not batched and hx is not None:
                h, c = h.unsqueeze(0), c.unsqueeze(0)
            h, c = _lstm_cell(x, (h, c), self.weight_ih, self.weight_hh, self.bias_ih,
                              self.bias_hh)
            return (h, c) if batched else (h.squeeze(0), c.squeeze(0))
        h = zeros if hx is None else (hx if batched else hx.unsqueeze(0))
        h = _CELLS[self.mode](x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h if batched else h.squeeze(0)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity=relu"
        return s


class RNNCell(_CellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        self.nonlinearity = nonlinearity
        super().__init__("RNN_" + nonlinearity.upper(), input_size, hidden_size, bias, dtype)


class LSTMCell(_CellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, bias, dtype)


class GRUCell(_CellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, bias, dtype)
