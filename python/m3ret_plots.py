#!/usr/bin/env python3
"""Draws the charts of an m3ret sweep report as PNG files with matplotlib.

    python3 m3ret_plots.py PLOT_DATA.json OUT_DIR

`m3ret orchestrate` writes PLOT_DATA.json (format "m3ret-plot-data" 1: every
number is computed there) and runs this script after each change of it; the
script only draws. Each entry of "plots" becomes OUT_DIR/<file>:

    {"file": "recall_vs_step.png", "title": "...", "x_label": "...", "y_label": "...",
     "x_scale": "log" | "linear", "integer_x": bool,
     "x_ticks": [{"x": 0.5, "label": "0.5"}, ...],      # optional: ticks at these x only
     "series": [{"label": "...", "points": [{"x", "y", "lo", "hi", "n"}, ...]}]}

`lo`/`hi` are drawn as error bars when a point aggregates several runs (n > 1).
Prints the files written, one per line. Exit codes: 0 drawn, 2 bad input,
3 matplotlib is not installed (the reason is the one line on stderr).
"""
import json
import os
import sys

FORMAT = "m3ret-plot-data"
VERSION = 1


def fail(code, message):
    print(message, file=sys.stderr)
    sys.exit(code)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        fail(2, f"m3ret_plots: cannot read '{path}': {e}")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        fail(2, f"m3ret_plots: '{path}' is not {FORMAT} version {VERSION}")
    return data


def figure(plt, ticker, plot):
    """The figure of one entry of "plots" (not yet saved) and its axes."""
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100, layout="constrained")
    # Lines that coincide stay visible: each later series has another marker
    # and dash pattern, smaller (every other one hollow) markers drawn over the earlier ones.
    markers, dashes = "osD^vPX*", ["-", "--", "-.", ":"]
    for i, s in enumerate(plot["series"]):
        pts = sorted(s["points"], key=lambda p: p["x"])
        if not pts:
            continue
        xs = [p["x"] for p in pts]
        ys = [p["y"] for p in pts]
        bars = any(p.get("n", 1) > 1 for p in pts)
        yerr = [[p["y"] - p.get("lo", p["y"]) for p in pts], [p.get("hi", p["y"]) - p["y"] for p in pts]]
        emphasis = s.get("emphasis", False)
        ax.errorbar(xs, ys, yerr=yerr if bars else None, label=s["label"],
                    marker=markers[i % len(markers)], markersize=7 if emphasis else max(4, 9 - 1.5 * i),
                    markerfacecolor="white" if i % 2 and not emphasis else None,
                    linestyle="-" if emphasis else dashes[i % len(dashes)],
                    linewidth=2.4 if emphasis else 1.5, capsize=4 if bars else 0)
    ax.set_xscale(plot.get("x_scale", "linear"))
    ticks = plot.get("x_ticks")
    if ticks:
        ax.set_xticks([t["x"] for t in ticks], [t["label"] for t in ticks])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        if plot.get("x_scale") == "log" and len(ticks) > 0:
            lo, hi = min(t["x"] for t in ticks), max(t["x"] for t in ticks)
            ax.set_xlim(lo / 1.25, hi * 1.25)
    elif plot.get("integer_x"):
        steps = sorted({p["x"] for s in plot["series"] for p in s["points"]})
        if 0 < len(steps) <= 12:
            ax.set_xticks(steps, [f"{x:.0f}" for x in steps])  # every evaluated step
        else:
            ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    top = ax.get_ylim()[1]
    ax.set_ylim(bottom=-0.03 * top, top=top)  # points at 0 are not cut in half by the axis
    ax.set_title(plot["title"])
    ax.set_xlabel(plot["x_label"])
    ax.set_ylabel(plot["y_label"])
    ax.grid(True, alpha=0.3)
    if ax.lines:
        title = plot.get("legend_title") or None
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  title_fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no evaluations yet", transform=ax.transAxes, ha="center",
                va="center", color="gray")
    if plot.get("note"):  # below the x label; the layout makes room for it
        ax.annotate(plot["note"], xy=(0, 0), xycoords=("axes fraction", ax.xaxis.label), xytext=(0, -4),
                    textcoords="offset points", ha="left", va="top", fontsize="small",
                    color="dimgray")
    return fig, ax


def draw(plt, ticker, plot, out_dir):
    fig, _ = figure(plt, ticker, plot)
    out = os.path.join(out_dir, plot["file"])
    tmp = out + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def main(argv):
    if len(argv) != 3:
        fail(2, "usage: m3ret_plots.py PLOT_DATA.json OUT_DIR")
    data = load(argv[1])
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError as e:
        fail(3, f"matplotlib is not installed for {sys.executable} ({e}; Debian: python3-matplotlib)")
    for plot in data["plots"]:
        print(draw(plt, ticker, plot, argv[2]))


if __name__ == "__main__":
    main(sys.argv)
