import Cluster
import CommandLineOptions
import Compat
import Glibc
import HttpServer
import LoopTools
import NodeSupport
import UdpServer

let serveOptions = CommandOptions(
    command: "serve",
    summary: "An RPC node: handlers for ping, echo, stats, work and save-and-exit; a heartbeat; its counters on exit.",
    details: """
        It runs until SIGINT, SIGTERM or SIGHUP, until --seconds pass, or until a trusted peer asks
        it to save and exit (loop-harness shutdown). A save that fails is answered with its errno
        and the node keeps serving, so the request can be sent again once the cause is fixed; the
        file is replaced atomically (a new file, mode 0600, renamed over PATH; a symlink or a
        directory at PATH is refused).

        --bind beyond loopback (0.0.0.0, or an interface's address) exposes every handler (ping,
        echo, stats, work) to anyone who can reach that address; save-and-exit stays limited to
        the --trust list.
        """,
    options: [
        .integer("--port", 0...65535, default: 0, "UDP port; 0 takes any free one"),
        .text(
            "--bind", "ADDR", expects: "an IPv4 address (a.b.c.d)",
            "the IPv4 address to listen on; default 127.0.0.1 (loopback only)"),
        .text(
            "--trust", "LIST", expects: "comma-separated IPv4 addresses or a.b.c.d/N prefixes",
            "whose save-and-exit requests are obeyed: comma-separated IPv4 addresses "
                + "or CIDR prefixes (10.0.0.0/8); replaces the default, \(TrustedPeers.loopback)"),
        .integer("--seconds", 0...31_536_000, default: 0, "stop by itself after this many seconds; 0: never"),
        .text("--save", "PATH", "where save-and-exit writes the node's counters (JSON)"),
        .text(
            "--http", "PORT", expects: "a TCP port 0…65535",
            "also serve the admin console over HTTP on this TCP port "
                + "(0: any free one), at the --bind address"),
        .integer(
            "--http-max-sockets", 1...15_000, default: consoleMaxSockets,
            "connections the console holds at once; past it the least used is closed (the original's "
                + "m_httpMaxSockets)"),
        .text(
            "--http-host", "NAMES", expects: "comma-separated host names (console.example,node1.example)",
            "names besides its address the console answers to (the Host a browser sends); a request "
                + "naming anything else gets a 421 (a defence against DNS rebinding)"),
        .text(
            "--hosts", "FILE",
            "join a cluster: the hosts file (one host a line: ID ADDRESS UDP_PORT HTTP_PORT, "
                + "HTTP_PORT '-' for no console); the node binds its own line's address and ports, pings "
                + "the others, answers only the listed hosts, its local networks (10/8, 192.168/16, its "
                + "own /16, 127.0.0.1) and --admin-ip addresses, as the original, and obeys admin requests "
                + "from the listed hosts, 127.0.0.1 and --admin-ip only"),
        .integer("--id", 0...(HostsFile.maxHosts - 1), default: 0, "with --hosts: which host this node is (required)"),
        .text(
            "--admin-ip", "ADDR", expects: "an IPv4 address (a.b.c.d)",
            "with --hosts: an admin address (the original's gb.conf admin IPs), answered besides the "
                + "members and the local networks, and obeyed on save-and-exit",
            repeatable: true),
        pingIntervalOption,
        deadAfterOption,
    ])

/// The console's connection limit by default: the original's HTTP server takes
/// `m_httpMaxSockets`, 300 by default (Parms.cpp:10055-10060, HttpServer.cpp:78-82), not
/// its TcpServer's array bound (`MAX_TCP_SOCKS`, 15,000).
let consoleMaxSockets = 300

/// Where a node listens and whom it obeys: from --bind/--port/--http/--trust, or from its hosts file line.
struct NodePlacement {
    var bind = "127.0.0.1"
    var udpPort: UInt16 = 0
    var httpPort: UInt16?
    var trusted = TrustedPeers.loopback
    /// Its own addresses besides 127.0.0.1 and `bind`: its hosts-file line's second IP.
    var ownAddresses: [String] = []
    var cluster: (hosts: HostsFile, me: ClusterHost, pings: PingConfiguration)?
    /// Whom the UDP server answers: with --hosts, the original's rule; else everyone.
    var admission: UdpAdmission?

