"""A headless Chromium driven over the DevTools protocol, Python's standard library only.

The browser is started with --remote-debugging-pipe: it reads commands on its
descriptor 3 and writes replies and events on its descriptor 4, each message
one JSON object followed by a NUL byte. A page is a target: created with
Target.createTarget, attached with Target.attachToTarget(flatten=true), and
then addressed by the sessionId of that attachment in every command.

Every command has a deadline; a browser that stops answering, or exits, is a
CdpError that says which command was waiting.

    with Browser() as browser:
        page = browser.new_page("http://127.0.0.1:8080/")
        title = page.evaluate("document.title")
        page.click("#save-exit")
"""

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time


class CdpError(Exception):
    pass


def chromium_path() -> str:
    """The Chromium executable: $CHROMIUM, else chromium (Debian's package) or chromium-browser."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    raise CdpError("no chromium on PATH (set CHROMIUM to its path)")


def chromium_version(path: str) -> str:
    done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


class Browser:
    def __init__(self, path: str = None, window=(1280, 900), timeout: float = 10.0):
        self.path = path or chromium_path()
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="browser-check-profile.")
        self.log = tempfile.TemporaryFile()  # the browser's stderr, shown when something fails
        self.next_id = 0
        self.buffer = b""
        self.pending = []  # messages read while waiting for another reply
        self.events = []   # the last events seen (for diagnostics)
        args = [
            self.path, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--remote-debugging-pipe", f"--user-data-dir={self.profile}", f"--window-size={window[0]},{window[1]}",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "about:blank",
        ]
        self.process, self.writer, self.reader = self._spawn(args)

    def _spawn(self, args):
        """Starts the browser with the pipes at its descriptors 3 (commands in) and 4
        (replies out). The parent puts them at 3 and 4 for the moment of the spawn,
        so that pass_fds keeps them at those numbers, and then puts back what it had there."""
        commands_r, commands_w = os.pipe()
        replies_r, replies_w = os.pipe()
        # Out of the way of 3 and 4 first, so that placing one cannot overwrite the other,
        # the log too: when it sat at 4 (a parent that left 3 open and 4 free), the browser's
        # stderr went into the replies pipe, read as garbage where JSON was due.
        high = [_dup_high(fd) for fd in (commands_r, replies_w)]
        log = _dup_high(self.log.fileno())
        os.close(commands_r)
        os.close(replies_w)
        saved = {}  # what this process had at 3 and 4: a copy and whether it was inheritable, or None
        for number in (3, 4):
            try:
                saved[number] = (_dup_high(number), os.get_inheritable(number))
            except OSError:
                saved[number] = None
        try:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       pass_fds=(3, 4), start_new_session=True)
        finally:
            for number, copy in saved.items():
                if copy is None:
                    os.close(number)
                else:
                    os.dup2(copy[0], number, inheritable=copy[1])
                    os.close(copy[0])
            for fd in high + [log]:
                os.close(fd)
        os.set_blocking(replies_r, False)
        return process, commands_w, replies_r

    # -- the protocol

    def send(self, method: str, params: dict = None, session: str = None, timeout: float = None) -> dict:
        """One command; its result, or CdpError on an error reply, a timeout or a browser gone."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while data:
                data = data[os.write(self.writer, data):]
        except OSError as error:
            raise CdpError(f"{method}: the browser is not reading its commands ({error}){self._exit_note()}")
        wanted = self.next_id
        while True:
            for index, reply in enumerate(self.pending):
                if reply.get("id") == wanted:
                    del self.pending[index]
                    if "error" in reply:
                        raise CdpError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}".rstrip())
                    return reply.get("result", {})
            self._read(deadline, method)

    def _read(self, deadline: float, waiting_for: str):
        left = deadline - time.monotonic()
        if left <= 0:
            raise CdpError(f"{waiting_for}: no reply from the browser within its deadline{self._exit_note()}")
        ready, _, _ = select.select([self.reader], [], [], left)
        if not ready:
            return
        try:
            chunk = os.read(self.reader, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            raise CdpError(f"{waiting_for}: the browser closed its end of the pipe{self._exit_note()}")
        self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\0")
        for raw in messages:
            # Chromium has been seen to send an empty message between two NULs: nothing to read in it.
            if not raw.strip():
                continue
            try:
                message = json.loads(raw)
            except ValueError as error:
                raise CdpError(f"{waiting_for}: the browser sent something that is not JSON ({error}): "
                               f"{raw[:200]!r}{self._exit_note()}")
            if "id" in message:
                self.pending.append(message)
            else:
                self.events = (self.events + [message])[-50:]

    def _exit_note(self) -> str:
        status = self.process.poll()
        return "" if status is None else f" (the browser exited with status {status})"

    def stderr(self, limit: int = 4000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-limit:]

    # -- pages

    def new_page(self, url: str = "about:blank") -> "Page":
        target = self.send("Target.createTarget", {"url": url})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, target, session)

    def close(self):
        if self.process.poll() is None:
            try:
                self.send("Browser.close", timeout=3)
            except CdpError:
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        for fd in (self.writer, self.reader):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


class Page:
    def __init__(self, browser: Browser, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session

    def send(self, method: str, params: dict = None, timeout: float = None) -> dict:
        return self.browser.send(method, params, self.session, timeout)

    def navigate(self, url: str):
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CdpError(f"Page.navigate {url}: {reply['errorText']}")

    def evaluate(self, expression: str, timeout: float = None):
        """The value of a JavaScript expression (awaited if it is a promise), by value."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": True}, timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"Runtime.evaluate {expression[:80]!r}: {text}")
        return reply.get("result", {}).get("value")

    def wait_for(self, expression: str, seconds: float, every: float = 0.1):
        """Evaluates the expression until it is truthy; its value, or None once the seconds have passed."""
        deadline = time.monotonic() + seconds
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() >= deadline:
                return value or None
            time.sleep(every)

    def screenshot(self, path: str):
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}, timeout=20)["data"]
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))

    def element_center(self, selector: str):
        """The centre of an element in viewport coordinates (scrolled into view first), or None if absent or unseen."""
        return self.evaluate(f"""(() => {{
            const element = document.querySelector({json.dumps(selector)});
            if (!element) return null;
            element.scrollIntoView({{block: "center", inline: "center"}});
            const box = element.getBoundingClientRect();
            if (box.width === 0 || box.height === 0) return null;
            const x = box.left + box.width / 2, y = box.top + box.height / 2;
            const hit = document.elementFromPoint(x, y);
            return {{x, y, hit: hit === element || element.contains(hit)}};
        }})()""")

    def click(self, selector: str) -> dict:
        """A real mouse click at the element's centre: the mouse moves there, presses and
        releases the left button, as the browser's input pipeline sees a person's click.
        Raises CdpError if the element is absent, has no size or is covered by another."""
        where = self.element_center(selector)
        if where is None:
            raise CdpError(f"{selector}: no such element on the page, or it has no size")
        if not where["hit"]:
            raise CdpError(f"{selector}: another element covers its centre ({where['x']:.0f}, {where['y']:.0f})")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": where["x"], "y": where["y"], "button": "left" if kind != "mouseMoved" else "none"}
            if kind != "mouseMoved":
                params.update(clickCount=1, buttons=1 if kind == "mousePressed" else 0)
            self.send("Input.dispatchMouseEvent", params)
        return where

    def close(self):
        self.browser.send("Target.closeTarget", {"targetId": self.target}, timeout=5)


def _dup_high(fd: int) -> int:
    import fcntl
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
