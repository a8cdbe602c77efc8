"""tapegrad._tensor_str prints tensors exactly as PyTorch does.

Golden strings (from seed/expected_output_torch.txt and torch 2.x) run
without torch; the table-driven comparisons against ``repr(torch.Tensor)``
skip when torch is not installed.
"""

from pathlib import Path

import numpy as np
import pytest

from tapegrad import _tensor_str
from tapegrad._tensor_str import (
    PRINT_OPTS,
    format_tensor,
    get_printoptions,
    printoptions,
    set_printoptions,
)

FLOATS = (np.float32, np.float64, np.float16)
INTS = (np.int64, np.int32, np.int16, np.int8, np.uint8)


@pytest.fixture(autouse=True)
def _default_print_options():
    """Each test starts and ends with default options (ours and torch's)."""
    set_printoptions(profile="default")
    yield
    set_printoptions(profile="default")
    torch = _torch_or_none()
    if torch is not None:
        torch.set_printoptions(profile="default")


def _torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---------------------------------------------------------------- golden ---

GOLDEN = [
    # From seed/expected_output_torch.txt.
    (np.ones((2, 2), np.float32), dict(requires_grad=True),
     "tensor([[1., 1.],\n        [1., 1.]], requires_grad=True)"),
    (np.full((2, 2), 3, np.float32), dict(grad_fn_name="AddBackward0"),
     "tensor([[3., 3.],\n        [3., 3.]], grad_fn=<AddBackward0>)"),
    (np.full((2, 2), 27, np.float32), dict(grad_fn_name="MulBackward0"),
     "tensor([[27., 27.],\n        [27., 27.]], grad_fn=<MulBackward0>)"),
    (np.array(27, np.float32), dict(grad_fn_name="MeanBackward0"),
     "tensor(27., grad_fn=<MeanBackward0>)"),
    (np.full((2, 2), 4.5, np.float32), {},
     "tensor([[4.5000, 4.5000],\n        [4.5000, 4.5000]])"),
    (np.array([592.0239, -427.5843, -1811.6639], np.float32),
     dict(grad_fn_name="MulBackward0"),
     "tensor([  592.0239,  -427.5843, -1811.6639], grad_fn=<MulBackward0>)"),
    (np.array([204.8, 2048.0, 0.2048], np.float32), {},
     "tensor([2.0480e+02, 2.0480e+03, 2.0480e-01])"),
    (np.array([1.0], np.float32), {}, "tensor([1.])"),
    (np.array([2.0], np.float32), dict(requires_grad=True),
     "tensor([2.], requires_grad=True)"),
    # Checked against torch 2.13.
    (np.array(3), {}, "tensor(3)"),
    (np.array(True), {}, "tensor(True)"),
    (np.array([True, False]), {}, "tensor([ True, False])"),
    (np.array([1, 2], np.int32), {}, "tensor([1, 2], dtype=torch.int32)"),
    (np.zeros((0, 3), np.float32), {}, "tensor([], size=(0, 3))"),
    (np.zeros(0, np.float64), {}, "tensor([], dtype=torch.float64)"),
    (np.zeros(0, np.int64), {}, "tensor([], dtype=torch.int64)"),
    (np.array([0.0, np.nan], np.float32), {}, "tensor([0., nan])"),
    (np.array([-0.0], np.float32), {}, "tensor([-0.])"),
    (np.array([np.inf, -np.inf, 1.5], np.float32), {},
     "tensor([   inf,   -inf, 1.5000])"),
    (np.arange(1001), {},
     "tensor([   0,    1,    2,  ...,  998,  999, 1000])"),
    (np.arange(8, dtype=np.float64).reshape(2, 2, 2), {},
     "tensor([[[0., 1.],\n         [2., 3.]],\n\n"
     "        [[4., 5.],\n         [6., 7.]]], dtype=torch.float64)"),
]


@pytest.mark.parametrize("values, kwargs, expected", GOLDEN)
def test_golden(values, kwargs, expected):
    assert format_tensor(values, **kwargs) == expected


