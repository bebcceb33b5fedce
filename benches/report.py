#!/usr/bin/env python3
"""Turn criterion results (+ the Python Pipe baseline) into RESULTS.md and throughput.svg.

Standard library only (Python 3.11).

Usage:
  python3 benches/report.py [--criterion target/criterion]
                            [--python benches/results/python.json]
                            [--out benches/results]
                            [--svg-metric bytes|msgs]

Criterion layout read: <criterion>/<group>/<transport>/<size>/new/estimates.json,
whose ["median"]["point_estimate"] is nanoseconds per iteration (one message for
the "stream" group, one round trip for "pingpong").  Missing results show as "–".
"""

import argparse
import datetime
import json
import math
import os
import platform
import sys
from xml.sax.saxutils import escape

STREAM_TRANSPORTS = [
    "shmpipe_bytes",
    "shmpipe_into",
    "shmpipe_archived",
    "shmpipe_in_place",
    "shmpipe_recv",
    "socketpair",
    "pipe",
    "ipc_channel",
    "memcpy",
]
STREAM_SIZES = [8, 64, 1024, 65536, 1048576, 16777216]
PINGPONG_TRANSPORTS = ["shmpipe", "socketpair", "pipe", "ipc_channel", "cacheline"]
PINGPONG_SIZES = [64, 4096]
# Further groups, shown as they are: (group, title, transports, sizes, what the size is,
# the transport the ratios divide by).
EXTRA_GROUPS = [
    ("typed", "Typed receive of a Vec<String> of N strings: copy then validate, validate in place, deserialize",
     ["archived", "in_place", "recv"], [4, 64, 4096], "N", "in_place"),
    ("async_stream", "Async streaming (tokio current-thread runtimes both sides)",
     ["shmpipe_async", "tokio_unix", "shmpipe_sync"], [64, 1048576], "bytes", "tokio_unix"),
    ("async_pingpong", "Async ping-pong round trip",
     ["shmpipe_async", "tokio_unix"], [64], "bytes", "tokio_unix"),
    ("handover", "Reading a message the peer cannot change: two copies vs a sealed memfd per message (one process)",
     ["copy", "sealed_memfd"], [4096, 65536, 1048576, 16777216], "bytes", "copy"),
]
PY = "python Pipe"
DASH = "–"

# Colours for the SVG (one per transport, python Pipe last).
COLORS = {
    "shmpipe_bytes": "#1f77b4",
    "shmpipe_into": "#2ca02c",
    "shmpipe_archived": "#17becf",
    "shmpipe_in_place": "#bcbd22",
    "shmpipe_recv": "#8c564b",
    "socketpair": "#ff7f0e",
    "pipe": "#d62728",
    "ipc_channel": "#9467bd",
    "memcpy": "#7f7f7f",
    PY: "#e377c2",
}


# --------------------------------------------------------------------------
# loading


