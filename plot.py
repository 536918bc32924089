"""Training curves of one or several nanoAZR runs, from their metrics.jsonl, in one PNG.

    python plot.py runs/paper runs/no_propose --out curves.png
    python plot.py runs/a runs/b --out curves.png --keys 'solve/*/accuracy' 'propose/*/reward' --smooth 0.9

azr.py writes one JSON object per step to RUN_DIR/metrics.jsonl: "step" plus keys such as
"propose/deduction/reward", "solve/abduction/accuracy", "solve/induction/response_len", "time/<phase>",
"tokens_per_s". Panels are grouped by metric name: every "{role}/{task}/{metric}" key lands in the panel `metric`
(one line per (role, task) and run), "time/<phase>" keys in the panel "time", any other key in its own panel.
The same series has the same colour in every run and panel (no two series of one panel share one); runs differ by
line style, so two ablations compare at a glance. A series of one point (a run's first step) is drawn as a dot.
"""
import argparse
import fnmatch
import json
import math
import os
import sys
from pathlib import Path

LINESTYLES = ("-", "--", ":", "-.")
# The learning signals come first; throughput and timing panels follow in alphabetical order.
PANEL_ORDER = ("reward", "accuracy", "valid_rate", "response_len")


class PlotError(Exception):
    """Bad input (missing folder, malformed metrics.jsonl, no matching keys); main() prints it as one line."""


