#!/usr/bin/env python3
"""Turns criterion's output (target/criterion) into BENCHMARKS.md's table and chart.

Usage: cargo bench -p datastore-benches && python3 benches/report.py [CRITERION_DIR ...]
   or: python3 benches/report.py --paired RUN.md ... (tables printed by paired runs:
       DATASTORE_BENCH_PAIRED=1 cargo bench -p datastore-benches --bench workloads > RUN.md),
       which also prints every run's ratios beside their median
With several criterion output directories (copies of target/criterion, one per full run), each
figure is the median of the runs' medians, and each ratio the median of the runs' ratios (so a
run whose server was slow throughout does not skew a ratio). Without, target/criterion.
Writes benches/results.md (the table: medians, and ratios of datastore to hand-written Diesel,
to rusqlite and to SeaORM) and benches/ratios.svg (the ratios to Diesel and to SeaORM as a
bar chart). Standard library only, so it runs anywhere Python 3 does.
"""
import json
import math
import os
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRITERION = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "criterion")
PEERS = ["datastore", "diesel", "rusqlite", "seaorm"]
DIESEL, SEAORM = "#d84", "#37a"


def load(criterion=CRITERION):
    """{(group, parameter): {implementation: median_ns}}"""
    results = defaultdict(dict)
    for directory, _, files in os.walk(criterion):
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
    """In memory first, then the WAL file, PostgreSQL and observe; by workload, then size."""
    (group, parameter), _ = item
    storage = next(i for i, prefix in enumerate(("WAL file: ", "PostgreSQL: ", "observe", ""))
                   if group.startswith(prefix))
    storage = (storage + 1) % 4
    try:
        size = float(parameter.split("x")[0].split("/")[0])
    except ValueError:
        size = 0.0
    workload = group.split(": ", 1)[-1]
    return (storage, workload, size, parameter)


def ratio(medians, peer):
    ours = medians.get("datastore")
    return ours / medians[peer] if ours and peer in medians else None


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def load_runs(directories):
    """The runs' medians combined: {(group, parameter): ({peer: median_ns}, [ratio per peer])}."""
    runs = [load(d) for d in directories]
    keys = set().union(*runs)
    combined = {}
    for key in keys:
        present = [run[key] for run in runs if key in run]
        medians = {p: median(m.get(p) for m in present) for p in PEERS}
        medians = {p: v for p, v in medians.items() if v is not None}
        ratios = [median(ratio(m, p) for m in present) for p in PEERS[1:]]
        combined[key] = (medians, ratios, None)
    return combined


# The columns of the tables paired runs print (benches/workloads/paired.rs), by peer.
PAIRED_TIMES = {"datastore": "datastore", "diesel": "hand-written Diesel", "rusqlite": "rusqlite",
                "seaorm": "SeaORM"}
PAIRED_RATIOS = {"diesel": "datastore / Diesel", "rusqlite": "datastore / rusqlite",
                 "seaorm": "datastore / SeaORM"}
# The ratio columns of the observe bench's paired table (benches/observe.rs).
OBSERVE_RATIOS = ["datastore / no subscriber", "datastore / plain connection"]
UNITS = {"ns": 1.0, "µs": 1e3, "ms": 1e6, "s": 1e9}


def nanoseconds(cell):
    number, _, unit = cell.partition(" ")
    return float(number) * UNITS[unit] if unit in UNITS else None


def read_paired(path):
    """{(group, parameter): {column: cell}} of one paired run's table, by its header's names
    (runs printed before SeaORM joined them have no SeaORM columns)."""
    rows, header = {}, None
    with open(path) as f:
        for line in f:
            if not line.startswith("|"):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] == "workload":
                header = cells
            elif header and not cells[0].startswith("---"):
                rows[(cells[0], cells[1])] = dict(zip(header, cells))
    return rows


def load_paired(paths):
    """The paired runs combined as load_runs combines criterion's: each time the median of the
    runs' medians, each ratio the median of the runs' ratios (each the median of its rounds)."""
    tables = [read_paired(p) for p in paths]
    combined = {}
    for key in dict.fromkeys(k for t in tables for k in t):
        present = [t[key] for t in tables if key in t]
        medians = {p: median(nanoseconds(row.get(column, "")) for row in present)
                   for p, column in PAIRED_TIMES.items()}
        medians = {p: v for p, v in medians.items() if v is not None}
        ratio = lambda column: median(float(row[column][:-1]) for row in present
                                      if row.get(column, "").endswith("x"))
        ratios = [ratio(column) for column in PAIRED_RATIOS.values()]
        observe = [ratio(column) for column in OBSERVE_RATIOS]
        combined[key] = (medians, ratios, observe)
    return tables, combined