def load_criterion(root, group, transport, size):
    path = os.path.join(root, group, transport, str(size), "new", "estimates.json")
    try:
        with open(path) as f:
            v = float(json.load(f)["median"]["point_estimate"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return v if v > 0 else None


def load_python(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def py_value(py, group, size):
    if not py:
        return None
    try:
        v = float(py[group][str(size)])
    except (KeyError, TypeError, ValueError):
        return None
    return v if v > 0 else None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model", "Hardware"):
                    if value.strip():
                        return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


# --------------------------------------------------------------------------
# formatting


def fmt_size(n):
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}"
    return f"{n} B"


def fmt_count(x):
    """24100000 -> '24.1 M', 812000 -> '812 k', 95.3 -> '95.3'."""
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if x >= div * 0.9995:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_bytes_rate(b):
    # Switch to the bigger unit as soon as the smaller one would need 4 digits
    # (1000 MiB/s -> "0.977 GiB/s"), so '.3g' never falls back to exponent form.
    for div, unit in ((1 << 30, "GiB/s"), (1 << 20, "MiB/s"), (1 << 10, "KiB/s")):
        if b >= div / 1024 * 999.5:
            return f"{b / div:.3g} {unit}"
    return f"{b:.3g} B/s"


def fmt_us(ns):
    us = ns / 1000.0
    return f"{us:.3g} µs" if us < 100 else f"{us:,.0f} µs"


def fmt_ratio(r):
    if r is None:
        return DASH
    if r >= 100:
        return f"{r:,.0f}×"
    return f"{r:.3g}×"


def ratio(num, den):
    if num is None or den is None or den == 0:
        return None
    return num / den


def md_table(header, rows, align=None):
    align = align or ["---:"] * len(header)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------
# Markdown


def build_markdown(stream, pingpong, py, svg_name):
    now = datetime.datetime.now().astimezone()
    lines = []
    lines.append("# shmpipe benchmark results")
    lines.append("")
    lines.append(
        f"Machine: {cpu_model()}, {os.cpu_count()} logical cores, "
        f"Linux {platform.release()} — {now:%Y-%m-%d %H:%M %Z}"
    )
    if py:
        lines.append("")
        lines.append(
            f"Python baseline: `multiprocessing.Pipe()` (fork, duplex), "
            f"Python {py.get('python', '?')} on {py.get('machine', '?')}."
        )
    lines.append("")
    lines.append(
        "All numbers are criterion medians (Python: median of 5 runs). "
        "Streaming = one process sends, the other receives; one iteration = one message. "
        "Ping-pong = one round trip."
    )

    # ---- Table 1: streaming throughput
    cols = STREAM_TRANSPORTS + [PY]
    lines.append("")
    lines.append("## Table 1 — one-way streaming throughput")
    lines.append("")
    lines.append("Cells: messages/s (bytes/s).")
    lines.append("")
    rows = []
    for size in STREAM_SIZES:
        row = [fmt_size(size)]
        for t in cols:
            ns = stream[t].get(size)
            if ns is None:
                row.append(DASH)
            else:
                msgs = 1e9 / ns
                row.append(f"{fmt_count(msgs)} ({fmt_bytes_rate(msgs * size)})")
        rows.append(row)
    lines.append(md_table(["size"] + cols, rows))

    # ---- ratios
    lines.append("")
    lines.append("### Streaming ratios")
    lines.append("")
    lines.append(
        "Messages/s of the shmpipe variants divided by socketpair's (> 1: shmpipe is faster); "
        "`shmpipe_into ÷ memcpy` is shmpipe_into's bytes/s as a fraction of a "
        "single-process memcpy of the same size (then read one byte per cache line, as "
        "every receiver is); the last column compares against "
        "Python's own Pipe."
    )
    lines.append("")
    hdr = [
        "size",
        "shmpipe_into ÷ socketpair",
        "shmpipe_bytes ÷ socketpair",
        "shmpipe_archived ÷ socketpair",
        "shmpipe_into ÷ memcpy",
        "shmpipe_bytes ÷ python Pipe",
    ]
    rows = []
    for size in STREAM_SIZES:
        g = lambda t: stream[t].get(size)  # noqa: E731  (ns per message)
        sp = g("socketpair")
        rows.append(
            [
                fmt_size(size),
                fmt_ratio(ratio(sp, g("shmpipe_into"))),
                fmt_ratio(ratio(sp, g("shmpipe_bytes"))),
                fmt_ratio(ratio(sp, g("shmpipe_archived"))),
                fmt_ratio(ratio(g("memcpy"), g("shmpipe_into"))),
                fmt_ratio(ratio(g(PY), g("shmpipe_bytes"))),
            ]
        )
    lines.append(md_table(hdr, rows))

    # ---- Table 2: ping-pong
    cols = PINGPONG_TRANSPORTS + [PY]
    lines.append("")
    lines.append("## Table 2 — ping-pong round trip")
    lines.append("")
    lines.append(
        "Cells: round-trip time (lower is better). Ratios are round-trip times, "
        "shmpipe's divided by the other's: < 1 means shmpipe is faster; "
        "`cacheline` (two processes spinning on one shared cache line) is the hardware floor."
    )
    lines.append("")
    rows = []
    for size in PINGPONG_SIZES:
        row = [fmt_size(size)]
        for t in cols:
            ns = pingpong[t].get(size)
            row.append(DASH if ns is None else fmt_us(ns))
        shm = pingpong["shmpipe"].get(size)
        row.append(fmt_ratio(ratio(shm, pingpong["socketpair"].get(size))))
        row.append(fmt_ratio(ratio(shm, pingpong["cacheline"].get(size))))
        rows.append(row)
    lines.append(md_table(["size"] + cols + ["shmpipe ÷ socketpair", "shmpipe ÷ cacheline"], rows))

    lines.append("")
    lines.append(f"![streaming throughput]({svg_name})")
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# SVG


def build_svg(stream, metric):
    W, H = 900, 500
    left, right, top, bottom = 78, 170, 48, 62  # margins; legend lives in the right one
    pw, ph = W - left - right, H - top - bottom
    series = STREAM_TRANSPORTS + [PY]

    def value(t, size):
        ns = stream[t].get(size)
        if ns is None:
            return None
        msgs = 1e9 / ns
        return msgs * size / (1 << 30) if metric == "bytes" else msgs

    vals = [v for t in series for s in STREAM_SIZES if (v := value(t, s)) is not None]
    if vals:
        lo = math.floor(math.log10(min(vals)))
        hi = math.ceil(math.log10(max(vals)))
        if hi == lo:
            hi += 1
    else:
        lo, hi = 0, 1

    def y_of(v):
        return top + ph - (math.log10(v) - lo) / (hi - lo) * ph

    out = []
    out.append('<?xml version="1.0" encoding="UTF-8"?>')
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">'
    )
    out.append(f'<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>')
    title = "One-way streaming throughput" + (" (bytes/s)" if metric == "bytes" else " (messages/s)")
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="28" text-anchor="middle" font-size="17" '
        f'font-weight="bold">{escape(title)}</text>'
    )

    # grid + y tick labels (decades, with light minor lines at 2 and 5)
    for e in range(lo, hi + 1):
        y = y_of(10.0**e)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" '
            f'stroke="#bbbbbb" stroke-width="1"/>'
        )
        out.append(
            f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end" font-size="12">'
            f"{escape(decade_label(e, metric))}</text>"
        )
        if e < hi:
            for m in (2, 5):
                ym = y_of(m * 10.0**e)
                out.append(
                    f'<line x1="{left}" y1="{ym:.1f}" x2="{left + pw}" y2="{ym:.1f}" '
                    f'stroke="#e6e6e6" stroke-width="1"/>'
                )

    # bars
    ngroups = len(STREAM_SIZES)
    gw = pw / ngroups
    inner = gw * 0.86
    bw = inner / len(series)
    base = top + ph
    for gi, size in enumerate(STREAM_SIZES):
        gx = left + gi * gw + (gw - inner) / 2
        for si, t in enumerate(series):
            v = value(t, size)
            x = gx + si * bw
            if v is None:
                out.append(
                    f'<text x="{x + bw / 2:.1f}" y="{base - 4:.1f}" text-anchor="middle" '
                    f'font-size="10" fill="#999999">{DASH}</text>'
                )
                continue
            y = y_of(v)
            unit = "GiB/s" if metric == "bytes" else "msgs/s"
            tip = f"{t}, {fmt_size(size)}: {v:.4g} {unit}"
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bw - 1, 1):.1f}" '
                f'height="{max(base - y, 0):.1f}" fill="{COLORS[t]}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        out.append(
            f'<text x="{left + gi * gw + gw / 2:.1f}" y="{base + 18:.1f}" text-anchor="middle" '
            f'font-size="13">{escape(fmt_size(size))}</text>'
        )
        if gi:
            xs = left + gi * gw
            out.append(
                f'<line x1="{xs:.1f}" y1="{base}" x2="{xs:.1f}" y2="{base + 6}" stroke="black"/>'
            )

    # axes
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="black"/>')
    out.append(f'<line x1="{left}" y1="{base}" x2="{left + pw}" y2="{base}" stroke="black"/>')
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{H - 16}" text-anchor="middle" font-size="14">'
        f"message size</text>"
    )
    ylabel = "throughput, GiB/s (log scale)" if metric == "bytes" else "messages per second (log scale)"
    cy = top + ph / 2
    out.append(
        f'<text x="20" y="{cy:.1f}" text-anchor="middle" font-size="14" '
        f'transform="rotate(-90 20 {cy:.1f})">{escape(ylabel)}</text>'
    )

    # legend
    lx, ly = left + pw + 20, top + 6
    out.append(f'<text x="{lx}" y="{ly + 4}" font-size="13" font-weight="bold">transport</text>')
    for i, t in enumerate(series):
        yy = ly + 18 + i * 22
        out.append(f'<rect x="{lx}" y="{yy}" width="14" height="14" fill="{COLORS[t]}"/>')
        out.append(f'<text x="{lx + 20}" y="{yy + 11.5}" font-size="12.5">{escape(t)}</text>')

    out.append("</svg>")
    return "\n".join(out) + "\n"


