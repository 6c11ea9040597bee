"""The checks and the table of scripts/http-load, from the files its run leaves.

Each backend's directory (RUN/BACKEND/) holds: `figures` (RSS samples, the final HTTP
status and exit status, "name value" lines), wrk-alone.json and wrk-held.json (wrk's
summary), holder.out (http-hold's ready/status/released lines) and the node's
/status.json before the hold, while held and after wrk (status-*.json).

Prints one "FAIL backend: why" line per failed check and exits 1 if there was one;
writes the markdown table and every figure as JSON either way.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def load_events(path):
    events = {}
    try:
        with open(path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                events.setdefault(event.get("event"), []).append(event)
    except OSError:
        pass
    return events


def load_figures(path):
    figures = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    figures[parts[0]] = int(parts[1])
    except OSError:
        pass
    return figures


REFUSALS = ("refused503", "closedBeforeReply", "reset")
OTHERS = ("timedOut", "connectFailed", "otherStatus")
OUTCOMES = ("answered",) + REFUSALS + OTHERS


def tcp(status, name):
    """A TcpServer figure of a /status.json, or None."""
    if not status or not isinstance(status.get("tcp"), dict):
        return None
    value = status["tcp"].get(name)
    return value if isinstance(value, int) else None


def median_wrk(rounds):
    """Several wrk runs as one: the median of each figure (requests/s, p50, p99), the sum of the errors."""
    rounds = [r for r in rounds if r]
    if not rounds:
        return None
    med = lambda values: sorted(values)[len(values) // 2]
    summary = {k: sum(r[k] for r in rounds) for k in ("connectErrors", "readErrors", "writeErrors", "timeouts",
                                                       "statusErrors")}
    summary.update(requests=round(med([r["requests"] / (r["durationUs"] / 1e6) for r in rounds])), durationUs=1_000_000,
                   p50Us=med([r["p50Us"] for r in rounds]), p99Us=med([r["p99Us"] for r in rounds]),
                   fewestRequests=min(r["requests"] for r in rounds), rounds=len(rounds))
    return summary


def rounds_of(d, prefix):
    """The median of the wrk runs PREFIX-N.json in directory d (phase a: wrk-alone-, phase a2: wrk-page-)."""
    return median_wrk([load_json(os.path.join(d, name)) for name in sorted(os.listdir(d))
                       if name.startswith(prefix) and name.endswith(".json")] if os.path.isdir(d) else [])


def collect(run, backend):
    d = os.path.join(run, backend)
    events = load_events(os.path.join(d, "holder.out"))
    return {
        "figures": load_figures(os.path.join(d, "figures")),
        "wrkAlone": rounds_of(d, "wrk-alone-"),
        "wrkPage": rounds_of(d, "wrk-page-"),
        "wrkHeld": load_json(os.path.join(d, "wrk-held.json")),
        "wrkFirst": load_json(os.path.join(d, "wrk-first.json")),
        "readyDuring": (load_events(os.path.join(d, "holder-during.out")).get("ready") or [None])[0],
        "releasedDuring": (load_events(os.path.join(d, "holder-during.out")).get("released") or [None])[0],
        "ready": (events.get("ready") or [None])[0],
        "released": (events.get("released") or [None])[0],
        "statusBefore": load_json(os.path.join(d, "status-before-hold.json")),
        "statusHeld": load_json(os.path.join(d, "status-held.json")),
        "statusAfterWrk": load_json(os.path.join(d, "status-held-after-wrk.json")),
        "statusEnd": load_json(os.path.join(d, "status-end.json")),
    }


def check(backend, r, count, fail):
    """Every check of one backend's run; `fail(message)` for each that does not hold."""
    check_hold(backend, r["ready"], r["released"], count, fail, "")
    check_hold(backend, r["readyDuring"], r["releasedDuring"], count, fail, "opened during wrk: ")
    ready = r["ready"]
    if ready:
        refused = sum(ready[k] for k in REFUSALS)
        before, held = r["statusBefore"], r["statusHeld"]
        if held:
            open_now = tcp(held, "incomingOpen")
            if open_now != ready["held"]:
                fail(f"the node says {open_now} incoming sockets are open; the holder holds {ready['held']}")
            if before:
                pairs = [
                    ("accepted", tcp(held, "accepted"), tcp(before, "accepted"), ready["established"],
                     "connections established"),
                    ("refusedDescriptors+refusedAtLimit",
                     none_sum(tcp(held, "refusedDescriptors"), tcp(held, "refusedAtLimit")),
                     none_sum(tcp(before, "refusedDescriptors"), tcp(before, "refusedAtLimit")), refused,
                     "connections refused (503, closed or reset)"),
                ]
                for name, after, earlier, holder, what in pairs:
                    if after is None or earlier is None:
                        fail(f"the node's /status.json has no tcp.{name}")
                    elif after - earlier != holder:
                        fail(f"the node counts {after - earlier} more tcp.{name} during the hold; "
                             f"the holder saw {holder} {what}")
    end = r["statusEnd"]
    if end and r["figures"].get("endStatus") == 200 and tcp(end, "incomingOpen") != 1:
        fail(f"after every client left, the node still counts {tcp(end, 'incomingOpen')} open incoming sockets "
             "(1 expected: the request asking)")
    for key, what in (("wrkAlone", "wrk alone"), ("wrkHeld", "wrk with the connections held"),
                      ("wrkFirst", "wrk connected before the connections were opened")):
        w = r[key]
        if not w:
            continue
        if w.get("fewestRequests", w["requests"]) == 0:
            fail(f"{what}: not one reply")
        errors = {k: w[k] for k in ("connectErrors", "readErrors", "writeErrors", "timeouts", "statusErrors") if w[k]}
        # Legacy with its descriptors taken: wrk's sockets are past 1023 and get a 503 each, by design.
        if key == "wrkHeld" and backend == "legacy":
            errors = {k: v for k, v in errors.items() if k not in ("statusErrors", "readErrors")}
        if errors:
            fail(f"{what}: errors {errors}")


