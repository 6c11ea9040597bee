"""The measurements of scripts/syscall-profile and its table.

A window is a fixed stretch of wall time over a running process, measured one of two ways:
  untraced  CPU % from /proc/PID/stat (utime + stime of every thread) and context switches a
            second from /proc/PID/task/*/status: what the process costs, undisturbed;
  traced    `strace -f -p PID` attached for the window: every call, every signal delivered, and
            the calls a signal interrupted, a second; and CPU % again, which strace inflates
            (each call and signal stops the process twice), so it is shown apart.
"""

import os
import signal
import subprocess
import threading
import time
from collections import Counter

from strace_trace import EPOLL_WAIT_CALLS, SELECT_CALLS, child_pids, proc_stat_fields, read_trace

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ATTACH_TIMEOUT_S = 15
DETACH_TIMEOUT_S = 30

# (heading, key): the columns of the table after subject and phase, in order.
COLUMNS = (
    ("syscalls/s", "calls"),
    ("pselect6+select/s", "select"),
    ("epoll_wait/s", "epoll_wait"),
    ("setitimer/s", "setitimer"),
    ("rt_sigreturn/s", "rt_sigreturn"),
    ("SIGALRM/s", "SIGALRM"),
    ("SIGVTALRM/s", "SIGVTALRM"),
    ("interrupted/s", "interrupted"),
    ("CPU % traced", "cpu_traced"),
    ("CPU % untraced", "cpu_untraced"),
    ("ctx switches/s untraced", "switches_untraced"),
    ("replies/s untraced, traced", "replies"),
)


class ProfileError(Exception):
    pass


def node_pid(node, build) -> int:
    """The node's own process (scripts/syscall-profile, scripts/lib/original_bench.py): `ip netns
    exec` and run-node.sh exec it, but look down the tree all the same."""
    wanted = "gb" if build == "original" else "loop-harness"
    pids = [node.process.pid]
    while pids:
        pid = pids.pop(0)
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == wanted:
                    return pid
        except OSError:
            continue
        pids += child_pids(pid)
    raise ProfileError(f"no process named {wanted} under {node.process.pid}")


def cpu_seconds(pid: int) -> float:
    fields = proc_stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def context_switches(pid: int) -> int:
    """Voluntary and involuntary switches of every thread alive now: each a wake-up or a preemption."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return total


def untraced_window(pid: int, seconds: float) -> dict:
    try:
        cpu0, switches0, t0 = cpu_seconds(pid), context_switches(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, switches1, t1 = cpu_seconds(pid), context_switches(pid), time.monotonic()
    except OSError:
        raise ProfileError(f"process {pid} went away during the untraced window")
    wall = t1 - t0
    return {"cpu_untraced": 100 * (cpu1 - cpu0) / wall, "switches_untraced": (switches1 - switches0) / wall,
            "untraced_s": wall}


def traced_window(pid: int, seconds: float, trace_file: str) -> dict:
    """strace attached to every thread of `pid` for `seconds`, then detached (SIGINT): the counts a second."""
    tracer = subprocess.Popen(["strace", "-f", "-p", str(pid), "-o", trace_file],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    messages = []
    attached = threading.Event()

    def collect():
        for line in tracer.stderr:
            messages.append(line.rstrip("\n"))
            if "attached" in line:
                attached.set()
    threading.Thread(target=collect, daemon=True).start()
    if not attached.wait(ATTACH_TIMEOUT_S):
        stop_tracer(tracer)
        raise ProfileError(f"strace did not attach to process {pid} within {ATTACH_TIMEOUT_S} s: "
                           + " / ".join(messages[-5:]))
    try:
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
    except OSError:
        stop_tracer(tracer)
        raise ProfileError(f"process {pid} went away during the traced window")
    stop_tracer(tracer)
    wall = t1 - t0
    counts = count_trace(trace_file)
    if counts["calls"] == 0:
        raise ProfileError(f"the trace of process {pid} holds no call: {trace_file}")
    figures = {key: value / wall for key, value in counts.items() if key != "by_call"}
    figures["cpu_traced"] = 100 * (cpu1 - cpu0) / wall
    figures["traced_s"] = wall
    figures["by_call"] = {name: n / wall for name, n in counts["by_call"].items()}
    return figures


def stop_tracer(tracer: subprocess.Popen) -> None:
    """SIGINT: strace detaches from every thread, which runs on untouched."""
    if tracer.poll() is None:
        tracer.send_signal(signal.SIGINT)
    try:
        tracer.wait(DETACH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.wait()
        raise ProfileError(f"strace did not detach within {DETACH_TIMEOUT_S} s")


def count_trace(path: str) -> dict:
    """Calls (each once, an unfinished one by its first half), calls by name, signals delivered by
    name and calls a signal interrupted, over an `strace -f` file."""
    by_call, signals = Counter(), Counter()
    interrupted = 0
    for line in read_trace(path):
        if line.kind == "call":
            by_call[line.name] += 1
        elif line.kind == "signal":
            signals[line.name] += 1
        if line.kind in ("call", "resumed") and line.interrupted:
            interrupted += 1
    return {
        "calls": sum(by_call.values()),
        "select": sum(by_call[name] for name in SELECT_CALLS),
        "epoll_wait": sum(by_call[name] for name in EPOLL_WAIT_CALLS),
        "setitimer": by_call["setitimer"],
        "rt_sigreturn": by_call["rt_sigreturn"],
        "SIGALRM": signals["SIGALRM"],
        "SIGVTALRM": signals["SIGVTALRM"],
        "interrupted": interrupted,
        "by_call": by_call,
    }


# --------------------------------------------------------------------------
# The table

def number(value) -> str:
    """1,234 / 12.3 / 0.05 / 0: the precision a rate or a share needs to be compared."""
    if value is None:
        return "—"
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def cell(row: dict, key: str) -> str:
    if key == "replies":
        if row.get("replies_untraced") is None:
            return "—"
        return f"{number(row['replies_untraced'])}, {number(row['replies_traced'])}"
    return number(row.get(key))


def table(rows: list) -> str:
    """The markdown table: one row per subject and phase; a skipped or failed subject says so in its rows."""
    lines = ["| subject | phase | " + " | ".join(heading for heading, _ in COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        if row.get("skipped"):
            cells = [f"absent, SKIPPED ({row['skipped']})"] + ["—"] * (len(COLUMNS) - 1)
        elif row.get("failed"):
            cells = [f"FAILED ({row['failed'].replace('|', '/')})"] + ["—"] * (len(COLUMNS) - 1)
        else:
            cells = [cell(row, key) for _, key in COLUMNS]
        lines.append(f"| {row['subject']} | {row['phase']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def top_calls(rows: list, count: int = 6) -> str:
    """The most frequent calls of each measured row, a second (traced window)."""
    lines = ["| subject | phase | most frequent calls a second (traced window) |", "|---|---|---|"]
    for row in rows:
        if row.get("skipped") or row.get("failed"):
            continue
        calls = sorted(row["by_call"].items(), key=lambda item: (-item[1], item[0]))[:count]
        lines.append(f"| {row['subject']} | {row['phase']} | "
                     + ", ".join(f"{name} {number(rate)}" for name, rate in calls) + " |")
    return "\n".join(lines)