def test_long_row_wraps_at_linewidth():
    assert format_tensor(np.arange(30, dtype=np.float32)) == (
        "tensor([ 0.,  1.,  2.,  3.,  4.,  5.,  6.,  7.,  8.,  9., 10., 11., "
        "12., 13.,\n"
        "        14., 15., 16., 17., 18., 19., 20., 21., 22., 23., 24., 25., "
        "26., 27.,\n"
        "        28., 29.])"
    )


def test_printoptions_context_restores():
    before = get_printoptions()
    with printoptions(precision=2, sci_mode=True):
        assert PRINT_OPTS.precision == 2
        text = format_tensor(np.array([1.5], np.float32))
        assert text == "tensor([1.50e+00])"
    assert get_printoptions() == before


def test_set_printoptions_profiles():
    set_printoptions(profile="short")
    assert (PRINT_OPTS.precision, PRINT_OPTS.edgeitems) == (2, 2)
    set_printoptions(profile="full")
    assert PRINT_OPTS.threshold == float("inf")
    set_printoptions(profile="default", precision=6)
    assert (PRINT_OPTS.precision, PRINT_OPTS.threshold) == (6, 1000)


def test_default_dtype_is_unnamed():
    ones64 = np.ones(2, np.float64)
    text = format_tensor(ones64, default_dtype=np.float64)
    assert text == "tensor([1., 1.])"
    assert (format_tensor(np.ones(2, np.float32), default_dtype=np.float64)
            == "tensor([1., 1.], dtype=torch.float32)")


def test_unsupported_dtype_raises():
    with pytest.raises(TypeError):
        format_tensor(np.array([1 + 2j]))


def test_module_imports_no_torch():
    source = Path(_tensor_str.__file__).read_text(encoding="utf-8")
    assert "import torch" not in source


# ------------------------------------------------- comparison with torch ---

@np.errstate(over="ignore")  # float16 overflowing to inf is a wanted case
def _random_cases():
    """(label, array) pairs across dtypes, shapes, magnitudes and sizes."""
    rng = np.random.default_rng(0)
    cases = []
    shapes = [(), (1,), (5,), (3, 4), (2, 3, 4), (2, 2, 2, 3), (1, 1, 1, 1)]
    scales = [1.0, 1e-5, 1e-3, 37.0, 1e4, 1e9]
    for dtype in FLOATS:
        for shape in shapes:
            for scale in scales:
                arr = (rng.standard_normal(shape) * scale).astype(dtype)
                cases.append((f"{np.dtype(dtype)}{shape}x{scale:g}", arr))
            integral = rng.integers(-50, 50, shape).astype(dtype)
            cases.append((f"{np.dtype(dtype)}{shape}int", integral))
            # Mixed magnitudes inside one tensor.
            mixed = (rng.standard_normal(shape)
                     * 10.0 ** rng.integers(-6, 7, shape)).astype(dtype)
            cases.append((f"{np.dtype(dtype)}{shape}mixed", mixed))
    for dtype in INTS:
        info = np.iinfo(dtype)
        for shape in shapes:
            arr = rng.integers(info.min, info.max, shape, dtype=dtype,
                               endpoint=True)
            cases.append((f"{np.dtype(dtype)}{shape}", arr))
            small = rng.integers(0, 10, shape).astype(dtype)
            cases.append((f"{np.dtype(dtype)}{shape}small", small))
    for shape in shapes:
        cases.append((f"bool{shape}", rng.random(shape) < 0.5))
    return cases