    init(_ options: ParsedOptions) throws {
        guard options.string("--hosts") != nil else {
            for option in ["--id", "--ping-interval-ms", "--dead-after-ms", "--admin-ip"] where options.given(option) {
                throw options.declaration.usage("\(option) needs --hosts")
            }
            bind =
                try options.converted("--bind") { text in PeerAddress.parseIPv4(text).map { _ in text } } ?? "127.0.0.1"
            udpPort = UInt16(options.int("--port"))
            httpPort = try options.converted("--http") { UInt16($0) }
            trusted = try options.converted("--trust") { try TrustedPeers(parsing: $0) } ?? .loopback
            return
        }
        for option in ["--bind", "--port", "--http", "--trust"] where options.given(option) {
            throw options.declaration.usage(
                "\(option) cannot go with --hosts: the hosts file says where the node listens and whom it obeys")
        }
        guard options.given("--id") else {
            throw options.declaration.usage("--hosts needs --id N: which host this node is")
        }
        let hosts = try options.hostsFile()
        let id = options.int("--id")
        guard hosts.hosts.indices.contains(id) else {
            throw options.declaration.usage("--id \(id): the hosts file lists hosts 0…\(hosts.hosts.count - 1)")
        }
        let pings = try options.pingConfiguration()
        let me = hosts.hosts[id]
        bind = me.address.ipString
        udpPort = me.address.port
        httpPort = me.httpPort
        var admins: [UInt32] = []
        for text in options.strings("--admin-ip") {
            guard let ip = PeerAddress.parseIPv4(text) else {
                throw options.declaration.usage("--admin-ip takes an IPv4 address (a.b.c.d), not '\(text)'")
            }
            admins.append(ip)
        }
        trusted = ClusterMembership.trustedPeers(hosts, admins: admins)
        admission = ClusterMembership.admission(hosts, me: me, admins: admins)
        ownAddresses = secondAddresses(of: me, inHostsFile: options.string("--hosts") ?? "")
        cluster = (hosts, me, pings)
    }
}

