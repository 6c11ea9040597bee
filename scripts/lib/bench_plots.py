"""Draws the figures of a `loop-bench run` as SVG with gnuplot.

    python3 scripts/lib/bench_plots.py RESULTS.json OUTPUT_DIR

From the JSON `loop-bench run` writes: every scaling curve (`curves`), every
latency distribution as a CDF (`distributions`) and the idle wake-ups and CPU
(`rows` of the idle workload). One SVG per figure, named bench-<name>.svg;
prints the paths it wrote. gnuplot must be installed (scripts/bench installs
Debian's gnuplot-nox when it is missing).
"""

import json
import os
import re
import subprocess
import sys
import tempfile

# One colour per contender, the same in every figure.
COLOURS = {
    "epoll": "#1f77b4", "legacy": "#d62728", "libevent epoll": "#2ca02c", "libevent select": "#9467bd",
    "loop epoll": "#1f77b4", "loop legacy": "#d62728", "C eventfd": "#2ca02c", "C signal": "#9467bd",
    "C epoll echo": "#2ca02c",
}
FALLBACK = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def colour(name, i):
    return COLOURS.get(name, FALLBACK[i % len(FALLBACK)])


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plot(path, header, series):
    """series: [(title, colour, [(x, y), ...])]; empty series are left out."""
    series = [s for s in series if s[2]]
    if not series:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        script = [
            f"set terminal svg size 720,420 dynamic font 'sans,12' background '#ffffff'",
            f"set output {quote(path)}",
            "set key top left box opaque",
            "set grid xtics ytics mxtics mytics lc rgb '#dddddd'",
            "set border lc rgb '#555555'",
        ] + header
        plots = []
        for i, (title, rgb, points) in enumerate(series):
            data = os.path.join(tmp, f"{i}.dat")
            with open(data, "w") as f:
                for x, y in points:
                    f.write(f"{x} {y}\n")
            plots.append(f"{quote(data)} using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '{rgb}' title {quote(title)}")
        script.append("plot " + ", \\\n     ".join(plots))
        subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)
    return True


def number(cell):
    return cell if isinstance(cell, (int, float)) else None


def curves(results, out):
    written = []
    for c in results.get("curves", []):
        series = []
        values = []
        for i, (name, points) in enumerate(c["series"].items()):
            pts = [(p["n"], number(p["value"])) for p in points if number(p["value"]) is not None]
            values += [y for _, y in pts]
            series.append((name, colour(name, i), pts))
        if not values:
            continue
        # A curve whose figures span more than a factor of 20 is drawn on a log scale.
        logy = min(values) > 0 and max(values) / min(values) > 20
        header = [
            f"set title {quote(c['title'])}",
            f"set xlabel {quote(c['x'])}", f"set ylabel {quote(c['y'] + (' (log scale)' if logy else ''))}",
            "set logscale x", "set format x '%.0f'",
        ] + (["set logscale y"] if logy else ["set yrange [0:*]"])
        path = os.path.join(out, f"bench-{slug(c['name'])}.svg")
        if plot(path, header, series):
            written.append(path)
    return written


def distributions(results, out):
    written = []
    percentiles = results.get("cdfPercentiles", [])
    for d in results.get("distributions", []):
        series = []
        for i, (name, values) in enumerate(d["series"].items()):
            pts = [(v, p) for v, p in zip(values, percentiles) if v > 0]
            series.append((name, colour(name, i), pts))
        header = [
            f"set title {quote(d['title'])}",
            "set xlabel 'latency, µs (log scale)'", "set ylabel 'percentile'",
            "set logscale x", "set yrange [0:100]", "set key bottom right box opaque",
        ]
        path = os.path.join(out, f"bench-cdf-{slug(d['name'])}.svg")
        if plot(path, header, series):
            written.append(path)
    return written


def idle(results, out):
    """Wake-ups a second and CPU of the idle loop, one bar per backend, side by side."""
    rows = {r["metric"]: r for r in results.get("rows", []) if r["workload"] == "idle"}
    wake, cpu = rows.get("polls_per_s"), rows.get("cpu_pct")
    if not wake or not cpu:
        return []
    bars = [(b, number(wake[b]), number(cpu[b])) for b in ("epoll", "legacy")]
    if any(w is None or c is None for _, w, c in bars):
        return []
    path = os.path.join(out, "bench-idle.svg")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "idle.dat")
        with open(data, "w") as f:
            for name, w, c in bars:
                f.write(f"{quote(name)} {max(w, 0.1)} {max(c, 0.001)} {w:g} {c:.3f}\n")
        script = [
            "set terminal svg size 720,360 dynamic font 'sans,12' background '#ffffff'",
            f"set output {quote(path)}",
            "set multiplot layout 1,2 title 'An idle loop with one 1 s heartbeat'",
            "set style fill solid 0.8 border -1", "set boxwidth 0.6", "set grid ytics lc rgb '#dddddd'",
            "set logscale y", "unset key", "set xrange [-0.6:1.6]",
            "set title 'wake-ups per second (log scale)'", "set yrange [0.5:5000]",
            f"plot {quote(data)} using 0:2:(0.6):($0 == 0 ? 0x1f77b4 : 0xd62728):xtic(1) with boxes lc rgb variable, "
            f"'' using 0:2:4 with labels offset 0,1",
            "set title 'CPU % (log scale)'", "set yrange [0.001:100]",
            f"plot {quote(data)} using 0:3:(0.6):($0 == 0 ? 0x1f77b4 : 0xd62728):xtic(1) with boxes lc rgb variable, "
            f"'' using 0:3:5 with labels offset 0,1",
            "unset multiplot",
        ]
        subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)
    return [path]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    with open(sys.argv[1]) as f:
        results = json.load(f)
    out = sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for path in curves(results, out) + distributions(results, out) + idle(results, out):
        print(path)


if __name__ == "__main__":
    main()