def _edge_cases():
    f32 = np.float32
    nan, inf = np.nan, np.inf
    cases = [
        ("nan", np.array([nan], f32)),
        ("all-nonfinite", np.array([nan, inf, -inf], f32)),
        ("nan-with-int", np.array([nan, 1.0, 2.0], f32)),
        ("nan-with-frac", np.array([nan, 1.25, -inf], f32)),
        ("inf-sci", np.array([inf, 1e-7, 3.0], f32)),
        ("zeros", np.zeros((2, 3), f32)),
        ("neg-zero", np.array([0.0, -0.0], f32)),
        ("neg-zero-frac", np.array([-0.0, 0.5], f32)),
        ("neg-zero-sci", np.array([-0.0, 1e-6], f32)),
        ("scalar-neg-zero", np.array(-0.0, f32)),
        ("scalar-nan", np.array(nan, f32)),
        ("scalar-inf", np.array(-inf, np.float64)),
        ("scalar-big", np.array(1e20, f32)),
        ("scalar-tiny", np.array(1e-20, np.float64)),
        ("ratio-just-1000", np.array([1.0, 1000.0], f32)),
        ("ratio-over-1000", np.array([1.0, 1000.5], f32)),
        ("max-1e8", np.array([1e8], np.float64)),
        ("max-over-1e8", np.array([100000008.0], np.float64)),
        ("int-over-1e8", np.array([123456789.0, 1.0], f32)),
        ("min-1e-4", np.array([1e-4, 2e-4], np.float64)),
        ("min-under-1e-4", np.array([9.9999e-5, 2e-4], np.float64)),
        ("rounding", np.array([0.00005, 0.99995, 1.00005], np.float64)),
        ("f64-subnormal", np.array([5e-324, 1.0], np.float64)),
        ("f64-ratio-overflow", np.array([1e300, 1e-300], np.float64)),
        ("f64-huge", np.array([1.7e308, -1.7e308], np.float64)),
        ("f32-subnormal", np.array([1e-45, 0.0], f32)),
        ("f16-max", np.array([65504.0, -65504.0, 1.0], np.float16)),
        ("f16-tiny", np.array([6e-8, 0.5], np.float16)),
        ("f16-frac", np.array([0.1, 0.2, 0.3333], np.float16)),
        ("wide-fixed", np.array([592.0239, -427.5843, -1811.6639], f32)),
        ("int-extremes", np.array([np.iinfo(np.int64).min, 0,
                                   np.iinfo(np.int64).max])),
        ("bool-scalar-false", np.array(False)),
        ("all-true", np.ones((2, 2), bool)),
        # Empty tensors of every rank and dtype kind.
        ("empty-f32", np.zeros(0, f32)),
        ("empty-f16", np.zeros(0, np.float16)),
        ("empty-2d", np.zeros((0, 3), f32)),
        ("empty-3d", np.zeros((2, 0, 3), np.float64)),
        ("empty-int32", np.zeros((3, 0), np.int32)),
        ("empty-bool", np.zeros(0, bool)),
        ("empty-uint8", np.zeros((0,), np.uint8)),
        # Line wrapping.
        ("wrap-f32", np.linspace(-3, 3, 40).astype(f32)),
        ("wrap-f64-sci", np.geomspace(1e-6, 1e6, 25)),
        ("wrap-2d", np.arange(150, dtype=f32).reshape(3, 50) / 7),
        ("wrap-int", np.arange(100, dtype=np.int16)),
        ("wrap-bool", np.arange(60) % 3 == 0),
        ("wrap-4d", np.arange(2 * 2 * 2 * 30).reshape(2, 2, 2, 30)),
        # Summarisation.
        ("sum-1d-1001", np.arange(1001, dtype=f32)),
        ("sum-1d-frac", np.linspace(0, 1, 5000).astype(f32)),
        ("sum-1d-hidden-wide", np.concatenate(
            [np.ones(3), np.full(1000, 1e9), np.ones(3)]).astype(f32)),
        ("sum-2d", np.arange(40 * 40, dtype=np.float64).reshape(40, 40)),
        ("sum-2d-narrow", np.arange(500 * 3).reshape(500, 3)),
        ("sum-2d-short", np.arange(6 * 300, dtype=f32).reshape(6, 300)),
        ("sum-3d", np.arange(1100, dtype=np.int32).reshape(10, 10, 11)),
        ("sum-4d", np.arange(7 ** 4, dtype=f32).reshape(7, 7, 7, 7) / 3),
        ("sum-bool", np.arange(2000) % 2 == 0),
        ("sum-f16", np.linspace(-100, 100, 1200).astype(np.float16)),
        ("sum-nan", np.where(np.arange(1500) % 2, np.nan, 1.5).astype(f32)),
    ]
    return cases


