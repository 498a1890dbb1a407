#!/usr/bin/env python3
"""What m3ret_plots.py draws from plot_data.json: the axis scale, the ticks, a
legend entry per series, error bars where a point aggregates several runs.

    python3 test_m3ret_plots.py      (exit 77 = skipped: no matplotlib)

Run by CTest as plots.draw; the data side (which axes, which points) is tested
in tests/launcher (Report.*, ReportAbsent.*).
"""
import json
import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker
    from matplotlib.container import ErrorbarContainer
except ImportError as e:
    print(f"skipped: no matplotlib for {sys.executable} ({e}; Debian: python3-matplotlib)")
    sys.exit(77)

import m3ret_plots  # noqa: E402


def point(x, y, lo=None, hi=None, n=1):
    return {"x": x, "y": y, "lo": y if lo is None else lo, "hi": y if hi is None else hi, "n": n}


MODEL_SIZE = {
    "file": "recall_vs_model_size.png", "title": "recall@1 vs model size",
    "x_label": "encoder parameters (log scale)", "y_label": "recall@1", "x_scale": "log",
    "integer_x": False, "legend_title": "data_fraction",
    "x_ticks": [{"x": 5.5e6, "label": "5.5M\ntiny"}, {"x": 21.7e6, "label": "21.7M\nsmall"}],
    "series": [
        {"label": "data_fraction=0.25",
         "points": [point(5.5e6, 0.30, 0.25, 0.35, 2), point(21.7e6, 0.40, 0.38, 0.42, 2)]},
        {"label": "data_fraction=1", "points": [point(5.5e6, 0.50), point(21.7e6, 0.60)]},
    ],
}


def steps_plot(steps):
    return {"file": "recall_vs_step.png", "title": "mean recall@1 vs training step",
            "x_label": "training step", "y_label": "recall@1", "x_scale": "linear",
            "integer_x": True, "legend_title": "",
            "series": [{"label": "mean over modalities",
                        "points": [point(s, 0.1 + 0.001 * s) for s in steps]}]}


class Draw(unittest.TestCase):
    def tearDown(self):
        plt.close("all")

    def test_log_axis_ticks_legend_and_error_bars_over_seeds(self):
        _, ax = m3ret_plots.figure(plt, ticker, MODEL_SIZE)
        self.assertEqual(ax.get_xscale(), "log")
        self.assertEqual([t.get_text() for t in ax.get_xticklabels()], ["5.5M\ntiny", "21.7M\nsmall"])
        self.assertEqual(list(ax.get_xticks()), [5.5e6, 21.7e6])
        legend = ax.get_legend()
        self.assertEqual([t.get_text() for t in legend.get_texts()],
                         ["data_fraction=0.25", "data_fraction=1"])
        self.assertEqual(legend.get_title().get_text(), "data_fraction")
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        self.assertEqual([c.has_yerr for c in bars], [True, False])  # seeds only in the first
        segments = bars[0].lines[2][0].get_segments()
        self.assertEqual([(s[0][1], s[1][1]) for s in segments], [(0.25, 0.35), (0.38, 0.42)])

    def test_steps_are_integer_ticks(self):
        _, ax = m3ret_plots.figure(plt, ticker, steps_plot([10, 20, 30]))
        self.assertEqual(ax.get_xscale(), "linear")
        self.assertEqual([t.get_text() for t in ax.get_xticklabels()], ["10", "20", "30"])
        _, ax = m3ret_plots.figure(plt, ticker, steps_plot(range(7, 500, 7)))
        ax.figure.canvas.draw()
        ticks = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
        self.assertGreater(len(ticks), 1)
        self.assertTrue(all(float(x).is_integer() for x in ticks), ticks)

    def test_no_points_says_so(self):
        plot = dict(steps_plot([]), series=[])
        _, ax = m3ret_plots.figure(plt, ticker, plot)
        self.assertIsNone(ax.get_legend())
        self.assertEqual([t.get_text() for t in ax.texts], ["no evaluations yet"])

    def test_main_writes_each_chart_as_an_800_by_480_png(self):
        with tempfile.TemporaryDirectory() as d:
            data = {"format": "m3ret-plot-data", "version": 1,
                    "plots": [MODEL_SIZE, steps_plot([10, 20])]}
            with open(os.path.join(d, "plot_data.json"), "w", encoding="utf-8") as f:
                json.dump(data, f)
            m3ret_plots.main(["m3ret_plots.py", os.path.join(d, "plot_data.json"), d])
            for name in ("recall_vs_model_size.png", "recall_vs_step.png"):
                with open(os.path.join(d, name), "rb") as f:
                    head = f.read(24)
                self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
                self.assertEqual(struct.unpack(">II", head[16:24]), (800, 480))
            self.assertEqual(sorted(os.listdir(d)),
                             ["plot_data.json", "recall_vs_model_size.png", "recall_vs_step.png"])


if __name__ == "__main__":
    unittest.main()
