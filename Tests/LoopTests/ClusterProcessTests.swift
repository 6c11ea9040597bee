import Compat
import Glibc
import LoopTools
import TestSupport
import Testing
import UdpServer

/// A UDP (or TCP) port free on `address` now (bound, read, released): the hosts file needs real ports.
private func freeUdpPort(_ address: String, tcp: Bool = false) throws -> UInt16 {
    let fd = socket(AF_INET, Int32(tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue), 0)
    defer { close(fd) }
    var sin = PeerAddress(ip: PeerAddress.parseIPv4(address)!, port: 0).socketAddress
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &sin) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw ClusterSetupFailed(reason: "no free port on \(address): errno \(errno)") }
    return UInt16(bigEndian: sin.sin_port)
}

struct ClusterSetupFailed: Error { let reason: String }

/// A hosts file of `count` hosts on 127.0.0.2 … with free ports; removed by `remove()`.
private struct TestHostsFile {
    let path: String
    let addresses: [String]

    let httpPorts: [UInt16?]

    /// `consoles`: the IDs that get an HTTP port.
    init(count: Int, consoles: Set<Int> = []) throws {
        path = "/tmp/cluster-hosts-\(getpid())-\(monotonicNanoseconds())"
        var lines = ["# id address udp http"]
        var addresses: [String] = []
        var httpPorts: [UInt16?] = []
        for id in 0..<count {
            let ip = "127.0.0.\(id + 2)"
            let port = try freeUdpPort(ip)
            let http = consoles.contains(id) ? try freeUdpPort(ip, tcp: true) : nil
            lines.append("\(id) \(ip) \(port) \(http.map(String.init) ?? "-")")
            addresses.append("\(ip):\(port)")
            httpPorts.append(http)
        }
        self.addresses = addresses
        self.httpPorts = httpPorts
        try write(lines.joined(separator: "\n") + "\n", to: path, mode: 0o600)
    }

    func remove() { unlink(path) }
}

/// `loop-harness stats --json` of a node, one line.
private func stats(of address: String) throws -> String {
    try HarnessRun(["stats", "--to", address, "--json", "--timeout-ms", "2000"], timeoutMs: 10_000).output
}

/// Whether every node in `observers` sees host `id` alive (from their stats).
private func seenAlive(_ id: Int, by observers: [String]) throws -> Bool {
    for address in observers {
        let line = try stats(of: address)
        guard line.contains("\"hostId\":"), let rows = line.range(of: "\"hosts\":[") else { return false }
        let row = line[rows.upperBound...].components(separatedBy: "{\"id\":").dropFirst().first {
            $0.hasPrefix("\(id),")
        }
        guard let row, row.contains("\"alive\":true") else { return false }
    }
    return true
}

