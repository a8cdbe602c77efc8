"""`tapegrad grad-source FILE.py:FUNC [--argnums ...] [--kinds ...] [--arg ...]`: print
derivative code.

Argument kinds (float scalar, 1-d float array, ...) come from --kinds, else from the --arg
values, else they are guessed: float scalars, then 1-d float arrays if scalars cannot work.
"""
import inspect
import sys

from .emit import emit
from .errors import TransformError
from .kinds import FLOAT, Kind, kind_of_value, parse_kind


def add_arguments(parser):
    """The options of `tapegrad grad-source`."""
    from ..cli import add_target_arguments
    add_target_arguments(parser)
    parser.add_argument("--argnums", type=int, nargs="+", default=[0], metavar="N",
                        help="positions of the arguments to differentiate (default: 0)")
    parser.add_argument("--kinds", default=None,
                        help="comma-separated argument kinds: float, int, bool, array (= float1d), "
                             "float2d, int1d, ... (default: the kinds of the --arg values, else "
                             "float scalars, else 1-d float arrays)")
    parser.add_argument("--value", action="store_true",
                        help="emit value_and_grad (returns the value too)")


def _kinds(args, n_params):
    """(kinds to try in order, whether they were guessed)."""
    from ..cli import UserError, parse_values
    if args.kinds:
        try:
            kinds = tuple(parse_kind(k) for k in args.kinds.split(","))
        except ValueError as exc:
            raise UserError(f"--kinds {args.kinds}: {exc}") from None
        if len(kinds) != n_params:
            raise UserError(f"--kinds gives {len(kinds)} kinds for {n_params} arguments: give "
                            f"one per argument, comma-separated")
        return [kinds], False
    if args.arg:
        values = parse_values(args.arg)
        kinds = []
        for i, value in enumerate(values):
            kind = kind_of_value(value)
            if kind is None:
                raise UserError(f"--arg {args.arg[i]!r} is a {type(value).__name__}: give a "
                                f"number or a NumPy array, or pass --kinds")
            kinds.append(kind)
        kinds += [FLOAT] * (n_params - len(kinds))
        return [tuple(kinds)], False
    return [(FLOAT,) * n_params, (Kind("float", 1),) * n_params], True


def grad_source_run(args):
    """Run `tapegrad grad-source` on parsed arguments; exit status."""
    from ..cli import load_function
    fun = load_function(args.target)
    n_params = len(inspect.signature(fun).parameters)
    argnums = args.argnums[0] if len(args.argnums) == 1 else tuple(args.argnums)
    mode = "value_and_grad" if args.value else "grad"
    candidates, guessed = _kinds(args, n_params)
    errors = []
    for kinds in candidates:
        try:
            source = emit(fun, argnums, kinds, mode).source
        except TransformError as exc:
            errors.append(exc)
            continue
        first_error = errors[0] if errors else None
        if guessed and kinds != candidates[0]:
            print(f"tapegrad grad-source: note: float scalars do not fit {fun.__name__} "
                  f"({first_error}); every argument is taken as a 1-d float array here. Pass "
                  f"--kinds or --arg to choose.", file=sys.stderr)
        print(source, end="")
        return 0
    # the hint only where the kinds made a difference (not for a construct refused either way)
    hint = (" (every argument was taken as a float scalar, then as a 1-d float array: pass "
            "--kinds, e.g. --kinds array,float, or --arg values such as --arg \"np.ones(3)\")"
            if guessed and len({str(e) for e in errors}) > 1 else "")
    print(f"tapegrad grad-source: {errors[0]}{hint}", file=sys.stderr)
    return 1
