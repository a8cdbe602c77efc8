"""More of torch.nn's layers, each a call of nn.functional (or a composition of layers)."""
import math

from ... import functions as _f
from .. import functional as F
from .. import init
from ..parameter import Parameter
from .module import Module
from .sparse import Dropout


def _simple(name, fn, fields=(), defaults=(), bare=False):
    """A module whose forward is fn(input, *its fields), repr'd as PyTorch's extra_repr."""
    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        values = dict(zip(fields, defaults))
        values.update(zip(fields, args))
        values.update(kwargs)
        for k in fields:
            setattr(self, k, values[k])

    def forward(self, input):
        return fn(input, *(getattr(self, k) for k in fields if k != "inplace"))

    def extra_repr(self):
        shown = [str(getattr(self, k)) if bare else f"{k}={getattr(self, k)}"
                 for k in fields if k != "inplace"]
        if "inplace" in fields and getattr(self, "inplace"):
            shown.append("inplace=True")
        return ", ".join(shown)
    return type(name, (Module,), {"__init__": __init__, "forward": forward,
                                  "extra_repr": extra_repr, "__module__": __name__})


SELU = _simple("SELU", F.selu, ("inplace",), (False,))
CELU = _simple("CELU", F.celu, ("alpha", "inplace"), (1.0, False))
Hardsigmoid = _simple("Hardsigmoid", F.hardsigmoid, ("inplace",), (False,))
Hardswish = _simple("Hardswish", F.hardswish, ("inplace",), (False,))
Softshrink = _simple("Softshrink", F.softshrink, ("lambd",), (0.5,), bare=True)
Tanhshrink = _simple("Tanhshrink", F.tanhshrink)
Threshold = _simple("Threshold", F.threshold, ("threshold", "value", "inplace"),
                    (None, None, False))
GLU = _simple("GLU", F.glu, ("dim",), (-1,))
PixelShuffle = _simple("PixelShuffle", F.pixel_shuffle, ("upscale_factor",))
AdaptiveAvgPool1d = _simple("AdaptiveAvgPool1d", F.adaptive_avg_pool1d, ("output_size",))


class Softmax2d(Module):
    def forward(self, input):
        return F.softmax(input, -3)


class PReLU(Module):
    def __init__(self, num_parameters=1, init=0.25, device=None, dtype=None):
        super().__init__()
        self.num_parameters = num_parameters
        self.weight = Parameter(_f.full((num_parameters,), init, dtype=dtype))

    def forward(self, input):
        return F.prelu(input, self.weight)

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class MaxPool1d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input):
        return F.max_pool1d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool1d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        self.kernel_size = (kernel_size,) if isinstance(kernel_size, int) else kernel_size
        stride = kernel_size if stride is None else stride
        self.stride = (stride,) if isinstance(stride, int) else stride
        self.padding = (padding,) if isinstance(padding, int) else padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input):
        return F.avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Dropout1d(Dropout):
    def forward(self, input):
        return F.dropout1d(input, self.p, self.training)


class Dropout2d(Dropout):
    def forward(self, input):
        return F.dropout2d(input, self.p, self.training)


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, bias=True, device=None,
                 dtype=None):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups, self.num_channels, self.eps, self.affine = (num_groups, num_channels,
                                                                     eps, affine)
        self.register_parameter("weight", Parameter(_f.ones(num_channels, dtype=dtype))
                                if affine else None)
        self.register_parameter("bias", Parameter(_f.zeros(num_channels, dtype=dtype))
                                if affine and bias else None)

    def forward(self, input):
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")


class InstanceNorm2d(Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, bias=True, device=None, dtype=None):
        super().__init__()
        if track_running_stats:
            raise NotImplementedError("InstanceNorm2d(track_running_stats=True) is not "
                                      "supported by tapegrad")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.register_parameter("weight", Parameter(_f.ones(num_features, dtype=dtype))
                                if affine else None)
        self.register_parameter("bias", Parameter(_f.zeros(num_features, dtype=dtype))
                                if affine and bias else None)

    def forward(self, input):
        x = input if input.ndim == 4 else input.unsqueeze(0)
        out = F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        return out if input.ndim == 4 else out.squeeze(0)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class CosineSimilarity(Module):
    def __init__(self, dim=1, eps=1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    def __init__(self, p=2.0, eps=1e-6, keepdim=False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1, x2):
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


class ConstantPad2d(Module):
    def __init__(self, padding, value):
        super().__init__()
        self.padding = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        self.value = value

    def forward(self, input):
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self):
        return f"padding={self.padding}, value={self.value}"


class ZeroPad2d(ConstantPad2d):
    def __init__(self, padding):
        super().__init__(padding, 0.0)

    def extra_repr(self):
        return f"{self.padding}"


