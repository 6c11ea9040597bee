import Cluster
import CommandLineOptions
import Compat
import Glibc
import LoopTools
import UdpServer

let loadOptions = CommandOptions(
    command: "load",
    summary:
        "Requests at a steady rate to the hosts of a cluster, in turn, with failover. Exits 1 if any request failed.",
    details: """
        The client pings every host (as the nodes do) and sends each request to the next live
        host; an attempt that times out or is refused is sent again, the same request, to another
        live host, until one answers or --give-up-ms passes. Each request ends exactly once;
        an echo that comes back different is counted as corrupt.

        --phases: phase names are read from standard input, one a line (a pipe or a terminal);
        the run starts in phase "start", each line ends the current phase and starts the next,
        and the end of input stops the load. Requests count in the phase they were sent in.

        Sending stops at the end of --seconds (0: until the end of input with --phases), or on
        SIGINT/SIGTERM/SIGHUP; the requests in flight are then finished (a second signal abandons
        them) and the report printed: sent, completed, retried and failed, p50/p99 latency, per
        phase and per host.
        """,
    options: [
        .text("--hosts", "FILE", "the cluster's hosts file (as serve --hosts takes it)", required: true),
        .integer("--rate", 1...1_000_000, default: 100, "requests a second"),
        .integer("--seconds", 0...31_536_000, default: 10, "how long to send; 0: until the end of input (--phases)"),
        .choice(
            "--request", ["echo", "ping"], default: "echo",
            "echo: the port's echo (type 2) of --size bytes, checked on its return; ping: the cluster's "
                + "3-byte ping (type 0x11), which original and port nodes both answer, empty"),
        .integer("--size", 8...DatagramGeometry.defaultMaxMessageSize, default: 64, "bytes per echo request"),
        .integer(
            "--timeout-ms", 1...86_400_000, default: 1_000, "one attempt on one host may go this long without progress"),
        .integer(
            "--give-up-ms", 1...86_400_000, default: 30_000,
            "a request with no answer from any host this long after it was sent fails"),
        .integer("--max-in-flight", 1...100_000, default: 2_000, "requests in flight at most; sending waits beyond"),
        .flag("--phases", "read phase names from standard input (see above)"),
        pingIntervalOption,
        deadAfterOption,
    ])

/// `loop-harness load`: the cluster's client with failover.
func runLoad(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(loadOptions)
    let backend = try options.backend()
    let hosts = try options.hostsFile()
    let pingConfiguration = try options.pingConfiguration()
    let request: LoadRequest = options.string("--request") == "ping" ? .ping : .echo(size: options.int("--size"))
    if case .ping = request, options.given("--size") {
        throw options.declaration.usage("--size is the echo's: a ping is 3 bytes")
    }
    guard options.flag("--phases") || options.int("--seconds") > 0 else {
        throw options.declaration.usage("--seconds 0 runs until the end of input: it needs --phases")
    }
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    let client = UdpServer(
        loop: loop,
        configuration: nodeConfiguration(
            bind: clientBindAddress(toward: hosts.hosts[0].address),
            options: options))
    try client.start()
    defer { client.shutdown(urgent: true) }
    let pings = try PingServer(loop: loop, server: client, hosts: hosts, selfID: nil, configuration: pingConfiguration)
    try pings.start()
    defer { pings.stop() }
    var failover = FailoverConfiguration()
    failover.attemptTimeoutMs = options.int("--timeout-ms")
    failover.giveUpMs = options.int("--give-up-ms")
    let run = LoadRun(
        loop: loop, failover: FailoverClient(loop: loop, server: client, pings: pings, configuration: failover),
        rate: options.int("--rate"), request: request, maxInFlight: options.int("--max-in-flight"))

    // The first pings tell which hosts are alive: wait for all, or for a second with some.
    let warmUpStart = monotonicNanoseconds()
    while pings.aliveIDs.count < hosts.hosts.count {
        let waitedMs = (monotonicNanoseconds() - warmUpStart) / 1_000_000
        if !pings.aliveIDs.isEmpty && waitedMs >= 1_000 { break }
        if waitedMs >= Int64(pingConfiguration.deadAfterMs) + 1_000 {
            throw CommandFailure("no host of \(options.string("--hosts") ?? "") answered a ping within \(waitedMs) ms")
        }
        if loop.takeShutdownRequest() != nil { return 1 }
        try loop.runOnce()
    }

    var phaseInput: PhaseInput?
    if options.flag("--phases") {
        phaseInput = try PhaseInput(loop: loop, onLine: { run.startPhase($0) }, onEnd: { run.stopSending() })
    }
    defer { phaseInput?.close() }
    try run.start(seconds: options.int("--seconds"))
    phaseInput?.readAllIfNotWatched()
    let reason = try loop.run()
    if reason != .stopped {
        // Finish what is in flight; a second signal abandons it.
        run.stopSending()
        let deadline = monotonicNanoseconds() + (Int64(failover.giveUpMs) + 5_000) * 1_000_000
        while run.failover.inFlight > 0 && monotonicNanoseconds() < deadline {
            if loop.takeShutdownRequest() != nil { break }
            try loop.runOnce()
        }
    }
    let report = run.report(hosts: hosts)
    say(options.json ? report.json.description : report.text)
    return report.ok ? 0 : 1
}

