"""The admin console in a real browser (scripts/browser-check runs this; see there).

For each node given (`--node BACKEND COMMAND`, COMMAND one shell word list that
runs `loop-harness` or a stand-in): starts `COMMAND serve --port 0 --http 0
--save TMP --json`, and in one headless Chromium checks that the page loads and
names the backend, that its figures appear and change, that Save & Exit without
the token is refused (403) and leaves the node running, and that a mouse click
on Save & Exit says saved, makes the node exit 0 and leaves a save file of JSON.
Exit status 0 when every node passes, 1 otherwise, 2 for bad arguments.
"""

import argparse
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# No __pycache__ next to the scripts: the work tree stays clean.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp import Browser, CdpError, chromium_path, chromium_version  # noqa: E402

# Figures the page must show as numbers: the loop, the RPC server, the TCP server.
NAMED_FIGURES = ("loop.polls", "server.datagramsIn", "tcp.accepted")
CHANGING_FIGURE = "loop.polls"


class Failure(Exception):
    pass


def note_process_group(pid):
    """Lists a process group this driver leads, for scripts/browser-check's trap (BROWSER_CHECK_PIDS)."""
    path = os.environ.get("BROWSER_CHECK_PIDS")
    if path:
        with open(path, "a") as file:
            file.write(f"{pid}\n")


class Node:
    """One node process: its command, the serving line, its stderr, its exit."""

    def __init__(self, command, save_path, start_seconds):
        self.command = command + ["serve", "--port", "0", "--http", "0", "--save", save_path, "--json"]
        self.stderr_file = tempfile.TemporaryFile()
        self.lines = []
        # LOOP_BACKEND would override the build's default backend, which is what the page must name.
        environment = {key: value for key, value in os.environ.items() if key != "LOOP_BACKEND"}
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=self.stderr_file, start_new_session=True, env=environment)
        note_process_group(self.process.pid)
        self.serving = self._serving_line(start_seconds)

    def _serving_line(self, seconds):
        deadline = time.monotonic() + seconds
        buffer = b""
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"no serving line on the node's stdout within {seconds} s")
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    raise Failure(f"the node exited before serving (status {self.process.wait()})")
                buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode(errors="replace")
        self.lines.append(line)
        try:
            serving = json.loads(line)
        except ValueError:
            raise Failure(f"the node's first line is not JSON: {line!r}")
        if not isinstance(serving, dict) or serving.get("event") != "serving" or not isinstance(serving.get("httpPort"), int):
            raise Failure(f"the node's first line is not a serving event with an httpPort: {line!r}")
        return serving

    def running(self):
        return self.process.poll() is None

    def wait(self, seconds):
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self, limit=3000):
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")[-limit:]

    def stdout_rest(self, limit=2000):
        """What the node printed after its serving line (only once it has exited: never blocks)."""
        if self.running():
            return ""
        return self.process.stdout.read().decode(errors="replace")[-limit:]

    def kill(self):
        if self.running():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


def http(method, url, headers=None, timeout=5):
    """(status, content type, body) of one request; errors answered by the server are results too."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.headers.get("Content-Type", ""), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()
    except (urllib.error.URLError, OSError) as error:
        raise Failure(f"{method} {url}: {getattr(error, 'reason', error)}")


def numbers(page, selector_list):
    """The text of the figures' cells by name (None for a cell that is absent)."""
    return page.evaluate(f"""(() => {{
        const out = {{}};
        for (const name of {json.dumps(list(selector_list))}) {{
            const cell = document.querySelector('[data-figure="' + name + '"]');
            out[name] = cell ? cell.textContent.trim() : null;
        }}
        return out;
    }})()""")


