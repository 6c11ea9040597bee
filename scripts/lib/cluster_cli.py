"""scripts/cluster: starts a cluster and keeps it running until Ctrl-C (or
--seconds), then saves and exits every node. Exit 1 if a node fails to start or
to exit 0."""

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import Cluster, ClusterError, harness_paths  # noqa: E402


def main():
    p = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__)
    p.add_argument("--hosts", type=int, default=4, help="how many nodes (4)")
    p.add_argument("--build", choices=["epoll", "legacy"], default="epoll", help="every node's build (epoll)")
    p.add_argument("--builds", metavar="LIST", help="each node's build, comma-separated: legacy,epoll,…")
    p.add_argument("--netns", action="store_true", help="each node in a network namespace of its own (root)")
    p.add_argument("--loss", type=int, default=0, help="percent of UDP datagrams dropped, with --netns")
    p.add_argument("--seconds", type=float, default=0, help="stop by itself after this long (0: at Ctrl-C)")
    p.add_argument("--hosts-file", metavar="PATH", help="also write the hosts file here")
    p.add_argument("--keep-logs", metavar="DIR", help="the nodes' logs go here (kept)")
    args = p.parse_args()
    builds = args.builds.split(",") if args.builds else [args.build] * args.hosts
    if len(builds) != args.hosts or any(b not in ("epoll", "legacy", "original") for b in builds):
        p.error(f"--builds needs {args.hosts} names, each epoll, legacy or original: {args.builds}")
    if "original" in builds and not args.netns:
        p.error("an original node runs only in a network namespace of its own: add --netns")
    if args.loss and not args.netns:
        p.error("--loss needs --netns")
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        cluster = Cluster(args.hosts, harness_paths(builds, {}), netns=args.netns, loss=args.loss, workdir=args.keep_logs)
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    try:
        cluster.setup_network()
        for node, build in zip(cluster.nodes, builds):
            cluster.start(node, build)
        if args.hosts_file:
            with open(cluster.hosts_file) as src, open(args.hosts_file, "w") as dst:
                dst.write(src.read())
        print(f"hosts file: {args.hosts_file or cluster.hosts_file}")
        for node in cluster.nodes:
            print(f"host {node.id}: {node.build:<6} {node.address:<18} console {node.console}")
        run_in = f"ip netns exec {cluster.nodes[0].namespace} " if args.netns else ""
        print("watch: open a console (its Hosts table shows every host, live); "
              f"or {run_in}loop-harness stats --to {cluster.nodes[0].address}")
        print(f"load:  {'ip netns exec lm-client ' if args.netns else ''}loop-harness load --hosts "
              f"{args.hosts_file or cluster.hosts_file} --rate 200 --seconds 10")
        print("Ctrl-C saves and stops every node" + (f" (or in {args.seconds:g} s)" if args.seconds else ""), flush=True)
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while not stop and (deadline is None or time.monotonic() < deadline):
            for node in cluster.running():
                if node.process.poll() is not None:
                    print(f"host {node.id} exited {node.process.returncode}", flush=True)
                    node.process = None
            time.sleep(0.2)
        cluster.stop_all()
        print("every node saved and exited 0")
        return 0
    except ClusterError as error:
        print(f"cluster: {error}", file=sys.stderr)
        return 1
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())
