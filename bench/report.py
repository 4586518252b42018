#!/usr/bin/env python3
"""The benchmark's report (bench/run.sh calls it; python3, standard library only).

  report.py --median RAW LABEL TARGET FIELD   prints the median of FIELD over LABEL's runs
  report.py --report RAW MACHINE MD SVG       prints the markdown tables, writes MD and SVG

RAW holds one line per run: "label=... try=N key=value ..." as bench/loadgen.c prints them.
"""
import html
import statistics
import sys

WAIT_LIMIT = 0.10  # a run where server or generator waited this share of it for a CPU is flagged


def parse(path):
    runs = []
    for line in open(path):
        fields = {}
        for token in line.split():
            if "=" in token:
                key, value = token.split("=", 1)
                fields[key] = value
        if fields:
            runs.append(fields)
    return runs


def num(run, key, default=None):
    try:
        return float(run[key])
    except (KeyError, ValueError):
        return default


def select(runs, label, target=None):
    return [r for r in runs if r.get("label") == label and (target is None or r.get("target", "server") == target)]


def median(runs, key):
    values = [num(r, key) for r in runs if num(r, key) is not None and r.get("failed") != "1"]
    return statistics.median(values) if values else None


def per_cpu_second(runs):
    values = [num(r, "deliveries_per_s") / num(r, "server_cpu") for r in runs
              if r.get("failed") != "1" and (num(r, "server_cpu", 0) or 0) > 0.05 and num(r, "deliveries_per_s")]
    return statistics.median(values) if values else None


def generator_behind(run):
    """The generator could not keep to its own schedule in a latency run (it is one core too)."""
    return (num(run, "send_lag_mean_us", 0) or 0) > 100


def disturbed(run):
    return any((num(run, k, -1) or -1) > WAIT_LIMIT for k in ("server_wait", "loadgen_wait"))


def fmt_rate(v):
    if v is None:
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e3:
        return f"{v / 1e3:.0f} k"
    return f"{v:.0f}"