def load_metrics(run_dir) -> list:
    """The rows of RUN_DIR/metrics.jsonl (or of the metrics file itself, when given one), in file order. Raises
    PlotError naming the file and line on bad input."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise PlotError(f"run folder {run_dir} does not exist; pass the --out folder of an azr.py run")
    path = run_dir if run_dir.is_file() else run_dir / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{path} not found; is {run_dir} the --out folder of an azr.py run?")
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            # A run that is still writing may leave its last line unfinished (no trailing newline yet): skip that
            # one line so live runs can be plotted; any other bad line is an error.
            if lineno == len(lines) and not text.endswith("\n"):
                print(f"plot.py: warning: {path} line {lineno} is incomplete (run still writing?); skipped",
                      file=sys.stderr)
                continue
            raise PlotError(f"{path} line {lineno}: not valid JSON ({e.msg}); fix or delete that line")
        if not isinstance(row, dict) or not isinstance(row.get("step"), (int, float)):
            raise PlotError(f"{path} line {lineno}: expected a JSON object with a numeric 'step' key")
        rows.append(row)
    if not rows:
        raise PlotError(f"{path} has no metrics yet")
    return rows


def panel_and_label(key: str) -> tuple:
    """Which panel a metric key goes to, and its line label inside that panel."""
    parts = key.split("/")
    if len(parts) == 3:  # role/task/metric: group by metric, one line per (role, task)
        return parts[2], f"{parts[0]}/{parts[1]}"
    if len(parts) == 2:  # time/<phase> and similar families
        return parts[0], parts[1]
    return key, ""


def collect_series(runs: dict, patterns) -> dict:
    """{panel: {(label, run): (steps, values)}} for numeric keys matching any of `patterns` (fnmatch on the key)."""
    panels = {}
    for run, rows in runs.items():
        for row in rows:
            for key, value in row.items():
                if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue  # only numbers are curves (azr.py may log strings such as a phase name)
                if patterns and not any(fnmatch.fnmatchcase(key, p) for p in patterns):
                    continue
                panel, label = panel_and_label(key)
                steps, values = panels.setdefault(panel, {}).setdefault((label, run), ([], []))
                steps.append(row["step"])
                values.append(float(value))
    return panels


def smooth(values: list, weight: float) -> list:
    """Debiased exponential moving average (as TensorBoard's slider); weight 0 returns the values unchanged.
    NaN/inf points are passed through and do not enter the average."""
    if weight <= 0:
        return list(values)
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


def series_colours(panels: dict) -> dict:
    """{label: tab10 index}: one colour per series label in every panel and run, and (up to 10 labels in a panel)
    no two labels of one panel share a colour: each label, in sorted order, takes the first index that no label it
    shares a panel with has taken (a plain i % 10 gave time/learnability and time/update the same colour)."""
    neighbours = {}
    for series in panels.values():
        labels = {label for label, _ in series}
        for label in labels:
            neighbours.setdefault(label, set()).update(labels - {label})
    colours = {}
    for label in sorted(neighbours):
        taken = {colours[n] for n in neighbours[label] if n in colours}
        colours[label] = next((i for i in range(10) if i not in taken), len(colours) % 10)
    return colours


def run_names(run_dirs) -> list:
    """Short legend names: the run folder's name (a metrics file's folder), or the full path when two runs share
    a name."""
    names = [(Path(d).parent if Path(d).is_file() else Path(d)).name or str(d) for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def plot(run_dirs, out, keys=None, smoothing=0.0, title=None) -> str:
    """Draw the curves of `run_dirs` into `out` (written atomically). Returns the output path."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not 0 <= smoothing < 1:
        raise PlotError(f"--smooth must be in [0, 1), got {smoothing}")
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    if not out.name or out.is_dir():
        raise PlotError(f"--out {str(out)!r} names no file; pass an image path such as curves.png")
    from matplotlib.backend_bases import FigureCanvasBase
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise PlotError(f"--out {out}: cannot write .{fmt} images; use one of {', '.join(sorted(supported))}")
    runs = {name: load_metrics(d) for name, d in zip(run_names(run_dirs), run_dirs)}
    panels = collect_series(runs, keys)
    if not panels:
        wanted = " ".join(keys) if keys else "(all)"
        raise PlotError(f"no numeric metric matches --keys {wanted} in {', '.join(map(str, run_dirs))}")

    # One colour per series label (shared across runs and panels), one line style per run.
    colours = {label: plt.get_cmap("tab10")(i) for label, i in series_colours(panels).items()}
    styles = {run: LINESTYLES[i % len(LINESTYLES)] for i, run in enumerate(runs)}

    names = sorted(panels, key=lambda n: (PANEL_ORDER.index(n) if n in PANEL_ORDER else len(PANEL_ORDER), n))
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    # constrained layout leaves room for the suptitle (tight_layout let it overlap the panels' titles)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 3.8 * nrows), squeeze=False, layout="constrained")
    for ax, name in zip(axes.flat, names):
        for (label, run), (steps, values) in sorted(panels[name].items()):
            parts = [p for p in (label, run if len(runs) > 1 else "") if p]
            ax.plot(steps, smooth(values, smoothing), color=colours[label], linestyle=styles[run],
                    linewidth=1.5, label=" | ".join(parts) or name,
                    marker="o" if len(steps) == 1 else None)  # a line through one point draws nothing
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2 if len(panels[name]) > 6 else 1)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    header = title or " vs ".join(runs)
    if smoothing:
        header += f"  (EMA smoothing {smoothing})"
    fig.suptitle(header)

    # Atomic write: a viewer never sees a half-written image.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format=fmt, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)
    return str(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Plot nanoAZR training curves from RUN_DIR/metrics.jsonl.",
                                 allow_abbrev=False)  # a misspelled flag is an error, never another flag
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                    help="azr.py --out folders to compare (or their metrics.jsonl files)")
    ap.add_argument("--out", default="curves.png", help="output image (png; the suffix picks the format)")
    ap.add_argument("--keys", nargs="+", default=None,
                    help="metric keys or fnmatch patterns to draw, e.g. 'solve/*/accuracy' '*/reward' (default: all)")
    ap.add_argument("--smooth", type=float, default=0.0, help="EMA weight in [0, 1); 0 = raw curves, 0.9 = smooth")
    ap.add_argument("--title", default=None, help="figure title (default: the run names)")
    args = ap.parse_args(argv)
    try:
        path = plot(args.run_dirs, args.out, keys=args.keys, smoothing=args.smooth, title=args.title)
    except PlotError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
