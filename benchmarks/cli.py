"""`python -m benchmarks` and `tapegrad bench`: run the workloads, print and save the results."""
import argparse
import dataclasses
import datetime
import os
import sys

from . import report as out
from .harness import FULL, NOT_AVAILABLE, QUICK, add_ratios, check_goals, measure_impl
from .machine import describe
from .workloads import WORKLOADS


DESCRIPTION = ("Compare tapegrad's faces with PyTorch, JAX, HIPS autograd, tangent-ad, finite "
               "differences and hand-written gradients; every result is checked first.")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION)
    add_arguments(parser)
    return parser.parse_args(argv)


def add_arguments(parser):
    """The options of `python -m benchmarks`, also those of `tapegrad bench`."""
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, few repeats (about 10 s; the CI smoke test)")
    parser.add_argument("--out", default="bench-results", metavar="DIR",
                        help="where results.json, results.md and chart.png go "
                             "(default: bench-results/)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run these workloads only (a name or its prefix, e.g. scalar_graph)")
    parser.add_argument("--slow", action="store_true",
                        help="also run what takes minutes (JAX compiling the 1k-op scalar graph)")
    parser.add_argument("--list", action="store_true", help="list workloads and implementations")
    parser.add_argument("--brief", action="store_true",
                        help="tables of the implementations that ran only (results.json keeps all)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any implementation FAILED or crashed")


def select(names):
    if not names:
        return list(WORKLOADS)
    chosen = [w for w in WORKLOADS if any(w.name.startswith(n) for n in names)]
    if not chosen:
        known = ", ".join(w.name for w in WORKLOADS)
        raise SystemExit(f"no workload matches {' '.join(names)}; known: {known}")
    return chosen


class Progress:
    """tqdm on a terminal when installed, else one line per implementation on stderr."""

    def __init__(self, total):
        self.bar = None
        if sys.stderr.isatty():         # a bar redrawn into a CI log is noise
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=total, unit="impl", file=sys.stderr, dynamic_ncols=True)
            except ImportError:
                pass
        self.total, self.done = total, 0

    def start(self, what):
        if self.bar is not None:
            self.bar.set_description(what)
        else:
            print(f"[{self.done + 1}/{self.total}] {what}", file=sys.stderr, flush=True)

    def advance(self, n=1):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def run_workload(workload, settings, progress):
    size = workload.sizes["quick" if settings.quick else "full"]
    entry = dict(name=workload.name, title=workload.title, dtype=workload.dtype,
                 target=workload.target, size=str(size), status="ok", note="",
                 yardstick=None, results=[], ratios={})
    progress.start(f"{workload.name}: building")
    try:
        problem = workload.build(size)
    except NOT_AVAILABLE as exc:
        progress.advance(len(workload.impls))
        return dict(entry, status="skipped", note=str(exc))
    entry["size"] = problem.size
    for impl in workload.impls:
        progress.start(f"{workload.name}: {impl.name}")
        entry["results"].append(measure_impl(impl, problem, workload, settings))
        progress.advance()
    entry["yardstick"] = add_ratios(entry["results"], workload.yardsticks)
    entry["goals"] = check_goals(workload.goals, entry["results"], workload.yardsticks)
    times = {r["impl"]: r["median_s"] for r in entry["results"] if r["status"] == "ok"}
    for label, num, den in workload.ratios:
        if num in times and den in times:
            entry["ratios"][label] = times[num] / times[den]
    return entry


def list_workloads():
    for w in WORKLOADS:
        print(f"{w.name}: {w.title} (full {w.sizes['full']}, quick {w.sizes['quick']})")
        for impl in w.impls:
            level = "" if impl.runs_in == "quick" else f", {impl.runs_in} only"
            print(f"    {impl.name} [{impl.group}{level}]")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parse_args(argv), argv)


def run(args, argv):
    """Run the benchmarks `args` (parsed by add_arguments' options) ask for."""
    if args.list:
        list_workloads()
        return 0
    settings = QUICK if args.quick else FULL
    if args.slow:
        settings = dataclasses.replace(settings, level="slow")
    workloads = select(args.only)
    report = dict(schema=1, mode="quick" if args.quick else "full",
                  created=datetime.datetime.now().isoformat(timespec="seconds"),
                  argv=argv, machine=describe(), settings=vars(settings),
                  workloads=[])
    progress = Progress(sum(len(w.impls) for w in workloads))
    try:
        for workload in workloads:
            report["workloads"].append(run_workload(workload, settings, progress))
    finally:
        progress.close()
    print(out.text_report(report, brief=args.brief))
    os.makedirs(args.out, exist_ok=True)
    out.write_json(report, os.path.join(args.out, "results.json"))
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(out.markdown(report))
    charted = out.write_chart(report, os.path.join(args.out, "chart.png"))
    print(f"\nwrote {os.path.join(args.out, 'results.json')}, results.md"
          + (" and chart.png" if charted else " (no chart: matplotlib missing or nothing ran)"))
    bad = [r for e in report["workloads"] for r in e["results"]
           if r["status"] in ("FAILED", "error")]
    return 1 if args.strict and bad else 0
