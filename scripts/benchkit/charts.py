"""The PNG charts, drawn with matplotlib's Agg backend when matplotlib is installed (the
`bench` extra); without it there are no charts, and the run says so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit.load import LOAD_KINDS
from benchkit.report import (
    FAIR_P99_GOALS,
    FAIR_P99_OTHERS,
    fair_point,
    idle_point,
    load_point,
    median_of,
)
from benchkit.servers import LABELS


def _short(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"






def render_charts(results: dict[str, Any], out: Path) -> list[str]:
    """PNG charts via matplotlib (Agg); returns the file names, [] when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    names = [n for n in results["servers"] if results["servers"][n].get("ran")]
    written: list[str] = []
    points = sorted(
        {(e["scenario"], e["connections"]) for e in results["load"]},
        key=lambda p: (LOAD_KINDS.index(p[0]), p[1]),
    )

    def bars(
        ax: Any,
        groups: list[str],
        lookup: Callable[[int, str], dict[str, Any] | None],
        metric: str,
        scale: float = 1.0,
        log: bool = False,
    ) -> None:
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            xs, ys, lo, hi = [], [], [], []
            for g in range(len(groups)):
                entry = lookup(g, name)
                value = median_of(entry, metric)
                if entry is None or value is None or (log and value <= 0):
                    continue
                xs.append(g + (i - (len(names) - 1) / 2) * width)
                ys.append(value * scale)
                lo.append((value - entry["min"][metric]) * scale)
                hi.append((entry["max"][metric] - value) * scale)
            if xs:
                drawn = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=LABELS[name])
                ax.bar_label(
                    drawn, labels=[_short(y) for y in ys], fontsize=6, rotation=90, padding=2
                )
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.grid(axis="y", alpha=0.3)

    if points:
        groups = [f"{k.upper()} x{c}" for k, c in points]

        def load_lookup(g: int, name: str) -> dict[str, Any] | None:
            return load_point(results, points[g][0], points[g][1], name)

        for filename, metric, title, ylabel, log in (
            ("throughput.png", "rps", "Requests per second (median, min–max)", "req/s", False),
            ("latency_p99.png", "p99_ms", "p99 latency", "ms (log scale)", True),
            (
                "cpu_per_1k.png",
                "cpu_per_1k",
                "Server CPU seconds per 1,000 requests",
                "CPU s",
                False,
            ),
        ):
            fig, ax = plt.subplots(figsize=(12, 5.5))
            bars(ax, groups, load_lookup, metric, log=log)
            ax.set_title(title)
            ax.set_ylabel(ylabel)
            # Below the axes: inside, it hid the tallest bars' labels.
            fig.legend(*ax.get_legend_handles_labels(), fontsize=8, ncol=5, loc="lower center")
            fig.tight_layout(rect=(0, 0.09, 1, 1))
            fig.savefig(out / filename, dpi=110)
            plt.close(fig)
            written.append(filename)

    levels = sorted({e["connections"] for e in results["idle"]})
    if levels:
        groups = [f"{n:,} idle" for n in levels]

        def idle_lookup(g: int, name: str) -> dict[str, Any] | None:
            return idle_point(results, levels[g], name)

        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 9))
        bars(top, groups, idle_lookup, "rss_per_conn_bytes", 1 / 1024, log=True)
        top.set_title("Server RSS per idle keep-alive connection")
        top.set_ylabel("KiB per connection (log scale)")
        fig.legend(*top.get_legend_handles_labels(), fontsize=8, ncol=5, loc="lower center")
        bars(bottom, groups, idle_lookup, "fresh_p99_ms", log=True)
        bottom.set_title("Fresh client latency (p99) while the idle connections are held")
        bottom.set_ylabel("ms (log scale)")
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        fig.savefig(out / "idle.png", dpi=110)
        plt.close(fig)
        written.append("idle.png")
    if results.get("fairness"):
        _fairness_chart(plt, results, out)
        written.append("fairness.png")
    return written


def _fairness_chart(plt: Any, results: dict[str, Any], out: Path) -> None:
    """fairness.png: the bystander's cheap p99, before and after the pool, per mode and per
    attacker connection count."""
    entries = results["fairness"]
    names = list(dict.fromkeys(e["server"] for e in entries))
    levels = sorted({e["connections"] for e in entries})
    fig, axes = plt.subplots(1, len(levels), figsize=(6 * len(levels) + 1, 5.5), squeeze=False)
    for ax, level in zip(axes[0], levels, strict=True):
        for offset, variant, label in ((-0.2, "before", "inline (--calc-workers 0)"),
                                       (0.2, "after", "pool (default)")):
            xs, ys, lo, hi = [], [], [], []
            for i, name in enumerate(names):
                entry = fair_point(results, level, name, variant)
                value = median_of(entry, "cheap_p99_ms")
                if entry is None or value is None or value <= 0:
                    continue
                xs.append(i + offset)
                ys.append(value)
                lo.append(value - entry["min"]["cheap_p99_ms"])
                hi.append(entry["max"]["cheap_p99_ms"] - value)
            if xs:
                drawn = ax.bar(xs, ys, 0.4, yerr=[lo, hi], capsize=2, label=label)
                ax.bar_label(drawn, labels=[_short(y) for y in ys], fontsize=7, padding=2)
        for i, name in enumerate(names):
            for offset, variant in ((-0.2, "before"), (0.2, "after")):
                entry = fair_point(results, level, name, variant)
                if entry is not None and not entry["ok_runs"]:  # say so, rather than no bar
                    ax.text(i + offset, 0.03, "failed", rotation=90, ha="center", va="bottom",
                            fontsize=8, color="firebrick", transform=ax.get_xaxis_transform())
            bound = FAIR_P99_GOALS.get(name, FAIR_P99_OTHERS).get(level)
            if bound is not None:
                ax.hlines(bound, i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                          linewidth=1, label="goal (issue 13)" if i == 0 else None)
        ax.set_yscale("log")
        ax.margins(y=0.15)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{level} attacker connections")
        ax.set_ylabel("bystander's cheap p99, ms (log scale)")
    fig.suptitle("A bystander's `1+2` while one client floods the server with costly work")
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, ncol=3, loc="lower center")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out / "fairness.png", dpi=110)
    plt.close(fig)
