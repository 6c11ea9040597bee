"""The original C++ engine as a peer: where it is, its nodes in network namespaces of their
own, its readiness, its stop, and its hosts table.

The original resolves names through public DNS and spiders the web when it can: it runs only
inside a network namespace whose routes are the loopback and the test bridge, through the
shared `run-node.sh`, which refuses anywhere else. Nothing here starts it another way.

One setting finds it: LOOP_ORIGINAL (a directory with bin/gb, make-node-dir.sh and
run-node.sh), by default ../shared/original beside the repository.
"""

import os
import re
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY_LINE = "gb is now ready"
# Ports of every original node; each node has an address of its own in its namespace.
DNS_PORT, HTTPS_PORT = 5998, 7000


def location():
    return os.path.abspath(os.environ.get("LOOP_ORIGINAL") or os.path.join(ROOT, "..", "shared", "original"))


def unavailable_reason():
    """Why the original cannot run here, or None when it can."""
    where = location()
    for name in ("bin/gb", "make-node-dir.sh", "run-node.sh"):
        path = os.path.join(where, name)
        if not os.access(path, os.X_OK):
            return f"no original at {where} ({name} missing; set LOOP_ORIGINAL)"
    if os.geteuid() != 0:
        return "the original runs only in network namespaces, which need root"
    return None


def hosts_conf_line(host_id, ip, udp_port, http_port, directory):
    """A host line of the original's hosts.conf (Hostdb.cpp): hostId dnsPort httpsPort httpPort
    udpPort ip1 ip2 directory. The port reads the same file."""
    return f"{host_id} {DNS_PORT} {HTTPS_PORT} {http_port} {udp_port} {ip} {ip} {directory.rstrip('/')}/"


def make_node_dir(directory, lines):
    """The node's working directory, made by the original's own script (its hosts.conf of `lines`)."""
    done = subprocess.run([os.path.join(location(), "make-node-dir.sh"), directory] + list(lines),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise OriginalError(f"make-node-dir.sh {directory}: {done.stderr.strip() or done.stdout.strip()}")


class OriginalError(Exception):
    pass


def start(namespace, directory, log_path):
    """Starts the node of `directory` inside `namespace`, in a process group of its own."""
    log = open(log_path, "w")
    try:
        return subprocess.Popen(["ip", "netns", "exec", namespace, os.path.join(location(), "run-node.sh"), directory],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()


def wait_ready(process, log_path, timeout=120):
    """Until the node's log says it is ready (3 s on a quiet machine, 15 s or more on a busy one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, errors="replace") as f:
            if READY_LINE in f.read():
                return
        if process.poll() is not None:
            raise OriginalError(f"the original exited {process.returncode} before it was ready:\n" + tail(log_path))
        time.sleep(0.1)
    raise OriginalError(f"the original did not say '{READY_LINE}' within {timeout} s:\n" + tail(log_path))


def stop(process, timeout=60):
    """SIGTERM, as an operator stops it: it saves, then aborts on purpose (its exit status says
    so, and run-node.sh turned core files off). Returns the exit status."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise OriginalError(f"the original did not exit within {timeout} s of SIGTERM")


def hosts_table(namespace, ip, http_port, timeout=5):
    """The node's own hosts page (/admin/hosts?c=main&format=json), fetched from inside its
    namespace: one dict a host (ip1, udpPort, httpPort, ping1, alive). The page's JSON is not
    JSON (fields without commas, a "host" key per host), so each host's block is read by its
    fields; a dead host's ping1 is the word DEAD in HTML."""
    url = f"http://{ip}:{http_port}/admin/hosts?c=main&format=json"
    done = subprocess.run(["ip", "netns", "exec", namespace, "python3", "-c",
                           "import sys, urllib.request; "
                           f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout={timeout}).read()"
                           ".decode('utf-8', 'replace'))"],
                          capture_output=True, text=True, timeout=timeout + 10)
    if done.returncode != 0:
        raise OriginalError(f"no hosts page at {url}: {done.stderr.strip()[-300:]}")
    hosts = []
    for block in re.findall(r'"host":\{(.*?)\n\t\}', done.stdout, re.S):
        fields = dict(re.findall(r'"(\w+)":("[^"\n]*"|-?\d+)', block))
        value = {k: v.strip('"') if v.startswith('"') else int(v) for k, v in fields.items()}
        value["alive"] = "DEAD" not in value.get("ping1", "DEAD")
        hosts.append(value)
    if not hosts:
        raise OriginalError(f"the hosts page at {url} lists no host:\n{done.stdout[:500]}")
    return hosts


def tail(path, size=2000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-size:]
    except OSError:
        return ""
