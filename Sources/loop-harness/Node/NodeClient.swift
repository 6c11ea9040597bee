import Cluster
import CommandLineOptions
import Compat
import Glibc
import HttpServer
import LoopTools
import NodeSupport
import UdpServer

/// The longest a request may wait for progress: one day.
let timeoutOption = Option.integer(
    "--timeout-ms", 1...86_400_000, default: 5_000,
    "how long a request may go without progress before it times out, ms")
let targetOption = Option.text(
    "--to", "IP:PORT", expects: "an IPv4 address and port (127.0.0.1:7000)",
    "the node to ask", required: true)

/// Runs `body` with a client loop and server on an ephemeral port, and the target peer (`--to`).
func withClient<R>(_ options: ParsedOptions, _ body: (Loop, UdpServer, PeerAddress) throws -> R) throws -> R {
    guard let peer = try options.converted("--to", PeerAddress.init) else {
        throw options.declaration.usage("--to is required")
    }
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    let client = UdpServer(
        loop: loop,
        configuration: nodeConfiguration(
            bind: clientBindAddress(toward: peer), ownAddresses: sameHostAddresses([peer]), options: options))
    try client.start()
    return try body(loop, client, peer)
}

/// Why a request to `peer` failed, for a person. A timeout with nothing at all back
/// from the peer (not one datagram in) means no node is there.
func failureText(_ error: RpcError, peer: PeerAddress, client: UdpServer) -> String {
    if error == .timedOut && client.stats.datagramsIn == 0 {
        return "no node answered at \(peer) (is `serve` running?)"
    }
    if error == .remote(errno: EPERM) {
        return "\(peer) refused the request: \(error) (this address is not among the node's --trust peers)"
    }
    return "\(peer): \(error)"
}
