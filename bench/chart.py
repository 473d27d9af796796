"""The PNG: pyginx/nginx ratio per scenario against its target, and the access log's cost per server."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from report import Summary

GOOD, BAD, NGINX = "#2e7d32", "#c62828", "#757575"


def ratio_target(summary: Summary) -> float:
    """The target as a ratio to nginx; the memory target is absolute, so it is scaled by nginx's figure."""
    if summary.unit == "KiB":
        return summary.limit / summary.nginx if summary.nginx else math.nan
    return summary.limit if summary.limit > 0 else math.nan  # 0: a reference row (ceiling), no target


def draw(summaries: list[Summary], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display here; and pyplot must not pick an interactive backend
    import matplotlib.pyplot as plt

    ratios = [s for s in summaries if s.unit != "%"]
    logs = [s for s in summaries if s.unit == "%"]
    widths = [max(len(ratios), 1) * 1.2, 2.2] if logs else [1.0]
    size = (max(6.5, 1.5 + sum(widths)), 4.8)
    fig, axes = plt.subplots(
        1, len(widths), figsize=size, gridspec_kw={"width_ratios": widths}, squeeze=False
    )
    if ratios:
        draw_ratios(axes[0][0], ratios)
    else:
        axes[0][0].axis("off")
    if logs:
        draw_log_cost(axes[0][-1], logs[0])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_ratios(ax: Any, summaries: list[Summary]) -> None:
    """Bars grow from parity (1.0) on a log scale, so that 2x and 0.5x look equally far from nginx."""
    labels = [
        f"{s.name}\n{s.measure}" + ("\n(lower is better)" if not s.higher_is_better else "")
        for s in summaries
    ]
    values = [s.ratio if s.ratio > 0 else math.nan for s in summaries]
    xs = list(range(len(summaries)))
    heights = [v - 1.0 for v in values]
    ax.bar(xs, heights, bottom=1.0, color=[GOOD if s.met else BAD for s in summaries], width=0.6)
    for x, s, v in zip(xs, summaries, values, strict=True):
        if not math.isnan(ratio_target(s)):
            ax.hlines(ratio_target(s), x - 0.4, x + 0.4, colors="black", linestyles="dashed")
        if not math.isnan(v):
            offset = (0, 4) if v >= 1 else (0, -12)
            ax.annotate(
                f"{v:.2f}x", (x, v), xytext=offset, textcoords="offset points", ha="center", fontsize=9
            )
    ax.axhline(1.0, color=NGINX, linewidth=0.8)
    ax.set_yscale("log")
    finite = [v for v in values + [ratio_target(s) for s in summaries] if not math.isnan(v)]
    ax.set_ylim(min(finite + [1.0]) / 1.6, max(finite + [1.0]) * 1.6)
    ticks = [t for t in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32) if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks, [f"{t:g}x" for t in ticks])
    ax.minorticks_off()
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("pyginx / nginx")
    ax.set_title("ratio to nginx (grey: parity, dashes: target)", fontsize=9)


def draw_log_cost(ax: Any, summary: Summary) -> None:
    values = [summary.pyginx, summary.nginx]
    ax.bar([0, 1], values, color=[GOOD if summary.met else BAD, NGINX], width=0.6)
    for x, v in enumerate(values):
        ax.annotate(f"{v:.1f} %", (x, v), ha="center", va="bottom", fontsize=9)
    ax.axhline(summary.limit * 100, color="black", linestyle="dashed")
    ax.set_xticks([0, 1], ["pyginx", "nginx"], fontsize=8)
    ax.set_ylabel("% of req/s lost")
    ax.set_title("access log's cost", fontsize=9)