def print_each_run(tables):
    """Prints, for each row of the runs' tables, every run's ratios and their median, a table
    for each kind of row (the workloads' ratios to the peers, observe's to the store without
    a subscriber); a median to Diesel above 1.05x in bold."""
    keys = dict.fromkeys(k for t in tables for k in t)
    kinds = {}
    for key in keys:
        row = next(t[key] for t in tables if key in t)
        columns = tuple(c for c in row if " / " in c)
        kinds.setdefault(columns, []).append(key)
    for columns, rows in kinds.items():
        print("| workload | rows | " + " | ".join(f"{c}, each run | median" for c in columns) + " |")
        print("| --- | --- |" + " --- | --- |" * len(columns))
        for key in rows:
            cells = []
            for column in columns:
                shown = [t[key].get(column, "–") for t in tables if key in t]
                middle = median(float(r[:-1]) for r in shown if r.endswith("x"))
                text = f"{middle:.2f}x" if middle is not None else "–"
                if column == PAIRED_RATIOS["diesel"] and middle is not None and middle > 1.05:
                    text = f"**{text}**"
                cells += [", ".join(shown), text]
            print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
        print()


def observe_ratios(results, group, time, observe):
    """An observe row's ratios to the store without a subscriber and to the plain connection:
    the paired runs' medians, or (from criterion) the ratios of the medians."""
    if observe is not None:
        return observe
    times = {p: m.get("datastore") for (g, p), (m, _, _) in results.items() if g == group}
    base = [next((t for p, t in times.items() if name in p), None)
            for name in ("0 subscribers", "plain")]
    return [time / b if time and b else None for b in base]


def write_report(results):
    """Writes benches/results.md (the workloads' table, then observe's) and benches/ratios.svg
    from the combined results; returns the tables' lines."""
    rows = ["| workload | rows | datastore | hand-written Diesel | rusqlite | SeaORM "
            "| datastore / Diesel | datastore / rusqlite | datastore / SeaORM |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    observe_rows = ["| observe | configuration | time | / no subscriber | / plain connection |",
                    "| --- | --- | --- | --- | --- |"]
    bars = []
    for (group, parameter), (medians, ratios, observe) in sorted(results.items(), key=sort_key):
        if group.startswith("observe"):
            ratios = observe_ratios(results, group, medians.get("datastore"), observe)
            cells = [human(medians["datastore"]) if "datastore" in medians else "–"]
            cells += [f"{r:.2f}x" if r else "–" for r in ratios]
            observe_rows.append(f"| {group} | {parameter} | {' | '.join(cells)} |")
            continue
        cells = [human(medians[p]) if p in medians else "–" for p in PEERS]
        cells += [f"{r:.2f}x" if r else "–" for r in ratios]
        rows.append(f"| {group} | {parameter} | {' | '.join(cells)} |")
        if ratios[0] or ratios[2]:
            bars.append((f"{group} {parameter}".strip(), ratios[0], ratios[2]))
    if len(observe_rows) > 2:
        rows += [""] + observe_rows
    with open(os.path.join(ROOT, "benches", "results.md"), "w") as f:
        f.write("\n".join(rows) + "\n")
    write_chart(bars, os.path.join(ROOT, "benches", "ratios.svg"))
    return rows


def main():
    if sys.argv[1:2] == ["--paired"]:
        tables, results = load_paired(sys.argv[2:])
        write_report(results)
        return print_each_run(tables)
    directories = sys.argv[1:] or [CRITERION]
    results = load_runs(directories)
    if not results:
        sys.exit(f"no criterion results under {directories}: run `cargo bench -p datastore-benches` first")
    print("\n".join(write_report(results)))


def write_chart(bars, path):
    """Per workload, datastore's time over hand-written Diesel's and over SeaORM's, on a log
    scale; the dashed line marks 1.0 (as fast), left of it datastore is faster."""
    height, label_width, chart_width = 26, 560, 420
    top, low, high = 56, 0.02, 4.0
    span = math.log(high / low)

    def x_of(r):
        return label_width + chart_width * math.log(min(max(r, low), high) / low) / span

    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + chart_width + 70}" '
           f'height="{top + height * len(bars) + 30}" font-family="sans-serif" font-size="11">',
           '<text x="10" y="18" font-size="14">datastore time / peer time, log scale (left of 1.0: datastore is faster)</text>',
           f'<rect x="10" y="28" width="10" height="10" fill="{DIESEL}"/><text x="24" y="37">/ hand-written Diesel</text>',
           f'<rect x="170" y="28" width="10" height="10" fill="{SEAORM}"/><text x="184" y="37">/ SeaORM</text>']
    for tick in (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0):
        x = x_of(tick)
        stroke = 'stroke="#333" stroke-dasharray="4 3"' if tick == 1.0 else 'stroke="#ccc"'
        svg.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{top + height * len(bars)}" {stroke}/>')
        svg.append(f'<text x="{x:.1f}" y="{top + height * len(bars) + 14}" text-anchor="middle">{tick:g}x</text>')
    for i, (label, to_diesel, to_seaorm) in enumerate(bars):
        y = top + i * height
        svg.append(f'<text x="{label_width - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        for offset, r, color in ((2, to_diesel, DIESEL), (13, to_seaorm, SEAORM)):
            if r:
                w = x_of(r) - label_width
                svg.append(f'<rect x="{label_width}" y="{y + offset}" width="{w:.1f}" height="10" fill="{color}"/>')
                svg.append(f'<text x="{label_width + w + 3:.1f}" y="{y + offset + 9}" font-size="9">{r:.2f}x</text>')
    svg.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    main()