def check_hold(backend, ready, released, count, fail, prefix):
    """The holder's own counts: every connection has one outcome, epoll answers them all,
    legacy answers or refuses each (never more than select can watch), none closed while held."""
    if ready:
        total = sum(ready.get(k, 0) for k in OUTCOMES)
        if total != count:
            fail(f"{prefix}the holder's outcomes add up to {total}, not {count}: {outcome_text(ready)}")
        answered = ready["answered"]
        others = sum(ready[k] for k in OTHERS)
        if backend == "epoll" and answered != count:
            fail(f"{prefix}only {answered} of {count} connections were answered and held ({outcome_text(ready)})")
        if backend == "legacy":
            if others:
                fail(f"{prefix}{others} of {count} connections were neither answered nor refused "
                     f"({outcome_text(ready)})")
            if answered == 0:
                fail(f"{prefix}not one of {count} connections was answered")
            if answered > 1024:
                fail(f"{prefix}{answered} connections answered and held: more than select() can watch (fd < 1024)")
    if released and ready:
        if released["closedWhileHeld"] or released["held"] != ready["held"]:
            fail(f"{prefix}the node closed {released['closedWhileHeld']} of {ready['held']} held connections while "
                 "they were held (each was idle, well within the node's idle timeout)")
        if released["unexpectedBytes"]:
            fail(f"{prefix}{released['unexpectedBytes']} bytes arrived unasked on held connections")


def none_sum(*values):
    return None if any(v is None for v in values) else sum(values)


def outcome_text(ready):
    return ", ".join(f"{k} {ready.get(k, 0)}" for k in OUTCOMES)


def fmt(value, digits=0):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}" if digits else f"{round(value)}"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}"
    return "—"


def wrk_figures(w):
    if not w:
        return {}
    seconds = w["durationUs"] / 1e6
    ok = w["requests"] - w["statusErrors"]
    return {
        "rps": w["requests"] / seconds,
        "ok_rps": ok / seconds,
        "non2xx_rps": w["statusErrors"] / seconds,
        "p50": w["p50Us"] / 1000,
        "p99": w["p99Us"] / 1000,
        "errors": f"{w['connectErrors']}/{w['readErrors']}/{w['writeErrors']}/{w['timeouts']}",
    }


def nginx_version():
    for binary in ("nginx", "/usr/sbin/nginx"):
        try:
            out = subprocess.run([binary, "-v"], capture_output=True, text=True).stderr.strip()
            return out.split(": ", 1)[-1] if out else "nginx"
        except OSError:
            continue
    return "nginx"


