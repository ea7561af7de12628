#!/usr/bin/env python3
"""Turns criterion's output (target/criterion) into BENCHMARKS.md's table and chart.

Usage: cargo bench --bench workloads && python3 benches/report.py
Writes benches/results.md (the table: medians, and ratios of datastore to hand-written Diesel
and to rusqlite) and benches/ratios.svg (the ratios to Diesel as a bar chart). Standard library
only, so it runs anywhere Python 3 does.
"""
import json
import os
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRITERION = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "criterion")
PEERS = ["datastore", "diesel", "rusqlite"]


def load():
    """{(group, parameter): {implementation: median_ns}}"""
    results = defaultdict(dict)
    for directory, _, files in os.walk(CRITERION):
        if not directory.endswith(os.sep + "new") or "benchmark.json" not in files:
            continue
        with open(os.path.join(directory, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(directory, "estimates.json")) as f:
            median = json.load(f)["median"]["point_estimate"]
        if bench["function_id"] in PEERS:
            results[(bench["group_id"], bench.get("value_str") or "")][bench["function_id"]] = median
        elif bench["group_id"].startswith("observe"):
            results[(bench["group_id"], bench["function_id"])]["datastore"] = median
    return results


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def sort_key(item):
    (group, parameter), _ = item
    try:
        return (group, float(parameter.split("x")[0]), parameter)
    except ValueError:
        return (group, 0.0, parameter)


def main():
    results = load()
    if not results:
        sys.exit(f"no criterion results under {CRITERION}: run `cargo bench --bench workloads` first")
    rows = ["| workload | rows | datastore | hand-written Diesel | rusqlite | datastore / Diesel | datastore / rusqlite |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    bars = []
    for (group, parameter), medians in sorted(results.items(), key=sort_key):
        ours = medians.get("datastore")
        cells = [human(medians[p]) if p in medians else "–" for p in PEERS]
        ratio_diesel = f"{ours / medians['diesel']:.2f}x" if ours and "diesel" in medians else "–"
        ratio_rusqlite = f"{ours / medians['rusqlite']:.2f}x" if ours and "rusqlite" in medians else "–"
        rows.append(f"| {group} | {parameter} | {' | '.join(cells)} | {ratio_diesel} | {ratio_rusqlite} |")
        if ours and "diesel" in medians:
            bars.append((f"{group} {parameter}".strip(), ours / medians["diesel"]))
    with open(os.path.join(ROOT, "benches", "results.md"), "w") as f:
        f.write("\n".join(rows) + "\n")
    write_chart(bars, os.path.join(ROOT, "benches", "ratios.svg"))
    print("\n".join(rows))


def write_chart(bars, path):
    """Horizontal bars of datastore's time over hand-written Diesel's; the line marks 1.0."""
    height, label_width, chart_width = 18, 430, 360
    top = 40
    scale = chart_width / max([2.0] + [r for _, r in bars])
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + chart_width + 80}" '
           f'height="{top + height * len(bars) + 20}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">datastore time / hand-written Diesel time (lower is better)</text>']
    for i, (label, ratio) in enumerate(bars):
        y = top + i * height
        color = "#3a7" if ratio <= 1.05 else "#d84"
        svg.append(f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        svg.append(f'<rect x="{label_width}" y="{y + 3}" width="{ratio * scale:.1f}" height="{height - 6}" fill="{color}"/>')
        svg.append(f'<text x="{label_width + ratio * scale + 4:.1f}" y="{y + 13}">{ratio:.2f}x</text>')
    x = label_width + scale
    svg.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + height * len(bars)}" stroke="#333" stroke-dasharray="4 3"/>')
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    main()
