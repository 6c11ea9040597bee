import Compat
import Glibc
import LoopTools
import TestSupport
import Testing

extension LoopConformance {
    /// The TCP half as whole processes: `serve --http` (the admin console, its
    /// token, origin and trust checks, Save & Exit) and `fetch` against a node and
    /// against Python's `http.server`, on each backend.
    @Suite struct ConsoleAndFetch {
        @Test(arguments: LoopBackendKind.allCases)
        func consoleShowsTheFiguresAndSaveAndExitStopsTheNode(_ kind: LoopBackendKind) throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/state.json"
            let node = try ServedNode(["--backend", kind.rawValue, "--http", "0", "--save", path])
            let console = try #require(node.consolePort, "no console line in \(node.seen)")

            let page = try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            #expect(page.status == 200)
            #expect(page.field("x-frame-options") == "DENY", "no other site may frame the Save & Exit button")
            #expect(page.body.contains("id=\"save-exit\""))
            #expect(page.body.contains("id=\"backend\" class=\"badge \(kind.rawValue)\""))
            #expect(page.body.contains("data-figure=\"loop.polls\""))
            #expect(page.body.contains("data-figure=\"tcp.accepted\""))
            let token = try #require(page.body.firstMatch(after: "name=\"admin-token\" content=\"", upTo: "\""))
            #expect(token.count == 32)

            let first = try HttpExchange(
                port: console, "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            #expect(first.status == 200 && first.field("content-type") == "application/json")
            #expect(first.body.contains("\"backend\":\"\(kind.rawValue)\""))
            let polls = try #require(jsonInt(first.body, "polls"))
            usleep(300_000)
            let second = try HttpExchange(
                port: console, "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            #expect(try #require(jsonInt(second.body, "polls")) > polls, "the figures are live")
            #expect(try #require(jsonInt(second.body, "requestsIn")) >= 3)

            // Refused: no token, a wrong one, another site's page, the wrong method. The node keeps running.
            let post = "POST /save-exit HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\nContent-Length: 0\r\n"
            #expect(try HttpExchange(port: console, post + "\r\n").status == 403)
            #expect(
                try HttpExchange(port: console, post + "X-Admin-Token: \(String(token.reversed()))\r\n\r\n").status
                    == 403)
            let crossSite = try HttpExchange(
                port: console, post + "Origin: http://evil.example\r\nX-Admin-Token: \(token)\r\n\r\n")
            #expect(crossSite.status == 403 && crossSite.body.contains("cross-origin"))
            #expect(
                try HttpExchange(port: console, "GET /save-exit HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n").status
                    == 405)
            #expect(
                try HttpExchange(port: console, "GET /nothing HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n").status
                    == 404)
            let refusals = try HttpExchange(
                port: console, "GET /status.json HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            #expect(jsonInt(refusals.body, "adminRefused") == 3)
            #expect(node.isRunning)

            let saved = try HttpExchange(
                port: console,
                post + "Origin: http://127.0.0.1:\(console)\r\nX-Admin-Token: \(token)\r\n\r\n")
            #expect(saved.status == 200 && saved.body.contains("\"saved\":true"))
            #expect(node.finish() == 0, "Save & Exit ends the node cleanly: \(node.seen.suffix(3))")
            #expect(try contents(of: path).contains("\"backend\":\"\(kind.rawValue)\""))
        }

        /// DNS rebinding: a page of rebind.attacker.example whose name now resolves to
        /// 127.0.0.1 reaches the console with its own name in Host and Origin. The console
        /// answers only to the address it listens on (and `localhost`, as it listens on
        /// loopback): the attacker's page gets a 421 without the token, and its Save & Exit
        /// is refused while the node keeps running. No Host, or two, is a 400.
        @Test(arguments: LoopBackendKind.allCases)
        func consoleRefusesARebindingHost(_ kind: LoopBackendKind) throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/state.json"
            let node = try ServedNode(["--backend", kind.rawValue, "--http", "0", "--save", path])
            let console = try #require(node.consolePort, "no console line in \(node.seen)")
            defer { if node.isRunning { kill(node.process.pid, SIGKILL) } }
            let attacker = "rebind.attacker.example:\(console)"

