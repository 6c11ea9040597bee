"""scripts/rolling-migration: a cluster moved host by host from one build to another
(legacy to epoll by default, or from the original) and one host rolled back, under load,
with a table per phase.
Exit 1 if any request failed or ended twice, any node did not exit 0, or any wait
ran out; 2 on a usage error."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, harness_paths  # noqa: E402
from flavours import clean_environment  # noqa: E402


def parse():
    p = argparse.ArgumentParser(prog="scripts/rolling-migration", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hosts", type=int, default=4, help="hosts in the cluster (4)")
    p.add_argument("--rate", type=int, default=200, help="requests a second from the load client (200)")
    p.add_argument("--from", dest="source", choices=["legacy", "epoll", "original"], default="legacy",
                   help="the build the cluster starts on (legacy)")
    p.add_argument("--to", dest="target", choices=["legacy", "epoll", "original"], default="epoll",
                   help="the build it moves to (epoll)")
    p.add_argument("--netns", action="store_true", help="each node in a network namespace of its own (root)")
    p.add_argument("--loss", type=int, default=0, help="percent of UDP datagrams dropped, with --netns (0)")
    p.add_argument("--steady-seconds", type=float, default=3, help="length of the steady phases (3)")
    p.add_argument("--wait-seconds", type=float, default=30, help="bound of each wait for a host (30)")
    p.add_argument("--markdown", action="store_true", help="the tables as Markdown (for MIGRATION.md)")
    p.add_argument("--keep-logs", metavar="DIR", help="keep the hosts file and every log in DIR")
    p.add_argument("--epoll-harness", metavar="PATH", help=argparse.SUPPRESS)   # stand-ins, for the script's test
    p.add_argument("--legacy-harness", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.hosts < 2:
        p.error("--hosts: at least 2 (one moves while the others serve)")
    if args.rate < 1:
        p.error("--rate: at least 1")
    if args.source == args.target:
        p.error("--from and --to: two different builds")
    if "original" in (args.source, args.target) and not args.netns:
        p.error("the original runs only in network namespaces of its own: add --netns")
    if args.loss and not args.netns:
        p.error("--loss needs --netns")
    if not 0 <= args.loss < 100:
        p.error("--loss: a percentage 0 to 99")
    return args


class Load:
    """`loop-harness load --phases`, fed phase names on its standard input."""

    def __init__(self, cluster, rate, log_path, request="echo"):
        cmd = cluster.client_command("epoll", ["load", "--hosts", cluster.hosts_file, "--rate", str(rate),
                                               "--request", request,
                                               "--seconds", "0", "--phases", "--json", "--give-up-ms", "30000",
                                               "--ping-interval-ms", str(cluster.ping_interval_ms),
                                               "--dead-after-ms", str(cluster.dead_after_ms)])
        self.log_path = log_path
        self.process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(log_path, "w"), text=True, env=clean_environment())

    def phase(self, name):
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()

    def finish(self, timeout=60):
        try:
            # communicate closes the input: the end of the last phase.
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise ClusterError(f"the load client did not finish within {timeout} s of its last phase")
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise ClusterError(f"the load client printed no report (exit {self.process.returncode}): "
                               + open(self.log_path).read()[-2000:])
        return json.loads(lines[-1]), self.process.returncode


def fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows, markdown):
    heads = ["phase", "builds", "sent", "completed", "retried", "failed", "p50 ms", "p99 ms", "host down ms"]
    if markdown:
        out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in rows + [heads]) for i in range(len(heads))]
    line = lambda r: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(heads)] + [line(r) for r in rows])


def main():
    args = parse()
    overrides = {"epoll": args.epoll_harness, "legacy": args.legacy_harness}
    try:
        # The load client runs on the epoll build, whichever builds the nodes run.
        harness = harness_paths(sorted({"epoll", args.source, args.target}), overrides)
    except ClusterError as error:
        print(f"rolling-migration: {error}", file=sys.stderr)
        return 1
    # Dead after 2 s: a host killed outright is noticed well within a phase; a graceful
    # exit is noticed at once anyway (its going-down note).
    cluster = Cluster(args.hosts, harness, netns=args.netns, loss=args.loss, workdir=args.keep_logs,
                      dead_after_ms=2000)

    def terminated(*_):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, terminated)
    load = None
    failures = []
    phases = []  # (name, builds, moved host or None, down ms)
    try:
        cluster.setup_network()
        where = f"network namespaces, {args.loss}% UDP loss" if args.netns else "loopback addresses"
        print(f"== {args.hosts} hosts on {where}; hosts file {cluster.hosts_file}", flush=True)
        for node in cluster.nodes:
            cluster.start(node, args.source)
        for node in cluster.nodes:
            cluster.wait_seen_alive(node.id, args.wait_seconds)
        if args.netns and args.source != "original":
            # Admin requests are obeyed from members only: the load client's namespace is not one.
            refused = subprocess.run(cluster.client_command("epoll", ["shutdown", "--to", cluster.nodes[0].address]),
                                     capture_output=True, text=True, env=clean_environment())
            if refused.returncode == 0 or "refused" not in refused.stdout + refused.stderr:
                raise ClusterError(f"a save-and-exit from the non-member {cluster.client_command('epoll', [])[3]} "
                                   f"was not refused: {refused.stdout}{refused.stderr}")
            print("== a save-and-exit from the load client's address (not a member) was refused", flush=True)
        # A request both kinds of node serve when the original is in the cluster: the 3-byte ping.
        request = "ping" if "original" in (args.source, args.target) else "echo"
        load = Load(cluster, args.rate, os.path.join(cluster.workdir, "load.log"), request)

        def steady(name):
            load.phase(name)
            phases.append((name, cluster.builds(), None))
            time.sleep(args.steady_seconds)

        def move(node, build, name):
            load.phase(name)
            before = cluster.down_ms(node.id)
            started = time.monotonic()
            cluster.shutdown(node)
            cluster.start(node, build)
            cluster.wait_seen_alive(node.id, args.wait_seconds)
            after = cluster.down_ms(node.id)
            down = max((after[o] - before.get(o, 0) for o in after), default=None)
            print(f"== {name}: {time.monotonic() - started:.1f} s, down {down} ms as seen by the others", flush=True)
            phases.append((name, cluster.builds(), down))

        steady(f"all {args.source}")
        for node in cluster.nodes:
            move(node, args.target, f"host {node.id} → {args.target}")
        steady(f"all {args.target}")
        back = cluster.nodes[-2] if len(cluster.nodes) > 1 else cluster.nodes[0]
        move(back, args.source, f"host {back.id} → {args.source} (roll-back)")
        steady("mixed, after the roll-back")
        report, load_code = load.finish()
        load = None
        cluster.stop_all()
    except (ClusterError, KeyboardInterrupt) as error:
        failures.append("interrupted" if isinstance(error, KeyboardInterrupt) else str(error))
        report, load_code = None, None
        if load is not None:
            try:
                report, load_code = load.finish(timeout=40)
            except ClusterError as finish_error:
                failures.append(str(finish_error))
    finally:
        dropped = 0
        try:
            dropped = cluster.dropped_datagrams()
        finally:
            # The logs stay when something failed: they are where to look.
            cluster.close(keep_logs=bool(failures))

    if report is not None:
        rows = []
        # The client's first phase, "start", is what it sent before it read the first name: nothing
        # unless its warm-up outlasted a phase.
        if report["phases"] and report["phases"][0].get("sent"):
            phases.insert(0, ("start", phases[0][1] if phases else [], None))
        else:
            report["phases"] = report["phases"][1:]
        for index, (name, builds, down) in enumerate(phases):
            figures = report["phases"][index] if index < len(report["phases"]) else {}
            counts = ", ".join(f"{builds.count(b)} {b}" for b in (args.source, args.target))
            rows.append([name, counts, figures.get("sent", "-"), figures.get("completed", "-"),
                         figures.get("retried", "-"), figures.get("failed", "-"), fmt(figures.get("p50Ms"), 2),
                         fmt(figures.get("p99Ms"), 2), "-" if down is None else down])
        print(table(rows, args.markdown))
        total = (f"total: {report['sent']} sent, {report['completed']} completed, {report['retried']} retried, "
                 f"{report['failed']} failed, {report['corrupt']} corrupt, {report['duplicateCompletions']} ended twice, "
                 f"p50 {fmt(report['p50Ms'], 2)} ms, p99 {fmt(report['p99Ms'], 2)} ms")
        if args.netns and args.loss:
            total += f"; {dropped} datagrams dropped by nftables"
        print(total)
        for key in ("failed", "corrupt", "duplicateCompletions", "unfinished"):
            if report.get(key, 0):
                failures.append(f"{report[key]} request(s) {key}")
        if report.get("sent", 0) == 0:
            failures.append("the load client sent nothing")
        if load_code not in (0, None) and not failures:
            failures.append(f"the load client exited {load_code}")
    elif not failures:
        failures.append("no report from the load client")
    if failures:
        for failure in failures:
            print(f"rolling-migration: FAIL: {failure}", file=sys.stderr)
        if args.keep_logs is None:
            print(f"rolling-migration: logs kept in {cluster.workdir}", file=sys.stderr)
        return 1
    print("rolling-migration: passed: every request answered, none twice; every node exited 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
