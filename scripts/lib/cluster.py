"""A cluster of `loop-harness serve --hosts` nodes for scripts/cluster and
scripts/rolling-migration: the hosts file, each node's build, and, with
--netns, a network namespace per node on a private bridge with nftables
dropping a share of the UDP datagrams. With --netns a node may also be the
original C++ engine (build "original", see original.py): the hosts file is then
the original's hosts.conf, which the port reads as it is.

Every wait is bounded and names what it waited for (ClusterError).
"""

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from flavours import FLAVOURS, clean_environment  # noqa: E402
import original  # noqa: E402

# The --netns plumbing's default subnet (NetnsNames), chosen not to collide with anything usual.
SUBNET = "10.213.0"
# A cluster's names are fixed by its prefix: one cluster of a prefix at a time. A second run of the
# same prefix waits for the first instead of tearing down its network (its start removes leftovers).
NETWORK_LOCK = "/run/lock/loop-migration-netns-{prefix}.lock"
NFT_TABLE = "lmloss"


class NetnsNames:
    """The names and subnet of one cluster's namespaces, bridge and veth pairs. A script that may
    run while scripts/cluster or another test runs a cluster takes a prefix and subnet of its own:
    each cluster deletes its names' leftovers before it starts, and would take the other's down."""

    def __init__(self, prefix="lm", subnet=SUBNET):
        self.prefix = prefix
        self.subnet = subnet
        self.bridge = f"{prefix}br0"
        self.client_ns = f"{prefix}-client"
        self.client_ip = f"{subnet}.200"
        self.bridge_ip = f"{subnet}.254"

    @staticmethod
    def from_environment():
        """The default names, or LOOP_NETNS=PREFIX,SUBNET (e.g. `lx,10.214.0`): a second cluster
        on the machine, beside one that runs under the default names."""
        value = os.environ.get("LOOP_NETNS")
        if not value:
            return NetnsNames()
        prefix, _, subnet = value.partition(",")
        if not (prefix.isalnum() and len(prefix) <= 4 and len(subnet.split(".")) == 3
                and all(p.isdigit() and int(p) < 256 for p in subnet.split("."))):
            raise ClusterError(f"LOOP_NETNS={value!r}: PREFIX,SUBNET as in lx,10.214.0 (a prefix of 1 to 4 "
                               "letters or digits, the first three numbers of a /24)")
        return NetnsNames(prefix, subnet)

    def node_ns(self, i):
        return f"{self.prefix}-h{i}"

    def veth(self, tag):
        """The pair's two ends: outside (on the bridge) and inside (eth0 in the namespace)."""
        return f"{self.prefix}v{tag}", f"{self.prefix}p{tag}"


class ClusterError(Exception):
    pass


def run(cmd, check=True, **kwargs):
    kwargs.setdefault("env", clean_environment())
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(cmd)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()}")
    return done


def harness_paths(builds_needed, overrides):
    """The loop-harness of each build named, building a flavour whose binary is missing."""
    paths = {}
    for name in sorted(set(builds_needed)):
        if name == "original":
            reason = original.unavailable_reason()
            if reason:
                raise ClusterError(f"an original node was asked for, but {reason}")
            continue
        if overrides.get(name):
            paths[name] = overrides[name]
            continue
        flavour = {f.name: f for f in FLAVOURS}[name]
        if not os.path.exists(flavour.harness):
            if not flavour.build():
                raise ClusterError(f"the {name} build failed")
        paths[name] = flavour.harness
    return paths