            for target in ["/", "/status.json"] {
                let rebound = try HttpExchange(port: console, "GET \(target) HTTP/1.1\r\nHost: \(attacker)\r\n\r\n")
                #expect(rebound.status == 421, "GET \(target) for another name: \(rebound.status)")
                #expect(
                    !rebound.body.contains("admin-token") && !rebound.body.contains("\"loop\""),
                    "nothing of the console for another name: \(rebound.body.prefix(200))")
            }
            let page = try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            let token = try #require(page.body.firstMatch(after: "name=\"admin-token\" content=\"", upTo: "\""))
            // The attacker's page cannot read the token, but even with it the request is refused.
            let rebindingPost = try HttpExchange(
                port: console,
                "POST /save-exit HTTP/1.1\r\nHost: \(attacker)\r\n"
                    + "Origin: http://\(attacker)\r\nX-Admin-Token: \(token)\r\nContent-Length: 0\r\n\r\n")
            #expect(rebindingPost.status == 421, "\(rebindingPost.status) \(rebindingPost.body)")
            let foreignOrigin = try HttpExchange(
                port: console,
                "POST /save-exit HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n"
                    + "Origin: http://\(attacker)\r\nX-Admin-Token: \(token)\r\nContent-Length: 0\r\n\r\n")
            #expect(foreignOrigin.status == 403 && foreignOrigin.body.contains("cross-origin"), "\(foreignOrigin.body)")
            let otherPort = try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(console &+ 1)\r\n\r\n")
            #expect(otherPort.status == 421, "another port is another origin")
            let noPort = try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(noPort.status == 421, "no port means port 80")
            #expect(try HttpExchange(port: console, "GET / HTTP/1.1\r\n\r\n").status == 400, "no Host")
            let twoHosts = try HttpExchange(
                port: console, "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\nHost: \(attacker)\r\n\r\n")
            #expect(twoHosts.status == 400 && !twoHosts.body.contains("admin-token"), "two Hosts")
            #expect(node.isRunning, "the rebinding page did not stop the node: \(node.seen.suffix(3))")
            #expect(access(path, F_OK) != 0, "nothing saved")

            let local = try HttpExchange(
                port: console, "GET /status.json HTTP/1.1\r\nHost: LocalHost:\(console)\r\n\r\n")
            #expect(local.status == 200 && local.body.contains("\"backend\":\"\(kind.rawValue)\""))
            let saved = try HttpExchange(
                port: console,
                "POST /save-exit HTTP/1.1\r\nHost: localhost:\(console)\r\n"
                    + "Origin: http://localhost:\(console)\r\nX-Admin-Token: \(token)\r\nContent-Length: 0\r\n\r\n")
            #expect(saved.status == 200 && saved.body.contains("\"saved\":true"), "\(saved.body)")
            #expect(node.finish() == 0)
        }

        /// `--http-host NAMES`: the console also answers to these names (at its port), and
        /// Save & Exit from a page of one of them is obeyed; a name that is not a host name is
        /// a usage error.
        @Test(arguments: LoopBackendKind.allCases)
        func consoleAnswersToTheNamesItIsGiven(_ kind: LoopBackendKind) throws {
            let node = try ServedNode([
                "--backend", kind.rawValue, "--http", "0", "--http-host", "console.example,Node-1.Example",
            ])
            let console = try #require(node.consolePort, "no console line in \(node.seen)")
            defer { if node.isRunning { kill(node.process.pid, SIGKILL) } }
            var token = ""
            for host in [
                "console.example:\(console)", "node-1.example:\(console)", "127.0.0.1:\(console)",
                "localhost:\(console)",
            ] {
                let page = try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n")
                #expect(page.status == 200, "Host \(host): \(page.status)")
                token = page.body.firstMatch(after: "name=\"admin-token\" content=\"", upTo: "\"") ?? ""
            }
            for host in ["console.example", "other.example:\(console)", "console.example.attacker.example:\(console)"] {
                #expect(
                    try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: \(host)\r\n\r\n").status == 421,
                    "Host \(host)")
            }
            let saved = try HttpExchange(
                port: console,
                "POST /save-exit HTTP/1.1\r\nHost: console.example:\(console)\r\n"
                    + "Origin: http://console.example:\(console)\r\nX-Admin-Token: \(token)\r\nContent-Length: 0\r\n\r\n"
            )
            #expect(saved.status == 200, "\(saved.body)")
            #expect(node.finish() == 0)

            for bad in ["a b", "x:80", "", "under_score.example,", "-lead.example"] {
                let run = try HarnessRun([
                    "serve", "--backend", kind.rawValue, "--http", "0", "--seconds", "1", "--http-host", bad,
                ])
                #expect(run.exitCode == 2 && run.output.contains("--http-host"), "--http-host '\(bad)': \(run.output)")
            }
            let noConsole = try HarnessRun([
                "serve", "--backend", kind.rawValue, "--seconds", "1", "--http-host", "console.example",
            ])
            #expect(
                noConsole.exitCode == 2 && noConsole.output.contains("--http-host needs a console"),
                "\(noConsole.output)")
        }

        /// A console on every interface (`--bind 0.0.0.0`) answers to any IPv4 address as Host
        /// (a browser sends an address only to that address; no DNS answer rebinds it) and to
        /// `localhost`, never to a name it was not given.
        @Test(arguments: LoopBackendKind.allCases)
        func consoleOnEveryInterfaceAnswersToAddressesOnly(_ kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--bind", "0.0.0.0", "--http", "0"])
            let console = try #require(node.consolePort, "no console line in \(node.seen)")
            defer {
                kill(node.process.pid, SIGTERM)
                _ = node.finish()
            }
            for host in ["127.0.0.1", "192.0.2.7", "localhost"] {
                #expect(
                    try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: \(host):\(console)\r\n\r\n").status == 200,
                    "\(host)")
            }
            let rebound = try HttpExchange(
                port: console, "GET / HTTP/1.1\r\nHost: rebind.attacker.example:\(console)\r\n\r\n")
            #expect(rebound.status == 421 && !rebound.body.contains("admin-token"))
        }

        /// Save & Exit from the console obeys the node's `--trust` list, as the RPC request does.
        @Test(arguments: LoopBackendKind.allCases)
        func consoleSaveAndExitIsRefusedToAnUntrustedPeer(_ kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--http", "0", "--trust", "10.0.0.0/8"])
            let console = try #require(node.consolePort)
            let page = try HttpExchange(port: console, "GET / HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\n\r\n")
            let token = try #require(page.body.firstMatch(after: "name=\"admin-token\" content=\"", upTo: "\""))
            let refused = try HttpExchange(
                port: console,
                "POST /save-exit HTTP/1.1\r\nHost: 127.0.0.1:\(console)\r\nX-Admin-Token: \(token)\r\n\r\n")
            #expect(refused.status == 403 && refused.body.contains("not among the node's trusted peers"))
            #expect(node.isRunning)
            kill(node.process.pid, SIGTERM)
            #expect(node.finish() == 0)
        }

        /// `fetch` against a node (keep-alive: the connection is reused) and against
        /// Python's HTTP/1.0 server (a redirect reported, not followed; a 404 is a
        /// response), with a refused URL and a malformed one failing on their own lines.
        @Test(arguments: LoopBackendKind.allCases)
        func fetchReportsEveryURLOnItsOwn(_ kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--http", "0"])
            let console = try #require(node.consolePort)
            defer {
                kill(node.process.pid, SIGTERM)
                _ = node.finish()
            }
            let base = "http://127.0.0.1:\(console)"
            let reuse = try HarnessRun([
                "fetch", "--backend", kind.rawValue, "--json", "--concurrency", "1",
                base + "/status.json", base + "/", base + "/status.json", base + "/nothing",
            ])
            #expect(reuse.exitCode == 0, "\(reuse.output)")
            #expect(reuse.lines.filter { $0.contains("\"ok\":true") && $0.contains("\"status\":200") }.count == 3)
            #expect(reuse.lines.contains { $0.contains("/nothing") && $0.contains("\"status\":404") })
            let summary = try #require(reuse.lines.last)
            #expect(jsonInt(summary, "connections") == 1 && jsonInt(summary, "reused") == 3, "keep-alive: \(summary)")

            let site = try TemporaryDirectory()
            try write(String(repeating: "x", count: 70_000), to: site.path + "/big.txt", mode: 0o644)
            #expect(mkdir(site.path + "/folder", 0o755) == 0)
            let python = try PythonHttpServer(directory: site.path)
            let other = "http://127.0.0.1:\(python.port)"
            let closed = try unusedPort()
            let run = try HarnessRun([
                "fetch", "--backend", kind.rawValue, "--json", "--concurrency", "3",
                other + "/big.txt", other + "/folder", other + "/missing",
                "http://127.0.0.1:\(closed)/", "http://[::1]/", "https://127.0.0.1/",
            ])
            #expect(run.exitCode == 1, "a URL without a response fails the run: \(run.output)")
            let line = { (url: String) in run.lines.first { $0.contains("\"url\":\"\(url)\"") } ?? "" }
            #expect(
                line(other + "/big.txt").contains("\"status\":200")
                    && jsonInt(line(other + "/big.txt"), "bytes") == 70_000)
            #expect(
                line(other + "/folder").contains("\"status\":301")
                    && line(other + "/folder").contains("\"location\":\"/folder/\""),
                "a redirect is reported with its Location, not followed")
            #expect(line(other + "/missing").contains("\"status\":404"))
            #expect(line("http://127.0.0.1:\(closed)/").contains("connect failed"))
            #expect(line("http://[::1]/").contains("\"ok\":false"))
            #expect(line("https://127.0.0.1/").contains("not supported"))
            #expect(run.lines.last.map { jsonInt($0, "failed") == 3 } == true, "\(run.output)")
        }

        /// A server that sends a byte every 100 ms never lets `--timeout-ms` run out; the
        /// deadline ends the fetch: `--deadline-ms` when given, else 10 × `--timeout-ms`.
        /// Before, `fetch` waited on such a server for as long as it trickled.
        @Test(arguments: LoopBackendKind.allCases)
        func fetchEndsATrickledReplyAtItsDeadline(_ kind: LoopBackendKind) throws {
            let trickler = try TricklingPythonServer()
            let url = "http://127.0.0.1:\(trickler.port)/"
            for limits in [["--timeout-ms", "1000", "--deadline-ms", "1500"], ["--timeout-ms", "300"]] {
                let started = monotonicNanoseconds()
                let run = try HarnessRun(
                    ["fetch", "--backend", kind.rawValue, "--json"] + limits + [url], timeoutMs: 20_000)
                #expect(run.exitCode == 1, "\(limits): \(run.output)")
                #expect(
                    run.lines.contains { $0.contains("\"ok\":false") && $0.contains("deadline") },
                    "\(limits): \(run.output)")
                #expect(elapsedMs(since: started) >= 1_400, "\(limits)")
            }
            for bad in ["0", "86400001", "-5", "1.5"] {
                let run = try HarnessRun(["fetch", "--backend", kind.rawValue, "--deadline-ms", bad, url])
                #expect(
                    run.exitCode == 2 && run.output.contains("--deadline-ms takes a whole number 1…86400000"),
                    "\(bad): \(run.output)")
            }
        }
    }
}