def check_node(browser, label, backend, command, options, screenshot):
    """Every check on one node, stopping at the first that fails; None if all pass, else why."""
    say = lambda text: print(f"ok   {label}: {text}", flush=True)  # noqa: E731
    workdir = tempfile.mkdtemp(prefix="browser-check.")
    save_path = os.path.join(workdir, "node-state.json")
    node = page = None
    started = time.monotonic()
    try:
        node = Node(command, save_path, options.start_seconds)
        port = node.serving["httpPort"]
        base = f"http://127.0.0.1:{port}"
        say(f"node pid {node.process.pid} serving, console at {base}/")

        # The token guards Save & Exit: without it, 403 and the node keeps serving.
        status, _, body = http("POST", base + "/save-exit")
        if status != 403:
            raise Failure(f"POST /save-exit without X-Admin-Token: wanted 403, got {status} {body[:200]!r}")
        status, _, _ = http("GET", base + "/save-exit")
        if status != 405:
            raise Failure(f"GET /save-exit: wanted 405, got {status}")
        time.sleep(0.2)
        if not node.running():
            raise Failure(f"the node exited (status {node.process.returncode}) after a refused Save & Exit")
        status, _, body = http("GET", base + "/status.json")
        if status != 200:
            raise Failure(f"GET /status.json after the refused POST: {status} {body[:200]!r}")
        try:
            stats = json.loads(body)
        except ValueError:
            raise Failure(f"/status.json is not JSON: {body[:200]!r}")
        missing = [key for key in ("backend", "uptimeMs", "loop", "server", "node", "tcp", "http") if key not in stats]
        if missing or not isinstance(stats.get("loop"), dict) or "polls" not in stats["loop"]:
            raise Failure(f"/status.json lacks {missing or ['loop.polls']}: {body[:300]!r}")
        say("a POST /save-exit without the token is refused (403), GET is 405, and the node keeps serving")

        # The page, in the browser.
        page = browser.new_page()
        page.send("Page.enable")
        page.navigate(base + "/")
        loaded = page.wait_for(f"""document.URL === {json.dumps(base + "/")} && document.readyState === "complete"
                                   && document.contentType""", options.load_seconds)
        if not loaded:
            raise Failure(f"the page did not load within {options.load_seconds:g} s")
        if loaded != "text/html":
            raise Failure(f"the page is {loaded}, not text/html")
        shown = page.evaluate("""(() => { const e = document.getElementById("backend"); return e && e.textContent.trim(); })()""")
        if shown != backend:
            raise Failure(f"#backend says {shown!r}, wanted {backend!r}")
        token = page.evaluate("""(() => { const m = document.querySelector('meta[name="admin-token"]'); return m && m.content; })()""")
        if not token:
            raise Failure("the page has no <meta name=\"admin-token\">")
        say(f"the page loads (text/html) and #backend says {shown}")

        # Figures appear, then change as the page applies live updates.
        first = page.wait_for(f"""(() => {{
            const updates = Number(document.getElementById("updates")?.textContent);
            const cells = [...document.querySelectorAll("[data-figure]")];
            const named = {json.dumps(list(NAMED_FIGURES))}.map(n => document.querySelector('[data-figure="' + n + '"]'));
            if (!(updates >= 1) || named.some(c => !c || c.textContent.trim() === "" || isNaN(Number(c.textContent)))) return null;
            return {{updates, cells: cells.length, numeric: cells.filter(c => c.textContent.trim() !== "" && !isNaN(Number(c.textContent))).length,
                     polls: Number(document.querySelector('[data-figure="{CHANGING_FIGURE}"]').textContent)}};
        }})()""", options.figures_seconds)
        if not first:
            seen = numbers(page, NAMED_FIGURES)
            updates = page.evaluate("""document.getElementById("updates")?.textContent ?? null""")
            raise Failure(f"no live update with numbers in {', '.join(NAMED_FIGURES)} within {options.figures_seconds:g} s "
                          f"(#updates {updates!r}, cells {seen})")
        say(f"{first['numeric']} of {first['cells']} figure cells are numbers after update {first['updates']}, "
            f"{CHANGING_FIGURE} {first['polls']}")
        changed = page.wait_for(f"""(() => {{
            const updates = Number(document.getElementById("updates").textContent);
            const polls = Number(document.querySelector('[data-figure="{CHANGING_FIGURE}"]').textContent);
            return updates >= {first['updates']} + 2 && polls > {first['polls']} ? {{updates, polls}} : null;
        }})()""", options.change_seconds, every=0.25)
        if not changed:
            now = page.evaluate(f"""[document.getElementById("updates").textContent,
                                    document.querySelector('[data-figure="{CHANGING_FIGURE}"]').textContent]""")
            raise Failure(f"the figures do not change: in {options.change_seconds:g} s #updates went from {first['updates']} "
                          f"to {now[0]} and {CHANGING_FIGURE} from {first['polls']} to {now[1]} "
                          f"(wanted 2 more updates and more polls)")
        say(f"the figures change: #updates {first['updates']} -> {changed['updates']}, "
            f"{CHANGING_FIGURE} {first['polls']} -> {changed['polls']}")

        if screenshot:
            os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
            page.screenshot(screenshot)
            say(f"screenshot: {screenshot}")

        # Save & Exit with the mouse, as a person would.
        where = page.click("#save-exit")
        said = page.wait_for("""(() => { const s = document.getElementById("save-status")?.textContent ?? "";
                                       return /\\bsaved\\b/i.test(s) && !/not saved|unsaved|fail|refus|error/i.test(s) ? s : null; })()""", options.save_seconds)
        if not said:
            status_text = page.evaluate("""document.getElementById("save-status")?.textContent ?? null""")
            raise Failure(f"after the click at ({where['x']:.0f}, {where['y']:.0f}) #save-status says {status_text!r}, "
                          f"not saved, within {options.save_seconds:g} s")
        say(f"a mouse click on #save-exit at ({where['x']:.0f}, {where['y']:.0f}): #save-status says {said!r}")
        clicked = time.monotonic()
        status = node.wait(options.exit_seconds)
        if status is None:
            raise Failure(f"the node is still running {options.exit_seconds:g} s after Save & Exit")
        if status != 0:
            raise Failure(f"the node exited with status {status} after Save & Exit, not 0")
        try:
            with open(save_path) as file:
                saved = json.load(file)
        except FileNotFoundError:
            raise Failure(f"the node exited 0 but wrote no save file at {save_path}")
        except ValueError as error:
            raise Failure(f"the save file is not JSON ({error})")
        if not isinstance(saved, dict) or "backend" not in saved:
            raise Failure(f"the save file has no \"backend\": {json.dumps(saved)[:200]}")
        if saved["backend"] != backend:
            raise Failure(f"the save file says backend {saved['backend']!r}, wanted {backend!r}")
        say(f"the node exited 0 after {time.monotonic() - clicked:.1f} s and saved {os.path.getsize(save_path)} bytes "
            f"of JSON (backend {saved['backend']})")
        print(f"pass {label} ({time.monotonic() - started:.1f} s)", flush=True)
        return None
    except (Failure, CdpError) as error:
        print(f"FAIL {label}: {error}", flush=True)
        if page is not None:
            try:
                text = page.evaluate("document.body ? document.body.innerText : document.documentElement.outerHTML")
                print("---- page text (first 1500 characters)\n" + (text or "")[:1500])
            except CdpError as detail:
                print(f"---- page text unavailable: {detail}")
        if node is not None:
            node.kill()
            rest = node.stdout_rest()
            print(f"---- node command: {shlex.join(node.command)}")
            print("---- node stdout\n" + "\n".join(node.lines) + ("\n" + rest if rest else ""))
            print("---- node stderr\n" + node.stderr())
        return str(error)
    finally:
        if page is not None:
            try:
                page.close()
            except CdpError:
                pass
        if node is not None:
            node.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def main():
    # A TERM (scripts/browser-check's trap) unwinds like an error: nodes and browser are killed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(prog="browser-check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--node", nargs=2, action="append", metavar=("BACKEND", "COMMAND"), required=True,
                        help="a node: the backend its page must name, and its command (shell words)")
    parser.add_argument("--screenshot", metavar="PNG", help="a picture of the first node's page, before the click")
    parser.add_argument("--start-seconds", type=float, default=15, help="for the serving line (15)")
    parser.add_argument("--load-seconds", type=float, default=10, help="for the page to load (10)")
    parser.add_argument("--figures-seconds", type=float, default=5, help="for the first live update (5)")
    parser.add_argument("--change-seconds", type=float, default=6, help="for two more updates and more polls (6)")
    parser.add_argument("--save-seconds", type=float, default=5, help="for #save-status to say saved (5)")
    parser.add_argument("--exit-seconds", type=float, default=15, help="for the node to exit after the click (15)")
    options = parser.parse_args()
    nodes = []
    for backend, command in options.node:
        words = shlex.split(command)
        if not words:
            parser.error(f"--node {backend}: an empty command")
        nodes.append((backend, words))

    try:
        path = chromium_path()
        print(f"== {chromium_version(path) or path}", flush=True)
        browser = Browser(path)
        note_process_group(browser.process.pid)
    except (CdpError, OSError, subprocess.SubprocessError) as error:
        print(f"FAIL cannot start the browser: {error}")
        return 1
    failed = []
    with browser:
        try:
            version = browser.send("Browser.getVersion", timeout=20)
        except CdpError as error:
            print(f"FAIL the browser does not answer on its debugging pipe: {error}\n---- browser stderr\n{browser.stderr()}")
            return 1
        print(f"== {version.get('product')} (protocol {version.get('protocolVersion')}) on --remote-debugging-pipe", flush=True)
        for index, (backend, words) in enumerate(nodes):
            label = backend if len(nodes) == 1 or [b for b, _ in nodes].count(backend) == 1 else f"{backend} #{index + 1}"
            print(f"== {label}: {shlex.join(words)}", flush=True)
            why = check_node(browser, label, backend, words, options, options.screenshot if index == 0 else None)
            if why:
                failed.append(f"{label}: {why}")
                if browser.process.poll() is not None:
                    print(f"---- browser stderr\n{browser.stderr()}")
                    break
    if failed:
        print("browser-check: FAILED\n" + "\n".join(f"  {why}" for why in failed))
        return 1
    print(f"browser-check: every node passed ({len(nodes)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
