#!/usr/bin/env python3
"""The README's benchmark table, from one run of the three benches:

    cargo bench -p shmpipe-benches --bench sustained > sustained.out
    cargo bench -p shmpipe-benches --bench limits --features iceoryx2 > limits.out
    python python/bench.py --json python.json
    python3 benches/readme_table.py sustained.out limits.out python.json

Every figure is a median over the run's interleaved rounds (best round in brackets where
the bench reports one); every ratio is taken within a round, then its median.
"""
import json
import sys


def table_rows(path):
    """The rows of the markdown table(s) a bench printed: first cell -> cells."""
    rows = {}
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) > 2 and not cells[0].startswith("---"):
            rows[tuple(cells[:2])] = cells
            rows.setdefault(cells[0], cells)
    return rows


def ns(text):
    v = float(text.replace(",", ""))
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms" if v < 1e7 else f"{v / 1e6:.1f} ms"
    if v >= 1e4:
        return f"{v / 1e3:.1f} µs"
    return f"{v:,.0f} ns" if v >= 100 else f"{v:.1f} ns"


def main(sustained, limits, python):
    s, lim, py = table_rows(sustained), table_rows(limits), json.load(open(python))
    out = ["| workload | shmpipe | against | ratio | ratio, yardstick in its fast mode |",
           "|---|---:|---|---:|---:|"]

    def fast(cells):
        """The ratio over the rounds whose bare ring ran in its fast mode, and how many."""
        if len(cells) < 7 or cells[5] == "-":
            return f"none of {cells[6].split()[-1]} rounds" if len(cells) >= 7 else "–"
        return f"{cells[5]} ({cells[6]} rounds)"

    def stream(name, label):
        me = s[(name, "shmpipe")]
        sock = s[(name, "socket_buffered")]
        out.append(f"| {label} | {ns(me[3])} ({ns(me[2])}) | the faster bare ring (rate) "
                   f"| {me[4]} | {fast(me)} |")
        out.append(f"| {label}: buffered Unix socket | {ns(sock[3])} ({ns(sock[2])}) "
                   f"| the faster bare ring (rate) | {sock[4]} | {fast(sock)} |")

    stream("sustained", "64 B stream, 20 M messages")
    stream("first200k", "64 B stream, first 200 k")
    stream("slow_reader", "64 B stream, reader working ~25 ns each")
    stream("slow_writer", "64 B stream, writer working ~25 ns each")
    batch = s[("sustained", "shmpipe_batch64")]
    out.append(f"| 64 B stream, 20 M, `send_bytes_many` of 64 | {ns(batch[3])} ({ns(batch[2])}) "
               f"| the faster bare ring (rate) | {batch[4]} | {fast(batch)} |")

    def limit(row, label, against):
        cells = lim[row]
        out.append(f"| {label} | {ns(cells[1])} ({ns(cells[2])}) | {against} (time) | {cells[4]} | – |")

    limit("stream/1048576/shmpipe", "1 MiB stream", "memcpy on one core")
    limit("pingpong/64/shmpipe", "64 B round trip, blocking", "bare ring")
    limit("pingpong/64/shmpipe_polling", "64 B round trip, both busy-polling `poll(0)`",
          "blocking round trip")
    iox = lim.get("pingpong/64/iceoryx2_polling")
    if iox:  # built with `--features iceoryx2`; the ratio is iceoryx2's time ÷ shmpipe's
        out.append(f"| 64 B round trip, iceoryx2 busy-polling (loaned samples) | {ns(iox[1])} "
                   f"({ns(iox[2])}) | shmpipe busy-polling (time; above 1: shmpipe ahead) "
                   f"| {iox[4]} | – |")
    limit("pingpong/64/shmpipe_watched", "64 B round trip, blocking, `fileno` asked for",
          "blocking round trip")
    limit("typed/tick/send_recv", "typed `send`/`recv` of a 32 B struct", "`send_bytes` of its bytes")
    for row, label in [("empty/poll0", "`poll(Some(ZERO))` on an empty pipe"),
                       ("empty/nonblocking", "non-blocking receive on an empty pipe")]:
        cells = lim[row]
        out.append(f"| {label} | {ns(cells[1])} ({ns(cells[2])}) | – | – | – |")

    def us(seconds):
        return ns(f"{seconds * 1e9:.1f}")

    for name, r in py["results"].items():
        mp, sh = r["multiprocessing.Pipe"], r["shmpipe.Pipe"]
        out.append(f"| Python `{name}` | {us(sh)} | `multiprocessing.Pipe` {us(mp)} "
                   f"(speed-up) | {mp / sh:.1f}x | – |")
    floor = py.get("floor")
    if floor:
        out.append(f"| Python `send_bytes` + `recv_bytes`, 64 B, one process | "
                   f"{us(floor['send_recv_64'])} | a native call returning 64 B "
                   f"{us(floor['native_64'])} (time) | "
                   f"{floor['send_recv_64'] / floor['native_64']:.2f} | – |")
    print("\n".join(out))


if __name__ == "__main__":
    main(*sys.argv[1:4])