/// `loop-harness serve`: a node until SIGINT/SIGTERM/SIGHUP, `--seconds` or a save-and-exit request.
func runServe(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(serveOptions)
    let backend = try options.backend()
    let placement = try NodePlacement(options)
    let bind = placement.bind
    let trusted = placement.trusted
    let seconds = options.int("--seconds")
    let json = options.json
    ProcessSignals.prepare(for: backend)
    // A save past the file-size limit must fail with EFBIG, reported like any failed save, not kill the node.
    signal(SIGXFSZ, SIG_IGN)
    let httpPort = placement.httpPort
    let httpHostNames = try options.converted("--http-host", ConsoleAuthorities.names(parsing:)) ?? []
    if options.given("--http-host") && httpPort == nil {
        throw options.declaration.usage("--http-host needs a console: --http PORT, or a console port in the hosts file")
    }
    var httpConfiguration = TcpServerConfiguration()
    httpConfiguration.maxIncomingSockets = options.int("--http-max-sockets")
    var loopConfiguration = LoopConfiguration()
    // Each TCP socket may hold a read and a write registration: room for the TcpServer's limit.
    if httpPort != nil { loopConfiguration.maxRegistrations = 2 * httpConfiguration.maxIncomingSockets + 1_000 }
    let loop = try Loop.make(backend, configuration: loopConfiguration)
    defer { try? loop.close() }
    var udpConfiguration = nodeConfiguration(
        port: placement.udpPort, bind: bind, ownAddresses: placement.ownAddresses, options: options)
    udpConfiguration.admission = placement.admission
    let server = UdpServer(loop: loop, configuration: udpConfiguration)
    try server.start()
    let node = RpcNode(loop: loop, server: server, savePath: options.string("--save"), trusted: trusted)
    let membership = try placement.cluster.map { cluster in
        try ClusterMembership(node: node, hosts: cluster.hosts, me: cluster.me, configuration: cluster.pings)
    }
    var console: AdminConsole?
    if let httpPort, let ip = PeerAddress.parseIPv4(bind) {
        let http = HttpServer(loop: loop, configuration: httpConfiguration)
        try http.listen(on: PeerAddress(ip: ip, port: httpPort))
        console = AdminConsole(
            node: node, http: http, hostNames: httpHostNames, pageKey: membership.map { $0.pageKey } ?? { [] })
    }
    defer { console?.http.close() }
    let consoleURL = console?.http.tcp.listeningAddress.map { address in
        "http://\(address.ip == 0 ? "127.0.0.1" : address.ipString):\(address.port)/"
    }
    node.onSaveFailure = { (error: SaveError) in
        if json {
            say(
                JSON.object([
                    ("event", .string("save failed")), ("path", .string(error.path)),
                    ("error", .string(error.reason)), ("errno", .int(Int(error.errno))),
                ]).description)
        } else {
            sayError(error.description + " (still serving: fix it and ask again)")
        }
    }

    // A worker job at start-up: the thread pool and its wake-up path are part of every node.
    try loop.submit({ checksum(Array(repeating: 7, count: 1 << 16)) }) { _ in
        if !json { say("worker pool ready") }
    }
    var beats = 0
    try loop.registerSleep(every: 1000) {
        beats += 1
        if !json && beats % 10 == 0 {
            say(
                "heartbeat \(beats): \(server.stats.requestsCompleted + server.stats.handlerCalls) transactions, cpu \(Int(loop.cpuUsage.rounded()))%"
            )
        }
    }
    if seconds > 0 { try stopLoop(loop, afterSeconds: seconds) }
    let address = server.boundAddress ?? PeerAddress(ip: 0x7f00_0001, port: server.port)
    let beyondLoopback = address.ip >> 24 != 127
    // A client reaches a node bound to every interface through loopback.
    let reachAt = address.ip == 0 ? PeerAddress.loopback(port: address.port) : address
    if json {
        say(
            JSON.object([
                ("event", .string("serving")), ("backend", .string(backend.rawValue)),
                ("address", .string(address.ipString)), ("port", .int(Int(server.port))),
                ("pid", .int(Int(getpid()))), ("beyondLoopback", .bool(beyondLoopback)),
                ("httpPort", console?.http.tcp.listeningAddress.map { .int(Int($0.port)) } ?? .null),
                ("hostId", membership.map { .int($0.me.id) } ?? .null),
                ("trusted", .array(trusted.prefixes.map { .string($0.description) })),
            ]).description)
    } else {
        say(
            "serving on \(address), backend \(backend), pid \(getpid())"
                + (membership.map { ", host \($0.me.id) of \($0.hosts.hosts.count)" } ?? ""))
        if let consoleURL { say("admin console at \(consoleURL)") }
        if beyondLoopback {
            say(
                "listening beyond loopback: every handler answers anyone who can reach \(address.ipString); "
                    + "save-and-exit only \(trusted)")
        } else if trusted != .loopback {
            say("save-and-exit only from \(trusted)")
        }
        say(CounterReport.nextSteps(reachAt.description))
    }
    let reason = try loop.run()
    // Signals end the node at once, saved as the original saves on them: outstanding
    // transactions end with shuttingDown.
    if reason != .stopped {
        node.saveOnSignal()
        // A member tells the others first, as on save-and-exit, but waits for them a second
        // at most (a second signal ends the wait): whoever sent the signal wants it gone.
        if let membership {
            var told = false
            membership.pings.broadcastGoingDown { told = true }
            let deadline = monotonicNanoseconds() + 1_000_000_000
            while !told && monotonicNanoseconds() < deadline && loop.takeShutdownRequest() == nil { try loop.runOnce() }
        }
        server.shutdown(urgent: true)
        for _ in 0..<3 { try loop.runOnce() }
    }
    if json {
        var fields: [(String, JSON)] = [("event", .string("stopped")), ("reason", .string(reason.kind))]
        if let signo = reason.signalNumber { fields.append(("signal", .int(Int(signo)))) }
        fields += [("saved", .bool(node.saved)), ("stats", node.statsJSON())]
        say(JSON.object(fields).description)
    } else {
        say("stopped: \(reason)\(node.saved ? " (state saved)" : "")")
        for line in CounterReport.lines(loop: loop.counters, server: server.stats, node: node.counters) { say(line) }
    }
    return 0
}

extension ShutdownReason {
    /// `stopped`, `signal` or `power`: what ended the run, without figures.
    var kind: String {
        switch self {
        case .stopped: return "stopped"
        case .signal: return "signal"
        case .power: return "power"
        }
    }
}