extension ServedNode {
    /// The admin console's port, from the `serving` event or the `admin console at` line.
    var consolePort: UInt16? {
        if let json = seen.first(where: { $0.hasPrefix("{\"event\":\"serving\"") }) {
            return jsonInt(json, "httpPort").flatMap { UInt16(exactly: $0) }
        }
        if seen.first(where: { $0.hasPrefix("admin console at") }) == nil { _ = line(startingWith: "admin console at") }
        guard let line = seen.first(where: { $0.hasPrefix("admin console at") }),
            let port = line.firstMatch(after: "127.0.0.1:", upTo: "/")
        else { return nil }
        return UInt16(port)
    }
}

extension String {
    /// The text between the first `start` and the next `end` after it.
    func firstMatch(after start: String, upTo end: String) -> String? {
        guard let from = range(of: start)?.upperBound, let to = self[from...].range(of: end)?.lowerBound else {
            return nil
        }
        return String(self[from..<to])
    }
}

/// One HTTP request on a fresh blocking connection, read until the server closes
/// or the declared body is in; every read bounded by a 10 s timeout.
struct HttpExchange {
    let status: Int
    let head: String
    let body: String

    init(port: UInt16, ip: UInt32 = 0x7f00_0001, _ request: String) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = PeerAddress(ip: ip, port: port).socketAddress
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { throw SystemError("connect", errno: errno) }
        let bytes = Array(request.utf8)
        guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
            throw SystemError("send", errno: errno)
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            received += buffer[0..<n]
            let text = String(decoding: received, as: UTF8.self)
            if let split = text.range(of: "\r\n\r\n"), let length = jsonlessContentLength(text[..<split.lowerBound]),
                received.count >= text.utf8.distance(from: text.startIndex, to: split.upperBound) + length
            {
                break
            }
        }
        let text = String(decoding: received, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else {
            throw SystemError("no HTTP response: \(text)", errno: EPROTO)
        }
        head = String(text[..<split.lowerBound])
        body = String(text[split.upperBound...])
        status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    func field(_ name: String) -> String? {
        for line in head.split(separator: "\r\n").dropFirst() {
            guard let colon = line.firstIndex(of: ":"), line[..<colon].lowercased() == name else { continue }
            return line[line.index(after: colon)...].trimmingCharacters(in: " ")
        }
        return nil
    }
}