class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners = align_corners
        if scale_factor is not None:
            self.scale_factor = float(scale_factor) if not isinstance(scale_factor, tuple) \
                else scale_factor

    def forward(self, input):
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self):
        if self.scale_factor is not None:
            return f"scale_factor={self.scale_factor}, mode='{self.mode}'"
        return f"size={self.size}, mode='{self.mode}'"


class DataParallel(Module):
    """Runs `module` as is: tapegrad's eager tensors live on one CPU (no devices to split over)."""

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        self.module, self.dim = module, dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


class _PairLoss(Module):
    _fn = None
    _options = ()

    def __init__(self, *args, reduction="mean", **kwargs):
        super().__init__()
        values = dict(zip(self._options, args))
        values.update(kwargs)
        self.reduction = reduction
        self.options = values

    def forward(self, *inputs):
        return type(self)._fn(*inputs, reduction=self.reduction, **self.options)


def _loss(name, fn, options=()):
    return type(name, (_PairLoss,), {"_fn": fn, "_options": options, "__module__": __name__})


MarginRankingLoss = _loss("MarginRankingLoss", F.margin_ranking_loss, ("margin",))
SoftMarginLoss = _loss("SoftMarginLoss", F.soft_margin_loss)
CosineEmbeddingLoss = _loss("CosineEmbeddingLoss", F.cosine_embedding_loss, ("margin",))
TripletMarginLoss = _loss("TripletMarginLoss", F.triplet_margin_loss, ("margin", "p", "eps",
                                                                      "swap"))
PoissonNLLLoss = _loss("PoissonNLLLoss", F.poisson_nll_loss, ("log_input", "full", "eps"))
GaussianNLLLoss = _loss("GaussianNLLLoss", F.gaussian_nll_loss, ("full", "eps"))


class MultiheadAttention(Module):
    """PyTorch's parameters (in_proj_weight, out_proj), shapes (batch_first or not) and
    averaged attention weights."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False, device=None,
                 dtype=None):
        super().__init__()
        if add_bias_kv or add_zero_attn or (kdim not in (None, embed_dim)) or \
                (vdim not in (None, embed_dim)):
            raise NotImplementedError("MultiheadAttention: add_bias_kv, add_zero_attn and "
                                      "kdim/vdim other than embed_dim are not supported")
        if embed_dim % num_heads:
            raise AssertionError("embed_dim must be divisible by num_heads")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.batch_first, self.head_dim = batch_first, embed_dim // num_heads
        self.in_proj_weight = Parameter(_f.empty(3 * embed_dim, embed_dim, dtype=dtype))
        self.register_parameter("in_proj_bias", Parameter(_f.zeros(3 * embed_dim, dtype=dtype))
                                if bias else None)
        from .linear import Linear
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        init.xavier_uniform_(self.in_proj_weight)
        if bias:
            init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True, is_causal=False):
        batched = query.ndim == 3
        if not batched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        lq, n, e = query.shape
        lk = key.shape[0]
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else \
            (None,) * 3
        h, d = self.num_heads, self.head_dim

        def heads(x, w, b, length):   # (L, N, E) -> (N, H, L, D)
            return F.linear(x, w, b).reshape(length, n, h, d).permute(1, 2, 0, 3)
        q, k, v = heads(query, w_q, b_q, lq), heads(key, w_k, b_k, lk), heads(value, w_v, b_v, lk)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
        if attn_mask is not None:
            scores = _masked(scores, attn_mask)
        if key_padding_mask is not None:
            scores = _masked(scores, key_padding_mask.reshape(n, 1, 1, lk))
        weights = F.softmax(scores, -1)
        if self.dropout and self.training:
            weights = F.dropout(weights, self.dropout)
        out = (weights @ v).permute(2, 0, 1, 3).reshape(lq, n, e)
        out = self.out_proj(out)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        if not batched:
            out, weights = out.squeeze(1), weights.squeeze(0)
        if not need_weights:
            return out, None
        return out, (weights.mean(-3) if average_attn_weights else weights)


def _masked(scores, mask):
    import numpy as np
    from ... import primitives as P
    if mask.dtype.name == "bool":   # PyTorch's boolean masks: True means "not allowed"
        return P.where(mask, -np.inf, scores)
    return scores + mask


class TransformerEncoderLayer(Module):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 device=None, dtype=None):
        super().__init__()
        from .linear import Linear
        from .normalization import LayerNorm
        from .sparse import Dropout
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                            batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = F.gelu if activation == "gelu" else \
            F.relu if activation == "relu" else activation

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask))
        return self.norm2(x + self._ff(x))

    def _sa(self, x, mask, padding):
        return self.dropout1(self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=padding,
                                            need_weights=False)[0])

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoder(Module):
    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True,
                 mask_check=True):
        super().__init__()
        import copy
        from .container import ModuleList
        self.layers = ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.num_layers, self.norm = num_layers, norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return out if self.norm is None else self.norm(out)