def fmt_int(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None or v < 0:
        return "n/a"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"


def yes(ok):
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def spread(runs, key):
    values = sorted(num(r, key) for r in runs if num(r, key) is not None and r.get("failed") != "1")
    if len(values) < 2:
        return ""
    return f" ({fmt_rate(values[0])}–{fmt_rate(values[-1])})"


def flags(runs):
    marks = ""
    if any(disturbed(r) for r in runs):
        marks += " †"
    if any(generator_behind(r) for r in runs):
        marks += " §"
    if any(num(r, "errors", 0) or r.get("verified") == "0" or r.get("failed") == "1" for r in runs):
        marks += " ‼"
    return marks


SCENARIOS = {
    "A": ("50 rooms × 4 peers, 200 B", "200 B"),
    "B": ("10 rooms × 16 peers, 2,000 B", "2,000 B"),
    "B32": ("10 rooms × 16 peers, 2,000 B, 32 in flight", "2,000 B, 32 in flight"),
}


def build(runs, machine):
    out = []
    verdicts = []
    idle_big = machine.get("idle_big", "10000")
    idle_big_text = f"{int(idle_big):,}"

    # ---- fanout ----
    fan = {}
    for s in SCENARIOS:
        sv, rl = select(runs, f"fanout-{s}", "server"), select(runs, f"fanout-{s}", "tcp_relay")
        fan[s] = (sv, rl, median(sv, "deliveries_per_s"), median(rl, "deliveries_per_s"))
    idle_runs = select(runs, "fanout-A-idle", "server")
    idle_fan = median(idle_runs, "deliveries_per_s")

    out.append("### Fanout: relay deliveries per second")
    out.append("")
    out.append(f"Median of {machine.get('repeats', '3')} runs (range in brackets); a delivery is one event "
               "reaching one receiver. Each peer keeps a bounded window of its own events in flight.")
    out.append("")
    out.append("| scenario | server | bare TCP relay | server ÷ relay | server MB/s | relay MB/s | "
               "per CPU-second: server, relay, ratio |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for s, (title, _) in SCENARIOS.items():
        sv, rl, ms, mr = fan[s]
        ratio = ms / mr if ms and mr else None
        es, er = per_cpu_second(sv), per_cpu_second(rl)
        out.append(f"| {title}{flags(sv + rl)} | {fmt_rate(ms)}/s{spread(sv, 'deliveries_per_s')} | "
                   f"{fmt_rate(mr)}/s{spread(rl, 'deliveries_per_s')} | "
                   f"{'n/a' if ratio is None else f'{ratio:.2f}'} | "
                   f"{median(sv, 'mb_per_s') or 0:,.0f} | {median(rl, 'mb_per_s') or 0:,.0f} | "
                   f"{fmt_rate(es)}, {fmt_rate(er)}, {'n/a' if not (es and er) else f'{es / er:.2f}'} |")
        # the verdict takes the lower of the two ratios: by rate, and by CPU time per delivery (when the
        # generator cannot keep up with the bare relay, the relay's rate understates it)
        ratios = [x for x in (ratio, es / er if es and er else None) if x is not None]
        low = min(ratios) if ratios else None
        measured = "n/a" if ratio is None else f"{ratio:.2f} × by rate" + (
            f", {es / er:.2f} × per CPU-second" if es and er else "")
        verdicts.append((f"fanout ≥ 0.6 × bare TCP relay ({SCENARIOS[s][1]})", measured,
                         None if low is None else low >= 0.6))
    ms_a, mr_a = fan["A"][2], fan["A"][3]
    idle_ratio = idle_fan / ms_a if idle_fan and ms_a else None
    out.append(f"| {SCENARIOS['A'][0]}, beside {idle_big_text} idle connections{flags(idle_runs)} | "
               f"{fmt_rate(idle_fan)}/s{spread(idle_runs, 'deliveries_per_s')} | – | "
               f"{'n/a' if not (idle_fan and mr_a) else f'{idle_fan / mr_a:.2f}'} | "
               f"{median(idle_runs, 'mb_per_s') or 0:,.0f} | – | {fmt_rate(per_cpu_second(idle_runs))}, –, – |")
    out.append("")
    out.append("MB/s counts the relayed payload (S bytes per delivery); the server's wire bytes are larger "
               "(framing, the Phoenix envelope, the sender's id). Per CPU-second: deliveries divided by the CPU "
               "time the process used (schedstat), median over the runs: a cost rather than a rate, so it "
               "holds up better than deliveries/s when something else shares the machine.")
    relay_runs = fan["A"][1] + fan["B"][1]
    saturated = [r for r in relay_runs if (num(r, "loadgen_cpu", 0) or 0) > 0.85]
    if saturated:
        out.append(f"In {len(saturated)} of {len(relay_runs)} bare-relay runs the generator itself was above 85% of its "
                   "core: there the relay's figure is a lower bound, and the ratio flatters the server.")
    out.append("")
    verdicts.append((f"fanout beside {idle_big_text} idle ≥ 0.8 × without",
                     "n/a" if idle_ratio is None else f"{idle_ratio:.2f} ×",
                     None if idle_ratio is None else idle_ratio >= 0.8))

    # ---- latency ----
    out.append("### Latency at half the server's peak")
    out.append("")
    out.append("One-way, from the sender's write to the receiver's read (CLOCK_MONOTONIC in the payload), "
               "every delivery of the measured window; the bare relay at the same offered rate is the floor "
               "this machine allows.")
    out.append("")
    out.append("| scenario | load | offered deliveries/s | server p50 | server p99 | server p99.9 | server CPU | "
               "relay p50 | relay p99 | relay p99.9 | relay CPU |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    behind = []
    for s, (title, short) in SCENARIOS.items():
        for suffix, load in (("", "½ peak"), ("-light", "⅒ peak")):
            sv, rl = select(runs, f"latency-{s}{suffix}", "server"), select(runs, f"latency-{s}{suffix}", "tcp_relay")
            if not sv:
                continue
            a, b = sv[0], (rl[0] if rl else {})
            for who, r in (("server", a), ("bare relay", b)):
                if num(r, "skipped", 0):
                    behind.append(f"{who}, {title}, {load}: {fmt_int(num(r, 'skipped'))} events not sent because "
                                  f"the sender's window was full (delivered {fmt_int(num(r, 'deliveries_per_s'))}/s "
                                  f"of {fmt_int(num(r, 'offered_per_s'))}/s offered)")
            out.append(f"| {title}{flags(sv + rl)} | {load} | {fmt_int(num(a, 'offered_per_s'))} | "
                       f"{fmt_us(num(a, 'p50_us'))} | {fmt_us(num(a, 'p99_us'))} | {fmt_us(num(a, 'p999_us'))} | "
                       f"{num(a, 'server_cpu', 0):.2f} | {fmt_us(num(b, 'p50_us'))} | {fmt_us(num(b, 'p99_us'))} | "
                       f"{fmt_us(num(b, 'p999_us'))} | {num(b, 'server_cpu', 0):.2f} |")
            if suffix:
                continue
            p99 = num(a, "p99_us")
            light = select(runs, f"latency-{s}-light", "server")
            if generator_behind(a):
                measured = (f"not measurable here: one generator core could not offer "
                            f"{fmt_int(num(a, 'offered_per_s'))} evenly paced deliveries/s (§)"
                            + (f"; at a tenth of the peak: {fmt_us(num(light[0], 'p99_us'))}" if light else ""))
                verdicts.append((f"p99 < 1 ms at half the peak ({short})", measured, None))
            else:
                verdicts.append((f"p99 < 1 ms at half the peak ({short})",
                                 fmt_us(p99) + (f" (bare relay at the same rate: {fmt_us(num(b, 'p99_us'))})" if b else "")
                                 + (f"; at a tenth of the peak: {fmt_us(num(light[0], 'p99_us'))}" if light else ""),
                                 None if p99 is None or p99 < 0 else p99 < 1000))
    out.append("")
    if behind:
        out.append("Fell behind the offered rate: " + "; ".join(behind) + ".")
        out.append("")
    lagging = [r for r in runs if r.get("label", "").startswith("latency") and generator_behind(r)]
    if lagging:
        names = {"tcp_relay": "bare relay"}
        out.append("§ the generator itself fell behind its schedule, a mean lag of its sends of "
                   + "; ".join(f"{num(r, 'send_lag_mean_us', 0) / 1000:.1f} ms with the "
                               f"{names.get(r.get('target'), r.get('target'))} ({r.get('label')})" for r in lagging)
                   + ": one core could not offer those events evenly, one write each, while reading every "
                   "delivery, so those runs measure the generator, not the target (in every other latency run "
                   "the mean lag was under 0.1 ms).")
        out.append("")
    out.append("CPU is the share of its core the process used (schedstat). Evenly paced events arrive one at a "
               "time, so a process sends each to each receiver with its own system call: the batching that sets "
               "the peak is gone, and half the peak is far from half the work.")
    out.append("")

    # ---- idle ----
    out.append("### Idle connections")
    out.append("")
    out.append("Each connection joined a channel (rooms of 4) and the relay, then sends a Phoenix heartbeat "
               "every 5 s (phoenix.js: every 30 s), spread evenly. RSS from /proc/PID/status before the first "
               "connection and after the last joined; CPU from /proc/PID/stat (utime + stime) over the window.")
    out.append("")
    out.append("| connections | RSS before → after | RSS per connection (after − before) ÷ N | whole RSS ÷ N | "
               "server CPU | heartbeats/s | joins/s while connecting |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|")
    idle_rows = sorted((r for r in runs if r.get("label", "").startswith("idle-")), key=lambda r: num(r, "connections", 0))
    for r in idle_rows:
        per = num(r, "rss_per_conn_bytes")
        cpu = num(r, "cpu_ms_per_s_schedstat")
        out.append(f"| {fmt_int(num(r, 'connections'))}{flags([r])} | {fmt_int(num(r, 'rss_before_kb'))} → "
                   f"{fmt_int(num(r, 'rss_after_kb'))} KiB | {fmt_int(per)} B | "
                   f"{fmt_int(num(r, 'rss_total_per_conn_bytes'))} B | "
                   f"{num(r, 'cpu_ms_per_s', 0):.0f} ms/s ({cpu or 0:.1f} by schedstat) | "
                   f"{fmt_int(num(r, 'heartbeats_per_s'))} | {fmt_int(num(r, 'joins_per_s'))} |")
    big = [r for r in idle_rows if r.get("label") == f"idle-{idle_big}"]
    if big:
        per = num(big[0], "rss_per_conn_bytes")
        verdicts.append((f"≤ 4 KiB RSS per idle joined connection at {idle_big_text}",
                         f"{fmt_int(per)} B (whole process ÷ N: {fmt_int(num(big[0], 'rss_total_per_conn_bytes'))} B)",
                         None if per is None or per < 0 else per <= 4096))
    out.append("")

    # ---- storm ----
    storm = select(runs, "storm")
    if storm:
        # the run with the median join rate
        r = sorted(storm, key=lambda x: num(x, "joins_per_s", 0))[len(storm) // 2]
        out.append("### Join storm")
        out.append("")
        out.append("Connect, WebSocket handshake, channel join and relay join (rooms of 4), as fast as possible; "
                   "the time is from connect() to peerAccepted.")
        out.append("")
        out.append(f"The run with the median rate of {len(storm)}"
                   f" (all: {', '.join(fmt_int(num(x, 'joins_per_s')) for x in storm)} joins/s).")
        out.append("")
        out.append("| connections | at a time | joins/s | p50 | p99 | max | server CPU | generator CPU |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        out.append(f"| {fmt_int(num(r, 'connections'))}{flags(storm)} | {fmt_int(num(r, 'concurrency'))} | "
                   f"{fmt_int(num(r, 'joins_per_s'))} | {num(r, 'p50_ms', 0):.1f} ms | {num(r, 'p99_ms', 0):.1f} ms | "
                   f"{num(r, 'max_ms', 0):.1f} ms | {num(r, 'server_cpu', 0):.2f} | {num(r, 'loadgen_cpu', 0):.2f} |")
        if num(r, "upgrade_p50_ms") is not None:
            out.append("")
            out.append(f"Median time in each step: TCP connect {num(r, 'connect_p50_ms', 0):.1f} ms, WebSocket upgrade "
                       f"{num(r, 'upgrade_p50_ms', 0):.1f} ms, channel join {num(r, 'join_p50_ms', 0):.1f} ms, relay join "
                       f"(to peerAccepted) {num(r, 'relay_join_p50_ms', 0):.1f} ms.")
        out.append("")

    # ---- targets ----
    head = ["### Targets", "", "| target | measured | met |", "|---|---|---|"]
    # (fanout: met only when both ratios are)
    for name, measured, ok in verdicts:
        head.append(f"| {name} | {measured} | {yes(ok)} |")
    head.append("")
    orig = []
    if ms_a:
        orig.append(f"{ms_a / 42000:.1f} × its 42,000 relay deliveries/s (200 B)")
    if big and num(big[0], "rss_total_per_conn_bytes"):
        orig.append(f"{61440 / max(1.0, num(big[0], 'rss_total_per_conn_bytes')):.0f} × less memory per connection "
                    "than its 60 KiB (whole RSS ÷ N)")
    if storm and median(storm, "joins_per_s"):
        orig.append(f"{median(storm, 'joins_per_s') / 2500:.1f} × its 2,500 joins/s")
    if orig:
        head.append("Against the original Phoenix server (one core of a similar machine): " + "; ".join(orig) + ".")
        head.append("")

    legend = ["† a run during which the server or the generator waited more than 10% of the time for its CPU "
              "(something else was running on the machine; such runs are measured again up to twice).",
              "§ a latency run in which the generator could not keep to its own schedule (see above).",
              "‼ a run with delivery errors (see the per-run table and bench/results/logs/)."]
    return head + out, legend, fan, idle_fan


def machine_lines(m):
    return [
        "### Machine",
        "",
        f"- CPU: {m.get('cpu', '?')}, {m.get('nproc', '?')} cores (nproc); memory {m.get('memory', '?')}",
        f"- Kernel: {m.get('kernel', '?')}; TCP congestion control: {m.get('congestion_control', '?')}",
        f"- Compiler: {m.get('compiler', '?')}; server built -O2 -g, waiting with {m.get('waits_with', '?')}",
        f"- Commit: {m.get('commit', '?')}; {m.get('date', '?')}",
        f"- Server on core 0, generator on core 1: {m.get('pinned', '?')}; descriptor limit {m.get('fd_limit', '?')}",
        f"- Background load before the run: {float(m.get('background_load', 0)) * 100:.0f}% of the CPUs; "
        f"the whole benchmark took {m.get('elapsed_s', '?')} s",
        "",
    ]


def per_run_table(runs):
    keys = ["label", "target", "try", "deliveries_per_s", "mb_per_s", "server_cpu", "loadgen_cpu", "server_wait",
            "loadgen_wait", "p50_us", "p99_us", "p999_us", "errors", "verified"]
    lines = ["### Every run", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in runs:
        if not r.get("label", "").startswith(("fanout", "latency")):
            continue
        lines.append("| " + " | ".join(r.get(k, "") for k in keys) + " |")
    lines.append("")
    return lines


RELAY, SERVER, SERVER_IDLE = "#9aa5b1", "#2f6fbd", "#7fa9dc"


def svg(fan, idle_fan, machine, select_idle_runs=None):
    """Bars: deliveries/s of the bare relay and the server per scenario; on the server's, the ratio
    of the rates and (smaller) the ratio of deliveries per CPU-second."""
    groups = []
    for s, (title, _) in SCENARIOS.items():
        sv, rl, ms, mr = fan[s]
        es, er = per_cpu_second(sv), per_cpu_second(rl)
        cpu_ratio = es / er if es and er else None
        bars = [("relay", mr, RELAY, None), ("server", ms, SERVER, (ms / mr if ms and mr else None, cpu_ratio))]
        if s == "A" and idle_fan:
            ei = per_cpu_second(select_idle_runs[0]) if select_idle_runs else None
            bars.append((f"+{int(machine.get('idle_big', 10000)) // 1000}k idle", idle_fan, SERVER_IDLE,
                         (idle_fan / mr if mr else None, ei / er if ei and er else None)))
        groups.append((title, bars))
    top = max([b[1] or 0 for _, bars in groups for b in bars] + [1])
    width, height, left, bottom, plot_h = 760, 420, 70, 70, 240
    bar_w, gap, group_gap = 70, 14, 70
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="Helvetica, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
           'Relay fan-out: deliveries per second (higher is better)</text>']
    base_y = height - bottom
    legend = [(RELAY, "bare TCP relay (epoll, length-prefixed, no WebSocket/JSON)"), (SERVER, "videoroom_signal demo server"),
              (SERVER_IDLE, f"the server beside {int(machine.get('idle_big', 10000)):,} idle joined connections")]
    ly = 42
    for colour, text in legend:
        out.append(f'<rect x="{left + 20}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{left + 38}" y="{ly + 1}" fill="#333">{html.escape(text)}</text>')
        ly += 17
    # axis and grid
    step = 10 ** max(0, len(str(int(top))) - 1)
    while top / step < 4:
        step /= 2
    v = 0.0
    while v <= top * 1.001:
        y = base_y - plot_h * v / top
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 20}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{fmt_rate(v)}</text>')
        v += step
    out.append(f'<line x1="{left}" y1="{base_y}" x2="{width - 20}" y2="{base_y}" stroke="#333"/>')
    x = left + 30
    for title, bars in groups:
        gx = x
        for name, value, colour, ratio in bars:
            h = plot_h * (value or 0) / top
            out.append(f'<rect x="{x}" y="{base_y - h:.1f}" width="{bar_w}" height="{h:.1f}" fill="{colour}">'
                       f'<title>{html.escape(name)}: {fmt_int(value)} deliveries/s</title></rect>')
            out.append(f'<text x="{x + bar_w / 2}" y="{base_y - h - 6:.1f}" text-anchor="middle">{fmt_rate(value)}/s</text>')
            if ratio is not None and ratio[0] is not None:
                out.append(f'<text x="{x + bar_w / 2}" y="{base_y - h - 21:.1f}" text-anchor="middle" font-weight="bold" '
                           f'fill="{colour}">{ratio[0]:.2f}× relay</text>')
                if ratio[1] is not None:
                    out.append(f'<text x="{x + bar_w / 2}" y="{base_y - h - 35:.1f}" text-anchor="middle" '
                               f'font-size="10" fill="{colour}">({ratio[1]:.2f}× per CPU-s)</text>')
            out.append(f'<text x="{x + bar_w / 2}" y="{base_y + 15}" text-anchor="middle" font-size="10" fill="#333">'
                       f'{html.escape(name)}</text>')
            x += bar_w + gap
        out.append(f'<text x="{(gx + x - gap) / 2}" y="{base_y + 34}" text-anchor="middle" font-weight="bold">'
                   f'{html.escape(title)}</text>')
        x += group_gap
    note = (f"{machine.get('cpu', '?')}, {machine.get('nproc', '?')} cores, {machine.get('kernel', '?')}; "
            f"server and relay on core 0, load generator on core 1; median of {machine.get('repeats', '3')} runs, "
            f"{machine.get('date', '')}")
    out.append(f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle" font-size="10" fill="#555">'
               f'{html.escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) == 6 and argv[1] == "--median":
        value = median(select(parse(argv[2]), argv[3], "tcp_relay" if argv[4] == "relay" else "server"), argv[5])
        print("" if value is None else f"{value:.0f}")
        return 0
    if len(argv) == 6 and argv[1] == "--report":
        runs = parse(argv[2])
        machine = {}
        for line in open(argv[3]):
            if "=" in line:
                key, value = line.rstrip("\n").split("=", 1)
                machine[key] = value
        body, legend, fan, idle_fan = build(runs, machine)
        print("\n".join(body + legend))
        md = ["# Benchmark results", "",
              "Written by `make bench` (bench/run.sh); bench/README.md explains the scenarios and the method.", "",
              "![fan-out: deliveries per second, server vs the bare TCP relay](fanout.svg)", ""]
        md += machine_lines(machine) + body + legend + [""] + per_run_table(runs)
        with open(argv[4], "w") as f:
            f.write("\n".join(md))
        with open(argv[5], "w") as f:
            f.write(svg(fan, idle_fan, machine, [select(runs, "fanout-A-idle", "server")]))
        print(f"\nwritten: {argv[4]}, {argv[5]}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
