#!/usr/bin/env python3
"""Turns python/bench.py's JSON (python/bench-results.json) into the README's table and a
bar chart of speed-ups over multiprocessing.Pipe (python/bench-results.svg).

    python3 python/bench_plot.py [JSON]
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"stream_64": 10, "pingpong_64": 10, "stream_1m": 3, "dict": 2, "bytearray_64m": 5, "numpy_64m": 5}


def fmt(s):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "bench-results.json")
    data = json.load(open(path))
    rows = []
    print("| workload | multiprocessing.Pipe | shmpipe.Pipe | speed-up | target | iceoryx2 (PyPI) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in data["results"].items():
        mp, sh = r["multiprocessing.Pipe"], r["shmpipe.Pipe"]
        rows.append((name, mp / sh))
        iox = fmt(r["iceoryx2"]) if "iceoryx2" in r else "–"
        print(f"| {name} | {fmt(mp)} | {fmt(sh)} | {mp / sh:.1f}x | {TARGETS.get(name, '')}x | {iox} |")
    width, bar_h, gap, left = 640, 26, 12, 120
    top = max(x for _, x in rows + [("", max(TARGETS.values()))]) * 1.15
    height = len(rows) * (bar_h + gap) + 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="13">',
           f'<text x="{left}" y="18">shmpipe.Pipe speed-up over multiprocessing.Pipe (times faster; | = target)</text>']
    scale = (width - left - 60) / top
    for i, (name, x) in enumerate(rows):
        y = 32 + i * (bar_h + gap)
        t = TARGETS.get(name)
        colour = "#2a7" if t is None or x >= t else "#d84"
        out.append(f'<text x="{left - 8}" y="{y + 18}" text-anchor="end">{name}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{x * scale:.1f}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{left + x * scale + 6:.1f}" y="{y + 18}">{x:.1f}x</text>')
        if t:
            out.append(f'<line x1="{left + t * scale:.1f}" x2="{left + t * scale:.1f}" y1="{y - 3}" y2="{y + bar_h + 3}" stroke="#000" stroke-width="2"/>')
    out.append("</svg>")
    open(os.path.join(HERE, "bench-results.svg"), "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