def free_port(ip, kind, preferred):
    """`preferred` if it is free on `ip` (a predictable console address), else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ClusterError(f"no free port on {ip}")


class Node:
    def __init__(self, host_id, ip, udp, http, namespace):
        self.id = host_id
        self.ip = ip
        self.udp = udp
        self.http = http
        self.namespace = namespace
        self.build = None
        self.process = None
        self.log_path = None

    @property
    def address(self):
        return f"{self.ip}:{self.udp}"

    @property
    def console(self):
        return f"http://{self.ip}:{self.http}/"


class Cluster:
    def __init__(self, count, harness, netns=False, loss=0, workdir=None, ping_interval_ms=100, dead_after_ms=4000,
                 names=None):
        if not 1 <= count <= 200:
            raise ClusterError(f"--hosts {count}: 1 to 200 hosts")
        if not 0 <= loss < 100:
            raise ClusterError(f"--loss {loss}: a share 0 to 99 (percent)")
        if loss and not netns:
            raise ClusterError("--loss needs --netns (the loss is an nftables rule in each namespace)")
        self.harness = harness
        self.netns = netns
        self.names = names or NetnsNames.from_environment()
        self.loss = loss
        self.ping_interval_ms = ping_interval_ms
        self.dead_after_ms = dead_after_ms
        self.keep_workdir = workdir is not None
        self.workdir = workdir or tempfile.mkdtemp(prefix="cluster-")
        os.makedirs(self.workdir, exist_ok=True)
        self.nodes = []
        self.namespaces_made = []
        self.bridge_made = False
        self.network_lock = None
        for i in range(count):
            if netns:
                self.nodes.append(Node(i, f"{self.names.subnet}.{i + 1}", 7400, 8400, self.names.node_ns(i)))
            else:
                ip = f"127.0.0.{i + 2}"
                self.nodes.append(Node(i, ip, free_port(ip, socket.SOCK_DGRAM, 7400),
                                       free_port(ip, socket.SOCK_STREAM, 8400), None))
        self.hosts_file = os.path.join(self.workdir, "hosts")
        with open(self.hosts_file, "w") as f:
            if netns:
                # The original's hosts.conf, which both the original and the port read.
                f.write("# hostId dnsPort httpsPort httpPort udpPort ip1 ip2 directory\n")
                f.write("".join(line + "\n" for line in self.original_lines()))
                f.write("num-mirrors: 0\n")
            else:
                f.write("# id  address      udp   http\n")
                for n in self.nodes:
                    f.write(f"{n.id:<4} {n.ip:<12} {n.udp:<5} {n.http}\n")

    def original_lines(self):
        return [original.hosts_conf_line(n.id, n.ip, n.udp, n.http, self.original_dir(n)) for n in self.nodes]

    def original_dir(self, node):
        return os.path.join(self.workdir, f"host{node.id}-original")

    # -- network namespaces

    def setup_network(self):
        if not self.netns:
            return
        if os.geteuid() != 0:
            raise ClusterError("--netns needs root (network namespaces, veth pairs, a bridge, nftables)")
        if self.loss and shutil.which("nft") is None:
            print("== installing nftables (apt-get)", flush=True)
            run(["apt-get", "install", "-y", "-qq", "nftables"], env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if self.network_lock is None:
            path = NETWORK_LOCK.format(prefix=self.names.prefix)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.network_lock = open(path, "w")
            try:
                fcntl.flock(self.network_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("== another cluster holds the test bridge; waiting for it", flush=True)
                fcntl.flock(self.network_lock, fcntl.LOCK_EX)
        self.remove_network(quiet=True)  # leftovers of a run that was killed
        bridge = self.names.bridge
        run(["ip", "link", "add", bridge, "type", "bridge"])
        self.bridge_made = True
        run(["ip", "addr", "add", f"{self.names.bridge_ip}/24", "dev", bridge])
        run(["ip", "link", "set", bridge, "up"])
        spaces = [(n.namespace, n.ip, n.id) for n in self.nodes] + [(self.names.client_ns, self.names.client_ip, "c")]
        for name, ip, tag in spaces:
            run(["ip", "netns", "add", name])
            self.namespaces_made.append(name)
            outside, inside = self.names.veth(tag)
            run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
            run(["ip", "link", "set", inside, "netns", name])
            run(["ip", "-n", name, "link", "set", inside, "name", "eth0"])
            run(["ip", "-n", name, "addr", "add", f"{ip}/24", "dev", "eth0"])
            run(["ip", "-n", name, "link", "set", "eth0", "up"])
            run(["ip", "-n", name, "link", "set", "lo", "up"])
            run(["ip", "link", "set", outside, "master", bridge])
            run(["ip", "link", "set", outside, "up"])
            if self.loss:
                # Each datagram is dropped at most once, by its receiver: the share is per datagram.
                rules = (f"table inet {NFT_TABLE} {{\n  chain input {{\n"
                         f"    type filter hook input priority 0; policy accept;\n"
                         f"    meta l4proto udp numgen random mod 100 < {self.loss} counter drop\n  }}\n}}\n")
                run(["ip", "netns", "exec", name, "nft", "-f", "-"], input=rules)

    def remove_network(self, quiet=False):
        names = set(self.namespaces_made)
        if quiet:  # a previous run's, by name
            names |= {self.names.node_ns(i) for i in range(200)} | {self.names.client_ns}
            listed = run(["ip", "netns", "list"], check=False).stdout.split()
            names &= set(listed)
        for name in sorted(names):
            run(["ip", "netns", "delete", name], check=False)
        if self.bridge_made or quiet:
            run(["ip", "link", "delete", self.names.bridge], check=False)
        self.namespaces_made = []
        self.bridge_made = False

    def dropped_datagrams(self):
        """Datagrams the nftables rules dropped, over every namespace (0 without --loss)."""
        if not (self.netns and self.loss):
            return 0
        total = 0
        for name in [n.namespace for n in self.nodes] + [self.names.client_ns]:
            out = run(["ip", "netns", "exec", name, "nft", "-j", "list", "table", "inet", NFT_TABLE], check=False).stdout
            try:
                for item in json.loads(out).get("nftables", []):
                    for expr in item.get("rule", {}).get("expr", []):
                        if "counter" in expr:
                            total += expr["counter"]["packets"]
            except ValueError:
                pass
        return total

    # -- commands, in a node's namespace when there is one

    def command(self, harness, args, namespace=None):
        cmd = [harness] + args
        return ["ip", "netns", "exec", namespace] + cmd if namespace else cmd

    def client_command(self, build, args):
        return self.command(self.harness[build], args, self.names.client_ns if self.netns else None)

    # -- nodes

    def start(self, node, build, timeout=20):
        node.build = build
        node.log_path = os.path.join(self.workdir, f"host{node.id}-{build}-{int(time.time() * 1000)}.log")
        if build == "original":
            if not self.netns:
                raise ClusterError("an original node runs only in a network namespace of its own: use --netns")
            try:
                original.make_node_dir(self.original_dir(node), self.original_lines())
                node.process = original.start(node.namespace, self.original_dir(node), node.log_path)
                original.wait_ready(node.process, node.log_path)
            except original.OriginalError as error:
                raise ClusterError(f"host {node.id} (original): {error}")
            return
        args = ["serve", "--hosts", self.hosts_file, "--id", str(node.id), "--json",
                "--ping-interval-ms", str(self.ping_interval_ms), "--dead-after-ms", str(self.dead_after_ms)]
        log = open(node.log_path, "w")
        node.process = subprocess.Popen(self.command(self.harness[build], args, node.namespace),
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=clean_environment())
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(node.log_path) as f:
                for line in f:
                    if line.startswith('{"event":"serving"'):
                        return
            if node.process.poll() is not None:
                raise ClusterError(f"host {node.id} ({build}) exited {node.process.returncode} at start:\n"
                                   + open(node.log_path).read()[-2000:])
            time.sleep(0.05)
        raise ClusterError(f"host {node.id} ({build}) did not say it was serving within {timeout} s")

    def shutdown(self, node, timeout=30):
        """Save-and-exit from a trusted address (loopback, or the host's own in its namespace);
        the node must exit 0. An original node is stopped by SIGTERM, as its operator would: it
        saves, then aborts on purpose."""
        if node.build == "original":
            try:
                original.stop(node.process, timeout=max(timeout, 60))
            except original.OriginalError as error:
                raise ClusterError(f"host {node.id} (original): {error}")
            node.process = None
            return
        done = run(self.command(self.harness[node.build], ["shutdown", "--to", node.address, "--timeout-ms", "5000"],
                                node.namespace), check=False)
        if done.returncode != 0:
            raise ClusterError(f"shutdown of host {node.id} failed: {(done.stdout + done.stderr).strip()}")
        try:
            code = node.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"host {node.id} did not exit within {timeout} s of its save-and-exit")
        if code != 0:
            raise ClusterError(f"host {node.id} exited {code} after its save-and-exit:\n" + open(node.log_path).read()[-2000:])
        node.process = None

    def stats(self, node):
        if node.build == "original":
            return None  # the original has no stats request; its hosts page is read by view_of
        done = run(self.command(self.harness[node.build], ["stats", "--to", node.address, "--json", "--timeout-ms", "2000"],
                                node.namespace), check=False)
        if done.returncode != 0:
            return None
        try:
            return json.loads(done.stdout)
        except ValueError:
            return None

    def view_of(self, observer, host_id):
        """What `observer` says of host `host_id` (its row of the hosts table), or None."""
        if observer.build == "original":
            host = self.nodes[host_id]
            try:
                rows = original.hosts_table(observer.namespace, observer.ip, observer.http)
            except (original.OriginalError, subprocess.TimeoutExpired):
                return None
            for row in rows:
                if row.get("ip1") == host.ip and row.get("udpPort") == host.udp:
                    return {"id": host_id, "alive": row["alive"], "ping": row.get("ping1")}
            return None
        stats = self.stats(observer)
        if not stats or "cluster" not in stats:
            return None
        for row in stats["cluster"]["hosts"]:
            if row["id"] == host_id:
                return row
        return None

    def running(self):
        return [n for n in self.nodes if n.process is not None]

    def wait_seen_alive(self, host_id, timeout=30):
        """Until every other running node counts host `host_id` alive."""
        deadline = time.monotonic() + timeout
        waiting = []
        while time.monotonic() < deadline:
            waiting = [o.id for o in self.running() if o.id != host_id
                       and not (self.view_of(o, host_id) or {}).get("alive")]
            if not waiting:
                return
            time.sleep(0.1)
        raise ClusterError(f"host {host_id} was not seen alive by host(s) {waiting} within {timeout} s")

    def down_ms(self, host_id):
        """How long each other running node has counted host `host_id` dead, by observer."""
        views = {}
        for o in self.running():
            if o.id != host_id:
                row = self.view_of(o, host_id)
                if row is not None and "downMs" in row:
                    views[o.id] = row["downMs"]
        return views

    def stop_all(self):
        """Save-and-exit every running node; the first failure is raised after all were asked."""
        failure = None
        for node in self.running():
            try:
                self.shutdown(node)
            except ClusterError as error:
                failure = failure or error
        if failure:
            raise failure

    def kill_all(self):
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                try:
                    os.killpg(node.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                node.process.wait()
            node.process = None

    def close(self, keep_logs=False):
        """Kills what still runs, removes the namespaces; the logs go too unless asked for."""
        self.kill_all()
        self.remove_network()
        if self.network_lock is not None:
            self.network_lock.close()  # and with it the lock
            self.network_lock = None
        if not (self.keep_workdir or keep_logs):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def builds(self):
        return [n.build if n.process is not None else "-" for n in self.nodes]