def decade_label(e, metric):
    v = 10.0**e
    if metric == "bytes":  # GiB/s
        return f"{v:g}" if -4 <= e <= 4 else f"1e{e}"
    return fmt_count(v)


# --------------------------------------------------------------------------


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.3g} µs"
    return f"{ns:.3g} ns"


def build_extra(root):
    """One table per further group: time per message (or round trip), and each
    transport's time divided by the reference transport's."""
    out = []
    for group, title, transports, sizes, unit, ref in EXTRA_GROUPS:
        rows = []
        for s in sizes:
            vals = {t: load_criterion(root, group, t, s) for t in transports}
            if all(v is None for v in vals.values()):
                continue
            cells = [fmt_ns(vals[t]) if vals[t] is not None else DASH for t in transports]
            ratios = [
                f"{vals[t] / vals[ref]:.3g}×" if vals[t] is not None and vals.get(ref) else DASH
                for t in transports if t != ref
            ]
            rows.append(f"| {s} | " + " | ".join(cells + ratios) + " |")
        if not rows:
            continue
        head = [unit] + transports + [f"{t} ÷ {ref}" for t in transports if t != ref]
        out.append(f"\n## {title}\n\nCells: time per message (lower is better), criterion medians; ratios are times.\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---:|" * len(head))
        out.extend(rows)
    return "\n".join(out) + ("\n" if out else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--criterion", default="target/criterion")
    ap.add_argument("--python", default="benches/results/python.json")
    ap.add_argument("--out", default="benches/results")
    ap.add_argument("--svg-metric", choices=["bytes", "msgs"], default="bytes",
                    help="y axis of throughput.svg: GiB/s (default) or messages/s")
    args = ap.parse_args(argv)

    py = load_python(args.python)
    if py is None:
        print(f"note: no Python baseline at {args.python}", file=sys.stderr)

    def load_group(group, transports, sizes):
        """{transport: {size: ns}} for one criterion group, plus the Python column."""
        table = {t: {} for t in transports + [PY]}
        for t in transports:
            for s in sizes:
                v = load_criterion(args.criterion, group, t, s)
                if v is not None:
                    table[t][s] = v
        for s in sizes:
            v = py_value(py, group, s)
            if v is not None:
                table[PY][s] = v
        return table

    stream = load_group("stream", STREAM_TRANSPORTS, STREAM_SIZES)
    pingpong = load_group("pingpong", PINGPONG_TRANSPORTS, PINGPONG_SIZES)

    found = sum(len(d) for k, d in stream.items() if k != PY) + sum(
        len(d) for k, d in pingpong.items() if k != PY
    )
    if found == 0:
        print(f"note: no criterion results under {args.criterion}", file=sys.stderr)

    os.makedirs(args.out, exist_ok=True)
    svg_name = "throughput.svg"
    md = build_markdown(stream, pingpong, py, svg_name)
    md += build_extra(args.criterion)
    with open(os.path.join(args.out, "RESULTS.md"), "w", encoding="utf-8") as f:
        f.write(md)
    with open(os.path.join(args.out, svg_name), "w", encoding="utf-8") as f:
        f.write(build_svg(stream, args.svg_metric))
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