def table(results, backends, count, seconds, label, source, load, rounds, results_dir):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine())
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {now} on nproc {os.cpu_count()}, {cpu} (/proc/cpuinfo), Linux {platform.release()}; the node "
        "pinned to CPU 0, wrk and the holder to CPU 1; ulimit -n "
        f"{os.sysconf('SC_OPEN_MAX')}; load average before the run {load}.",
        "",
        f"Command: `{label}` ({source})",
        "",
        "| phase | metric | " + " | ".join(backends) + (" | epoll/legacy |" if len(backends) == 2 else " |"),
        "| --- | --- | " + " | ".join("---:" for _ in backends) + (" | ---: |" if len(backends) == 2 else " |"),
    ]

    def row(phase, metric, values, show_ratio=True):
        cells = [fmt(v[0], v[1]) if isinstance(v, tuple) else fmt(v) for v in values]
        line = f"| {phase} | {metric} | " + " | ".join(cells) + " |"
        if len(backends) == 2:
            raw = [v[0] if isinstance(v, tuple) else v for v in values]
            line += f" {ratio(raw[0], raw[1]) if show_ratio else '—'} |"
        lines.append(line)

    per = [results[b] for b in backends]
    alone = [wrk_figures(r["wrkAlone"]) for r in per]
    heldw = [wrk_figures(r["wrkHeld"]) for r in per]
    ready = [r["ready"] or {} for r in per]
    fig = [r["figures"] for r in per]
    wrk = f"a. wrk -t2 -c32 -d{seconds}s" + (f", median of {rounds}" if rounds > 1 else "")
    row(wrk, "requests/s", [a.get("rps") for a in alone])
    row(wrk, "p50 ms", [(a.get("p50"), 2) for a in alone])
    row(wrk, "p99 ms", [(a.get("p99"), 2) for a in alone])
    row(wrk, "errors: connect/read/write/timeout (all rounds)", [a.get("errors") for a in alone], False)
    row(wrk, "non-2xx replies (all rounds)", [(r["wrkAlone"] or {}).get("statusErrors") for r in per], False)
    hold = f"b. {count:,} held"
    row(hold, "established", [x.get("established") for x in ready])
    row(hold, "answered and held open", [x.get("answered") for x in ready])
    row(hold, "refused: 503 / closed / reset",
        [" / ".join(str(x[k]) for k in REFUSALS) if x else None for x in ready], False)
    row(hold, "timed out / connect failed / other status",
        [" / ".join(str(x[k]) for k in OTHERS) if x else None for x in ready], False)
    row(hold, f"time until all {count:,} settled, ms", [x.get("ms") for x in ready])
    row(hold, "first reply p50 / p99 ms",
        [f"{x['answerP50Ms']:.1f} / {x['answerP99Ms']:.1f}" if x else None for x in ready], False)
    row(hold, "node's tcp.incomingOpen", [tcp(r["statusHeld"], "incomingOpen") for r in per])
    row(hold, "node's tcp.refusedDescriptors (during the hold)",
        [None if tcp(r["statusHeld"], "refusedDescriptors") is None or tcp(r["statusBefore"], "refusedDescriptors") is None
         else tcp(r["statusHeld"], "refusedDescriptors") - tcp(r["statusBefore"], "refusedDescriptors") for r in per], False)
    row(hold, "closed by the node while held", [(r["released"] or {}).get("closedWhileHeld") for r in per], False)
    during = f"b. wrk, {count:,} held"
    row(during, "requests/s answered 200", [h.get("ok_rps") for h in heldw])
    row(during, "non-2xx replies/s (503)", [h.get("non2xx_rps") for h in heldw], False)
    row(during, "p50 ms", [(h.get("p50"), 2) for h in heldw])
    row(during, "p99 ms", [(h.get("p99"), 2) for h in heldw])
    row(during, "errors: connect/read/write/timeout", [h.get("errors") for h in heldw], False)
    row(during, "200s/s ÷ wrk alone",
        [(h["ok_rps"] / a["rps"], 2) if h and a and a["rps"] else None for h, a in zip(heldw, alone)])
    first = [wrk_figures(r["wrkFirst"]) for r in per]
    during_ready = [r["readyDuring"] or {} for r in per]
    early = f"b. wrk first, {count:,} arrive"
    row(early, "requests/s answered 200", [f.get("ok_rps") for f in first])
    row(early, "p50 ms", [(f.get("p50"), 2) for f in first])
    row(early, "p99 ms", [(f.get("p99"), 2) for f in first])
    row(early, "errors: connect/read/write/timeout", [f.get("errors") for f in first], False)
    row(early, "non-2xx replies", [(r["wrkFirst"] or {}).get("statusErrors") for r in per], False)
    row(early, "newcomers answered / refused",
        [f"{x['answered']} / {sum(x[k] for k in REFUSALS)}" if x else None for x in during_ready], False)
    row("idle CPU", "node, ms CPU per s, none held", [f.get("cpuIdle") for f in fig])
    row("idle CPU", "node, ms CPU per s, the connections of b. held", [f.get("cpuIdleHeld") for f in fig])
    mib = lambda f, k: (f[k] / 1024, 1) if k in f else None
    row("RSS", "node at start, MiB", [mib(f, "rssStart") for f in fig])
    row("RSS", "after wrk alone (none held), MiB", [mib(f, "rssWithout") for f in fig])
    row("RSS", f"with the connections held, MiB", [mib(f, "rssHeld") for f in fig])
    row("RSS", "held, after wrk again, MiB", [mib(f, "rssHeldAfterWrk") for f in fig])
    row("RSS", "per held connection, KiB",
        [((f["rssHeld"] - f["rssWithout"]) / x["held"], 2) if "rssHeld" in f and "rssWithout" in f and x.get("held")
         else None for f, x in zip(fig, ready)])
    row("RSS", "after they are let go, MiB", [mib(f, "rssEnd") for f in fig])
    row("RSS", f"with the second {count:,} held (wrk first), MiB", [mib(f, "rssHeldAgain") for f in fig])
    row("c. after", "GET /status.json; exit status after SIGTERM",
        [f"{f['endStatus']}; {f['exitStatus']}" if "endStatus" in f and "exitStatus" in f else None for f in fig],
        False)
    nginx_dir = os.path.join(results_dir, "nginx")
    nginx = rounds_of(nginx_dir, "wrk-alone-")
    if nginx:
        size = os.path.getsize(os.path.join(nginx_dir, "www", "status.json"))
        page = os.path.join(nginx_dir, "www", "index.html")
        lines += [
            "",
            f"Beside phases a and a2, in the same rotation: nginx ({nginx_version()}, one process: "
            "`master_process off`, `worker_processes 1`, pinned to CPU 0 like the node) serving the node's "
            f"/status.json ({size} bytes) and its console page ({os.path.getsize(page) if os.path.exists(page) else '?'} "
            "bytes, as index.html for GET /) as static files of the same bytes, under the same wrk:",
            "",
            "| path | server | requests/s | p50 ms | p99 ms | requests/s ÷ nginx |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for path, key, prefix in (("/status.json", "wrkAlone", "wrk-alone-"), ("/", "wrkPage", "wrk-page-")):
            n = wrk_figures(rounds_of(nginx_dir, prefix))
            for b in backends:
                a = wrk_figures(results[b][key])
                lines.append(f"| {path} | node, {b} | {fmt(a.get('rps'))} | {fmt(a.get('p50'), 2)} | "
                             f"{fmt(a.get('p99'), 2)} | {ratio(a.get('rps'), n.get('rps'))} |")
            lines.append(f"| {path} | nginx | {fmt(n.get('rps'))} | {fmt(n.get('p50'), 2)} | {fmt(n.get('p99'), 2)} | "
                         "1.00 |")
    lines += [
        "",
        "Phase a alternates between the two nodes (both running) in rotating order; the others run one node at "
        "a time. Errors are wrk's socket errors; a 503 is a whole reply, counted apart as non-2xx. The holder "
        "(scripts/peers/http-hold.c) opens at most 128 connections at a time; \"settled\" is until every "
        "one had its reply or its refusal.",
    ]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True)
    p.add_argument("--backends", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--seconds", type=int, required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--load", default="?")
    p.add_argument("--markdown", required=True)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    backends = args.backends.split(",")
    results = {b: collect(args.run, b) for b in backends}
    failures = []
    for b in backends:
        check(b, results[b], args.count, lambda message, b=b: failures.append(f"FAIL {b}: {message}"))
    with open(args.markdown, "w") as f:
        f.write(table(results, backends, args.count, args.seconds, args.label, args.source, args.load,
                      max([(results[b]["wrkAlone"] or {}).get("rounds", 1) for b in backends]), args.run))
    with open(args.json, "w") as f:
        json.dump({"label": args.label, "source": args.source, "count": args.count, "seconds": args.seconds,
                   "results": results, "failures": failures}, f, indent=1)
    for line in failures:
        print(line)
    if failures:
        with open(os.path.join(args.run, "failures"), "a") as f:
            f.write("".join(line + "\n" for line in failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