/// Phase names from standard input, one a line, without blocking the loop.
final class PhaseInput {
    let loop: Loop
    let fd: Int32
    private var registration: Registration?
    private var pending: [UInt8] = []
    private let onLine: (String) -> Void
    private let onEnd: () -> Void

    init(loop: Loop, onLine: @escaping (String) -> Void, onEnd: @escaping () -> Void) throws {
        self.loop = loop
        self.onLine = onLine
        self.onEnd = onEnd
        // A descriptor of its own: the loop makes what it watches non-blocking (and O_ASYNC
        // on legacy), and on standard input itself that would change the shell's terminal or
        // the writer's pipe too. Reopening gives a new open file description; dup would not.
        var fd = open("/proc/self/fd/0", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        if fd < 0 { fd = fcntl(0, F_DUPFD_CLOEXEC, 3) }
        guard fd >= 0 else {
            throw CommandFailure("--phases: cannot open standard input: \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        // epoll refuses regular files and /dev/null (select takes them, always readable):
        // those are read through at once, the same on either loop, and end the load there.
        var status = stat()
        let watchable =
            fstat(fd, &status) == 0
            && (isatty(fd) != 0 || status.st_mode & S_IFMT == S_IFIFO || status.st_mode & S_IFMT == S_IFSOCK)
        guard watchable else { return }
        do {
            registration = try loop.registerRead(fd: fd) { [unowned self] _ in self.readable() }
        } catch {
            Glibc.close(fd)
            throw CommandFailure("--phases: standard input cannot be watched: \(error)")
        }
    }

    /// For input that is not watched (a file, /dev/null): every line now, then the end.
    /// Called once the run has started. At most a mebibyte: /dev/zero has no end.
    func readAllIfNotWatched() {
        guard registration == nil, !ended else { return }
        while !ended && bytesRead < 1 << 20 { readable() }
        if !ended { finish() }
    }

    private var bytesRead = 0

    private func readable() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buffer, buffer.count)
        if n < 0 {
            // Unwatched input that would block has nothing more to give now: its end.
            if (errno == EAGAIN || errno == EINTR) && registration != nil { return }
            finish()
            return
        }
        bytesRead += n
        if n == 0 {
            if !pending.isEmpty { deliver(pending) }
            pending.removeAll()
            finish()
            return
        }
        pending += buffer[0..<n]
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            deliver(Array(pending[..<newline]))
            pending.removeSubrange(...newline)
        }
        // A line longer than any phase name is cut, not accumulated without bound.
        if pending.count > 1024 {
            deliver(pending)
            pending.removeAll()
        }
    }

    private func deliver(_ line: [UInt8]) {
        let name = String(decoding: line, as: UTF8.self).trimmingWhitespace()
        if !name.isEmpty { onLine(String(name.prefix(200))) }
    }

    private var ended = false

    private func finish() {
        close()
        onEnd()
    }

    func close() {
        guard !ended else { return }
        ended = true
        guard let registration else {
            Glibc.close(fd)
            return
        }
        self.registration = nil
        do {
            try loop.closeAfterBatch(fd: fd)
        } catch {
            try? loop.unregister(registration)
            Glibc.close(fd)
        }
    }
}

extension String {
    func trimmingWhitespace() -> Substring {
        let isSpace = { (c: Character) in c == " " || c == "\t" || c == "\r" || c == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return self[first...last]
    }
}