TORCH_CASES = _edge_cases() + _random_cases()


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("label, arr", TORCH_CASES,
                         ids=[label for label, _ in TORCH_CASES])
def test_matches_torch(torch, label, arr):
    assert format_tensor(arr) == repr(torch.from_numpy(np.array(arr)))


FLOAT_CASES = [(label, arr) for label, arr in TORCH_CASES
               if arr.dtype.kind == "f" and arr.size <= 200]


@pytest.mark.parametrize("label, arr", FLOAT_CASES[::3],
                         ids=[label for label, _ in FLOAT_CASES[::3]])
def test_autograd_suffixes_match_torch(torch, label, arr):
    leaf = torch.from_numpy(np.array(arr)).requires_grad_()
    assert format_tensor(arr, requires_grad=True) == repr(leaf)
    product = leaf * 1
    name = type(product.grad_fn).__name__
    assert name == "MulBackward0"
    assert format_tensor(arr, grad_fn_name=name) == repr(product)
    # grad_fn takes precedence over requires_grad.
    assert format_tensor(arr, requires_grad=True, grad_fn_name=name) == repr(
        product)


@pytest.mark.parametrize("n", [6, 7, 8, 9, 10, 11, 12, 13])
def test_suffix_line_break_matches_torch(torch, n):
    # Rows whose last line ends just before/after the 80-column limit.
    arr = np.linspace(-1, 1, n) * 1000.0
    leaf = torch.from_numpy(arr.copy()).requires_grad_()
    assert format_tensor(arr, grad_fn_name="MulBackward0") == repr(leaf * 1)
    assert format_tensor(arr, requires_grad=True) == repr(leaf)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64])
def test_default_dtype_float64_matches_torch(torch, dtype):
    arr = np.arange(4).astype(dtype)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for values in (arr, arr.astype(np.float64), arr[:0]):
            expected = repr(torch.from_numpy(values.copy()))
            assert format_tensor(values, default_dtype=np.float64) == expected
    finally:
        torch.set_default_dtype(previous)


OPTION_SETS = [
    dict(precision=2),
    dict(precision=7),
    dict(precision=0),
    dict(threshold=5),
    dict(threshold=0),
    dict(edgeitems=1, threshold=10),
    dict(edgeitems=0, threshold=10),
    dict(linewidth=40),
    dict(linewidth=5),
    dict(sci_mode=True),
    dict(sci_mode=False),
    dict(profile="short"),
    dict(profile="full"),
]
OPTION_ARRAYS = [
    np.array(2.5, np.float32),
    np.array([0.0, 0.0], np.float32),
    np.array([1.0, 2.0, -3.0], np.float32),
    np.array([1e-6, 3.14159, 2e5], np.float64),
    np.linspace(-5, 5, 23).astype(np.float32),
    np.arange(24, dtype=np.int32).reshape(2, 3, 4),
    np.arange(2000, dtype=np.float32).reshape(40, 50) / 9,
    np.arange(12) % 2 == 1,
    np.zeros((0, 2), np.float32),
]


@pytest.mark.parametrize("options", OPTION_SETS, ids=str)
def test_print_options_match_torch(torch, options):
    set_printoptions(**options)
    torch.set_printoptions(**options)
    for arr in OPTION_ARRAYS:
        expected = repr(torch.from_numpy(arr.copy()))
        assert format_tensor(arr) == expected, arr
    assert get_printoptions() == torch._tensor_str.get_printoptions()


def test_uint_wide_dtypes_match_torch(torch):
    for dtype in (np.uint16, np.uint32, np.uint64):
        info = np.iinfo(dtype)
        for arr in (np.array([0, 1, info.max], dtype), np.zeros(0, dtype),
                    np.array(7, dtype)):
            assert format_tensor(arr) == repr(torch.from_numpy(arr.copy()))
