"""Output: the terminal table, results.json and chart.png."""
import json
import math

from .machine import summary

STATUS_ORDER = {"ok": 0, "FAILED": 1, "error": 2, "skipped": 3}


def fmt_time(seconds):
    if seconds is None:
        return ""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _row(r):
    ok = r["status"] == "ok"
    spread = f"{fmt_time(r['q1_s'])} - {fmt_time(r['q3_s'])}" if ok else ""
    ratio = f"{r['ratio']:.3g}x" if "ratio" in r else ""
    return (r["impl"], r["status"], fmt_time(r.get("median_s")), spread,
            fmt_time(r.get("min_s")), ratio, fmt_time(r.get("first_call_s")), r.get("note", ""))


def _sorted(results):
    return sorted(results, key=lambda r: (STATUS_ORDER[r["status"]], r.get("median_s", 0)))


def table(entry, brief=False):
    """One workload's table as text; brief: the implementations that ran, and one line naming
    those that did not."""
    lines = [f"== {entry['name']}: {entry['title']} ({entry['size']}, {entry['dtype']})"]
    if entry["status"] != "ok":
        return "\n".join(lines + [f"   {'not run' if brief else 'skipped'}: {entry['note']}"])
    lines.append(f"   yardstick: {entry['yardstick'] or 'none ran'}; target: {entry['target']}")
    header = ("implementation", "status", "median", "IQR", "min", "ratio", "1st call", "note")
    shown = [r for r in entry["results"] if not brief or r["status"] != "skipped"]
    rows = [header] + [_row(r) for r in _sorted(shown)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
        lines.append("   " + "  ".join(cells).rstrip())
    for label, value in entry["ratios"].items():
        lines.append(f"   {label}: {value:.3g}")
    lines += ["   " + goal_line(g) for g in entry.get("goals", ())]
    absent = [r["impl"] for r in entry["results"] if r["status"] == "skipped"]
    if brief and absent:
        lines.append(f"   not run here (not installed or not in this mode): {', '.join(absent)}")
    return "\n".join(lines)


def goal_line(goal):
    """'target met: ...', 'target MISSED: ...' or 'target not measured: ...'."""
    verdict = {True: "met", False: "MISSED", None: "not measured"}[goal["met"]]
    unit = "s" if goal["what"].endswith("(s)") else "x"
    value = "" if goal["value"] is None else f"{goal['value']:.3g}{unit} "
    what = goal["what"].replace(" (s)", "")
    return f"target {verdict}: {goal['impl']} {what} {value}(<= {goal['limit']:g}{unit})"


def goals_summary(report):
    """The last lines of the report: every missed target, or that all measured ones were met."""
    goals = [(e["name"], g) for e in report["workloads"] for g in e.get("goals", ())]
    missed = [f"  {name}: {goal_line(g)}" for name, g in goals if g["met"] is False]
    met = sum(g["met"] is True for _, g in goals)
    caveat = (" (quick mode: small sizes and few samples, so a ratio here only hints at a full "
              "run's)" if report["mode"] == "quick" else "")
    if not missed:
        return f"targets: {met} met, none missed{caveat}."
    return "\n".join([f"targets: {met} met, {len(missed)} MISSED{caveat}:"] + missed)


def text_report(report, brief=False):
    head = [f"tapegrad benchmarks ({report['mode']} mode), {report['created']}",
            "machine: " + summary(report["machine"]),
            "median per call of value+grad (IQR and min over samples; a wide IQR means other "
            "work shared the machine);\nratio = median / the workload's yardstick in this run; "
            "1st call = the first call alone (tracing and compiling "
            "happen there; imports and setup do not)."]
    return "\n\n".join(["\n".join(head)] + [table(e, brief) for e in report["workloads"]]
                       + [goals_summary(report)])


def markdown(report):
    """The results as Markdown tables (for a README), ok rows only, fastest first."""
    parts = [f"Machine: {summary(report['machine'])}."]
    for entry in report["workloads"]:
        rows = [_row(r) for r in _sorted(entry["results"]) if r["status"] == "ok"]
        if not rows:
            continue
        lines = [f"**{entry['name']}** ({entry['size']}, {entry['dtype']}; "
                 f"ratio to {entry['yardstick']})", "",
                 "| implementation | median | IQR | min | ratio | 1st call |",
                 "| --- | --- | --- | --- | --- | --- |"]
        # _row's columns without status and note
        lines += ["| " + " | ".join((row[0],) + row[2:7]) + " |" for row in rows]
        goals = [goal_line(g) for g in entry.get("goals", ())]
        lines += [""] + [f"- {g}" for g in goals] if goals else []
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_json(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=2, default=float)


GROUP_COLOURS = {"tapegrad": "tab:blue", "peer": "tab:orange", "hand-written": "tab:gray"}


def write_chart(report, path):
    """Bars of the ratio to the yardstick per workload, log scale; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = []
    for entry in report["workloads"]:
        rows = [r for r in _sorted(entry.get("results", [])) if "ratio" in r]
        if rows:
            panels.append((entry, rows))
    if not panels:
        return False
    heights = [len(rows) + 1.5 for _, rows in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 0.28 * sum(heights) + 1),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (entry, rows) in zip(axes[:, 0], panels):
        ratios = [r["ratio"] for r in rows]
        # Bars start at the left edge, a decade below the smallest ratio, so 1.0x shows too.
        left = 10 ** math.floor(math.log10(min(ratios + [1.0])) - 0.3)
        right = 10 ** math.ceil(math.log10(max(ratios + [1.0])) + 0.3)
        ax.barh(range(len(rows)), [r - left for r in ratios], left=left,
                color=[GROUP_COLOURS[r["group"]] for r in rows])
        for i, ratio in enumerate(ratios):
            ax.text(ratio * 1.1, i, f"{ratio:.3g}x", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), [r["impl"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(left, right)
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_title(f"{entry['name']} ({entry['size']}): time / {entry['yardstick']}",
                     fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLOURS.values()]
    fig.legend(handles, list(GROUP_COLOURS), loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