extension String {
    fileprivate func components(separatedBy separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let range = rest.range(of: separator) {
            parts.append(String(rest[..<range.lowerBound]))
            rest = rest[range.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}

extension Substring {
    fileprivate func components(separatedBy separator: String) -> [String] {
        String(self).components(separatedBy: separator)
    }
}

extension LoopConformance {
    @Suite struct ClusterProcesses {
        /// `serve --hosts` takes its place from the file: the options that would contradict it
        /// are usage errors, and so are a missing or unknown --id and a malformed file, whose
        /// every bad line is named.
        @Test func membershipOptionsAreStrict() throws {
            let hosts = try TestHostsFile(count: 2)
            defer { hosts.remove() }
            for (arguments, message) in [
                (["--hosts", hosts.path, "--id", "0", "--port", "7000"], "--port cannot go with --hosts"),
                (["--hosts", hosts.path, "--id", "0", "--trust", "10.0.0.0/8"], "--trust cannot go with --hosts"),
                (["--hosts", hosts.path], "--hosts needs --id N"),
                (["--hosts", hosts.path, "--id", "2"], "--id 2: the hosts file lists hosts 0…1"),
                (["--id", "1"], "--id needs --hosts"),
                (
                    ["--hosts", hosts.path, "--id", "0", "--dead-after-ms", "50", "--ping-interval-ms", "100"],
                    "must be longer than the ping interval"
                ),
                (["--hosts", "/nonexistent/hosts", "--id", "0"], "cannot read the hosts file /nonexistent/hosts"),
            ] {
                let run = try HarnessRun(["serve"] + arguments)
                #expect(run.exitCode == 2, "\(arguments): \(run.output)")
                #expect(run.output.contains(message), "\(arguments): \(run.output)")
            }
            let bad = hosts.path + ".bad"
            try write("0 127.0.0.2 7000 -\n1 127.0.0.2 7000 -\nzero 127.0.0.4 7000 -\n", to: bad, mode: 0o600)
            defer { unlink(bad) }
            let run = try HarnessRun(["serve", "--hosts", bad, "--id", "0"])
            #expect(run.exitCode == 2)
            #expect(run.output.contains("line 2: 127.0.0.2:7000 is host 0's UDP address too"), "\(run.output)")
            #expect(run.output.contains("line 3: the ID 'zero' is not a number"), "\(run.output)")
        }

        /// Admin requests are obeyed from the listed hosts and 127.0.0.1 only: a save-and-exit
        /// from 127.0.0.9 (on this machine, but not a member) is refused with EPERM and
        /// counted, and the node keeps serving; the same from 127.0.0.1 stops it.
        @Test(arguments: LoopBackendKind.allCases)
        func adminRequestsOnlyFromMembers(kind: LoopBackendKind) throws {
            let hosts = try TestHostsFile(count: 2)
            defer { hosts.remove() }
            let node = try ServedNode(["--backend", kind.rawValue, "--hosts", hosts.path, "--id", "0", "--json"])
            #expect(jsonInt(node.seen.last ?? "", "hostId") == 0, "\(node.seen)")

            let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
            defer { try? loop.close() }
            var configuration = UdpServerConfiguration.loopback
            configuration.bindAddress = "127.0.0.9"
            let outsider = UdpServer(loop: loop, configuration: configuration)
            try outsider.start()
            defer { outsider.shutdown(urgent: true) }
            var result: RpcResult?
            outsider.sendRequest([], type: 4, to: PeerAddress(hosts.addresses[0])!, timeoutMs: 5_000, niceness: 0) {
                result = $0
            }
            let deadline = monotonicNanoseconds() + 10_000_000_000
            while result == nil && monotonicNanoseconds() < deadline { try loop.runOnce() }
            #expect(result == .failure(.remote(errno: EPERM)), "\(String(describing: result))")
            #expect(node.isRunning)
            #expect(jsonInt(try stats(of: hosts.addresses[0]), "adminRefused") == 1)

            let accepted = try HarnessRun(["shutdown", "--to", hosts.addresses[0]])
            #expect(accepted.exitCode == 0, "\(accepted.output)")
            #expect(node.finish() == 0)
            #expect(node.seen.last?.contains("\"saved\":true") == true, "\(node.seen.suffix(2))")
        }

        /// `load` refuses what it cannot run (no way to end, a bad file) as usage errors, and
        /// a cluster where no host answers a ping is an error of its own, not a hang.
        @Test func loadCommandLine() throws {
            let hosts = try TestHostsFile(count: 2)
            defer { hosts.remove() }
            let endless = try HarnessRun(["load", "--hosts", hosts.path, "--seconds", "0"])
            #expect(endless.exitCode == 2 && endless.output.contains("needs --phases"), "\(endless.output)")
            let missing = try HarnessRun(["load", "--hosts", hosts.path + ".missing"])
            #expect(missing.exitCode == 2 && missing.output.contains("cannot read the hosts file"), "\(missing.output)")
            let start = monotonicNanoseconds()
            let nobody = try HarnessRun([
                "load", "--hosts", hosts.path, "--seconds", "1", "--dead-after-ms", "300",
                "--ping-interval-ms", "50",
            ])
            #expect(nobody.exitCode == 1 && nobody.output.contains("answered a ping"), "\(nobody.output)")
            #expect(monotonicNanoseconds() - start < 10_000_000_000)
        }

        /// A member stopped by a signal saves, as the original does on one, and tells the
        /// others too (the original does not): they count it dead at once, not after the
        /// 4 s dead-host timeout.
        @Test(arguments: LoopBackendKind.allCases)
        func signalledMemberTellsTheOthers(kind: LoopBackendKind) throws {
            let hosts = try TestHostsFile(count: 2)
            defer { hosts.remove() }
            let savePath = "/tmp/signalled-member-\(getpid())-\(kind.rawValue).json"
            unlink(savePath)
            defer { unlink(savePath) }
            let nodes = try (0..<2).map { id in
                try ServedNode(
                    ["--backend", kind.rawValue, "--hosts", hosts.path, "--id", "\(id)", "--json"]
                        + (id == 1 ? ["--save", savePath] : []))
            }
            defer { for node in nodes where node.isRunning { kill(node.process.pid, SIGKILL) } }
            let deadline = monotonicNanoseconds() + 10_000_000_000
            while try !seenAlive(1, by: [hosts.addresses[0]]) && monotonicNanoseconds() < deadline { usleep(50_000) }
            kill(nodes[1].process.pid, SIGTERM)
            #expect(nodes[1].finish() == 0)
            #expect(nodes[1].seen.last?.contains("\"saved\":true") == true, "\(nodes[1].seen.suffix(1))")
            #expect(access(savePath, R_OK) == 0, "the signal saved the node's state")
            let seen = try stats(of: hosts.addresses[0])
            #expect(try !seenAlive(1, by: [hosts.addresses[0]]), "\(seen)")
            #expect(seen.contains("\"goingDownNotes\":1"), "\(seen)")
            kill(nodes[0].process.pid, SIGTERM)
            #expect(nodes[0].finish() == 0)
        }

        /// The console of a member has the hosts table: a row per host with its address and
        /// backend, live from `/status.json`; a host that went down is shown dead.
        @Test(arguments: LoopBackendKind.allCases)
        func consoleShowsTheHostsTable(kind: LoopBackendKind) throws {
            let hosts = try TestHostsFile(count: 2, consoles: [0])
            defer { hosts.remove() }
            let nodes = try (0..<2).map { id in
                try ServedNode(["--backend", kind.rawValue, "--hosts", hosts.path, "--id", "\(id)", "--json"])
            }
            defer { for node in nodes where node.isRunning { kill(node.process.pid, SIGKILL) } }
            let port = try #require(hosts.httpPorts[0])
            let host0: UInt32 = 0x7f00_0002
            let deadline = monotonicNanoseconds() + 10_000_000_000
            var page = try HttpExchange(port: port, ip: host0, "GET / HTTP/1.1\r\nHost: 127.0.0.2:\(port)\r\n\r\n")
            // Host 1 is alive once it answers a ping, and its backend is known once it sends
            // one of its own (the info rides on its pings): wait for both.
            let aliveRow =
                "<tr class=\"alive\"><td data-host-figure=\"id\">1</td><td data-host-figure=\"address\">127.0.0.3</td><td data-host-figure=\"backend\">\(kind.rawValue)</td>"
            while !page.body.contains(aliveRow) && monotonicNanoseconds() < deadline {
                usleep(50_000)
                page = try HttpExchange(port: port, ip: host0, "GET / HTTP/1.1\r\nHost: 127.0.0.2:\(port)\r\n\r\n")
            }
            #expect(page.body.contains("<table id=\"hosts\">"), "\(page.body)")
            #expect(page.body.contains("<tr class=\"alive self\"><td data-host-figure=\"id\">0</td>"))
            #expect(page.body.contains(aliveRow))
            let status = try HttpExchange(
                port: port, ip: host0, "GET /status.json HTTP/1.1\r\nHost: 127.0.0.2:\(port)\r\n\r\n")
            #expect(status.body.contains("\"cluster\":{\"hostId\":0,\"aliveCount\":2"), "\(status.body)")

            let stopped = try HarnessRun(["shutdown", "--to", hosts.addresses[1]])
            #expect(stopped.exitCode == 0 && nodes[1].finish() == 0)
            let after = try HttpExchange(port: port, ip: host0, "GET / HTTP/1.1\r\nHost: 127.0.0.2:\(port)\r\n\r\n")
            #expect(after.body.contains("<tr class=\"dead\"><td data-host-figure=\"id\">1</td>"), "\(after.body)")
            kill(nodes[0].process.pid, SIGTERM)
            #expect(nodes[0].finish() == 0)
        }

        /// A mixed cluster in one run: three nodes on both backends, the load client with
        /// failover sending all along, host 1 moved to the other backend (save-and-exit,
        /// restart, seen alive by the others), then host 2 killed outright; not one request
        /// fails or ends twice: the killed host's are retried on the others.
        @Test func mixedClusterRollsAHostWithoutLosingARequest() throws {
            let hosts = try TestHostsFile(count: 3)
            defer { hosts.remove() }
            let backends: [LoopBackendKind] = [.epoll, .legacy, .epoll]
            var nodes = try backends.enumerated().map { id, kind in
                try ServedNode([
                    "--backend", kind.rawValue, "--hosts", hosts.path, "--id", "\(id)", "--json",
                    "--dead-after-ms", "2000",
                ])
            }
            defer { for node in nodes where node.isRunning { kill(node.process.pid, SIGKILL) } }
            let deadline = monotonicNanoseconds() + 20_000_000_000
            func waitUntil(_ what: String, _ condition: () throws -> Bool) throws {
                while try !condition() {
                    guard monotonicNanoseconds() < deadline else {
                        throw ClusterSetupFailed(reason: "timed out waiting: \(what)")
                    }
                    usleep(50_000)
                }
            }
            for id in 0..<3 {
                try waitUntil("host \(id) alive") {
                    try seenAlive(id, by: hosts.addresses.enumerated().filter { $0.offset != id }.map(\.element))
                }
            }

            let fifo = hosts.path + ".phases"
            #expect(mkfifo(fifo, 0o600) == 0)
            defer { unlink(fifo) }
            let load = try ChildProcess(
                [
                    "-c", "exec \"$0\" \"$@\" < \"\(fifo)\" 2>&1", ChildProcess.harnessPath, "load",
                    "--hosts", hosts.path, "--rate", "200", "--seconds", "0", "--phases", "--json",
                    "--dead-after-ms", "2000",
                ], executable: "/bin/sh")
            var writer: Int32 = -1
            try waitUntil("the load client to open its input") {
                writer = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
                return writer >= 0
            }
            func phase(_ name: String) { _ = (name + "\n").withCString { write(writer, $0, strlen($0)) } }
            usleep(500_000)
            phase("host 1 to epoll")
            let moved = try HarnessRun(["shutdown", "--to", hosts.addresses[1]])
            #expect(moved.exitCode == 0, "\(moved.output)")
            #expect(nodes[1].finish() == 0)
            nodes[1] = try ServedNode([
                "--backend", "epoll", "--hosts", hosts.path, "--id", "1", "--json",
                "--dead-after-ms", "2000",
            ])
            try waitUntil("host 1 seen alive again") { try seenAlive(1, by: [hosts.addresses[0], hosts.addresses[2]]) }
            phase("steady")
            usleep(500_000)
            // A host that dies without a word: the requests it held time out and move on.
            phase("host 2 killed")
            kill(nodes[2].process.pid, SIGKILL)
            usleep(1_500_000)
            close(writer)

            let report = load.line(startingWith: "{", timeoutMs: 30_000) ?? ""
            #expect(load.waitForExit(timeoutMs: 10_000).flatMap(exited) == 0, "\(report)")
            #expect(
                jsonInt(report, "failed") == 0 && jsonInt(report, "duplicateCompletions") == 0
                    && jsonInt(report, "corrupt") == 0 && jsonInt(report, "unfinished") == 0, "\(report)")
            #expect((jsonInt(report, "sent") ?? 0) >= 200, "\(report)")
            #expect((jsonInt(report, "retried") ?? 0) >= 1, "the killed host's requests were retried: \(report)")
            #expect(
                report.contains("\"name\":\"host 1 to epoll\"") && report.contains("\"name\":\"steady\""), "\(report)")
            let seenBy0 = try stats(of: hosts.addresses[0])
            #expect(seenBy0.contains("{\"id\":1,") && seenBy0.contains("\"goingDownNotes\":1"), "\(seenBy0)")
            for node in nodes[0...1] { kill(node.process.pid, SIGTERM) }
            for node in nodes[0...1] { #expect(node.finish() == 0) }
        }
    }
}
