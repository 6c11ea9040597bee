import CommandLineOptions
import Compat
import Glibc
import LoopTools
import NodeSupport
import UdpServer

/// The message types a node answers.
enum NodeMessage: UInt8, CaseIterable {
    /// Empty reply: liveness and round-trip time.
    case ping = 1
    /// Replies with the request's bytes.
    case echo = 2
    /// Replies with the node's loop and server counters as JSON.
    case stats = 3
    /// Saves the node's state and shuts it down; trusted peers only (`TrustedPeers`).
    case saveAndExit = 4
    /// Runs a checksum of the payload on a worker thread; replies with it.
    case work = 5
}

/// The request handlers of a node, on one loop and one server.
final class RpcNode {
    let loop: Loop
    let server: UdpServer
    /// Where save-and-exit writes the node's counters; nil to only report it.
    let savePath: String?
    /// Whose save-and-exit requests are obeyed.
    let trusted: TrustedPeers
    /// Told of each failed save (the node keeps serving, so that the operator can retry).
    var onSaveFailure: (SaveError) -> Void = { _ in }
    /// More sections for `statsJSON`, each front end adding its own (the admin console its
    /// TCP and HTTP figures, cluster membership its hosts).
    private var extraSections: [() -> [(String, JSON)]] = []
    /// Runs before the drain of a save-and-exit, which starts when it calls its argument
    /// (cluster membership tells the other hosts first).
    var beforeExit: ((@escaping () -> Void) -> Void)?
    private var exiting = false
    private(set) var saved = false
    /// When the node started (loop ms), for `uptimeMs`.
    let startedAt: Int64
    private(set) var counters = NodeCounters()

    init(loop: Loop, server: UdpServer, savePath: String? = nil, trusted: TrustedPeers = .loopback) {
        self.loop = loop
        self.server = server
        self.savePath = savePath
        self.trusted = trusted
        self.startedAt = loop.now
        install()
    }

    private func install() {
        server.registerHandler(type: NodeMessage.ping.rawValue) { [unowned self] request in
            try? self.server.sendReply([], to: request)
        }
        server.registerHandler(type: NodeMessage.echo.rawValue) { [unowned self] request in
            try? self.server.sendReply(request.payload, to: request)
        }
        server.registerHandler(type: NodeMessage.stats.rawValue) { [unowned self] request in
            try? self.server.sendReply(Array(self.statsJSON().description.utf8), to: request)
        }
        server.registerHandler(type: NodeMessage.work.rawValue) { [unowned self] request in
            let payload = request.payload
            do {
                try self.loop.submit(niceness: request.niceness, { checksum(payload) }) { sum in
                    try? self.server.sendReply(bytes(of: sum), to: request)
                }
            } catch {
                try? self.server.sendErrorReply(errno: EAGAIN, to: request)
            }
        }
        server.registerHandler(type: NodeMessage.saveAndExit.rawValue) { [unowned self] request in
            switch self.saveAndExit(requestedBy: request.peer.ip) {
            case .refused:
                try? self.server.sendErrorReply(errno: EPERM, to: request)
            case .failed(let error):
                try? self.server.sendErrorReply(errno: error.errno, to: request)
            case .saved:
                try? self.server.sendReply(Array("saved".utf8), to: request)
                // The reply still has to be acknowledged: stop once the server has drained.
                self.exitWhenDrained()
            }
        }
    }

    /// What a save-and-exit request came to.
    enum AdminOutcome {
        case saved
        /// The requester is not among the trusted peers (counted in `adminRefused`).
        case refused
        /// The save failed; the node keeps serving so that the request can be sent again.
        case failed(SaveError)
    }

    /// Save-and-exit for every front end (the RPC message, the admin console): trusted
    /// peers only, and a failed save is not an exit, or the state would be lost. On
    /// `.saved` the caller answers, then calls `exitWhenDrained()`.
    func saveAndExit(requestedBy ip: UInt32) -> AdminOutcome {
        guard trusted.contains(ip) else {
            counters.adminRefused += 1
            return .refused
        }
        do throws(SaveError) {
            try save()
        } catch {
            counters.savesFailed += 1
            onSaveFailure(error)
            return .failed(error)
        }
        saved = true
        return .saved
    }

    /// The save of an admin signal (SIGTERM, SIGHUP, SIGINT): as the original's urgent
    /// shutdown, which saves before it exits (Loop.cpp:1416, Process.cpp:1377); the signal's
    /// sender is the machine's operator, so no trust check. A failure is counted and reported,
    /// and the node exits all the same: the signal asked for it.
    func saveOnSignal() {
        do throws(SaveError) {
            try save()
            saved = savePath != nil
        } catch {
            counters.savesFailed += 1
            onSaveFailure(error)
        }
    }

    /// An admin request refused before it reached `saveAndExit` (the console's token or origin check).
    func countAdminRefusal() { counters.adminRefused += 1 }

    func addStatsSections(_ sections: @escaping () -> [(String, JSON)]) { extraSections.append(sections) }

    /// Stops the loop once the RPC server has finished what is under way (after
    /// `beforeExit`, if set). A second call while exiting changes nothing.
    func exitWhenDrained() {
        guard !exiting else { return }
        exiting = true
        let drain = { [unowned self] in self.server.shutdown(urgent: false) { [unowned self] in self.loop.stop() } }
        if let beforeExit { beforeExit(drain) } else { drain() }
    }

    private func save() throws(SaveError) {
        guard let savePath else { return }
        try AtomicFile.write(Array((statsJSON().description + "\n").utf8), to: savePath)
    }

    func statsJSON() -> JSON {
        .object(
            [
                ("backend", .string(loop.kind.rawValue)),
                ("uptimeMs", .int(Int(loop.now - startedAt))),
                ("port", .int(Int(server.port))),
                (
                    "loop",
                    .object(loop.counters.fields.map { ($0.0, .int($0.1)) } + [("cpuPercent", .number(loop.cpuUsage))])
                ),
                ("server", .object(server.stats.fields.map { ($0.0, .int($0.1)) })),
                ("node", .object(counters.fields.map { ($0.0, .int($0.1)) } + [("saved", .bool(saved))])),
                ("trusted", .array(trusted.prefixes.map { .string($0.description) })),
            ] + extraSections.flatMap { $0() })
    }
}

/// A checksum that is cheap but not free: the worker's job.
func checksum(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

func bytes(of value: UInt64) -> [UInt8] {
    (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
}

/// The address a client should bind to reach `peer`: the one the kernel's route
/// would send from (127.0.0.1 for a node on loopback, the namespace's own address
/// for a node across a bridge). Bound to loopback, a client could not reach a node
/// elsewhere; bound to every address, it would take datagrams from anywhere.
func clientBindAddress(toward peer: PeerAddress) -> String {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return "127.0.0.1" }
    defer { close(fd) }
    var target = peer.socketAddress
    var local = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let found =
        withUnsafePointer(to: &target) { to in
            to.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        && withUnsafeMutablePointer(to: &local) { at in
            at.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
    return found ? PeerAddress(local).ipString : "127.0.0.1"
}

/// The server configuration the harness uses: loopback-sized datagrams (`--datagram-size`).
func nodeConfiguration(port: UInt16 = 0, bind: String = "127.0.0.1", options: ParsedOptions) -> UdpServerConfiguration {
    var config = UdpServerConfiguration()
    config.port = port
    config.bindAddress = bind
    config.datagramSize = options.int("--datagram-size")
    return config
}