private func jsonlessContentLength(_ head: Substring) -> Int? {
    for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
        return Int(line.dropFirst("content-length:".count).trimmingCharacters(in: " "))
    }
    return nil
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}

/// A TCP port nothing listens on (bound, then released).
func unusedPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = PeerAddress.loopback(port: 0).socketAddress
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else { throw SystemError("bind", errno: errno) }
    return UInt16(bigEndian: address.sin_port)
}

/// Python's `http.server` serving `directory` on an ephemeral loopback port; stopped on deinit.
final class PythonHttpServer {
    let process: ChildProcess
    let port: UInt16

    init(directory: String) throws {
        process = try ChildProcess(
            ["-c", "exec python3 -u -m http.server 0 --bind 127.0.0.1 --directory \"$0\" 2>&1", directory],
            executable: "/bin/sh")
        guard let line = process.line(startingWith: "Serving HTTP", timeoutMs: 20_000),
            let port = line.firstMatch(after: " port ", upTo: " ").flatMap({ UInt16($0) })
        else {
            throw SystemError("python3 -m http.server did not start", errno: ENOENT)
        }
        self.port = port
    }

    deinit {
        kill(process.pid, SIGTERM)
        _ = process.waitForExit(timeoutMs: 5_000)
    }
}

/// A server that answers each connection, one at a time, with a head declaring
/// 100,000 bytes and then one byte every 100 ms, until the client goes.
final class TricklingPythonServer {
    let process: ChildProcess
    let port: UInt16

    init() throws {
        let script = """
            import socket, time
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
            print("port", s.getsockname()[1], "", flush=True)
            while True:
                c, _ = s.accept(); c.recv(65536)
                try:
                    c.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 100000\\r\\n\\r\\n")
                    while True: c.send(b"x"); time.sleep(0.1)
                except OSError: c.close()
            """
        process = try ChildProcess(["-c", "exec python3 -u -c \"$0\" 2>&1", script], executable: "/bin/sh")
        guard let line = process.line(startingWith: "port", timeoutMs: 20_000),
            let port = line.firstMatch(after: "port ", upTo: " ").flatMap({ UInt16($0) })
        else {
            throw SystemError("the trickling server did not start", errno: ENOENT)
        }
        self.port = port
    }

    deinit {
        kill(process.pid, SIGTERM)
        _ = process.waitForExit(timeoutMs: 5_000)
    }
}
