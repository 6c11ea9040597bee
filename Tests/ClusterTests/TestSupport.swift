import Glibc
import LoopTools
import TestSupport
import Testing

@testable import Cluster
@testable import UdpServer

/// Every test that makes a loop lives under this suite: loops touch process-wide
/// signal state and only one legacy loop may exist at a time, so they run one at a time,
/// and never beside another target's loop suite (`.processExclusive`).
@Suite(.serialized, .processExclusive) struct ClusterLoopTests {}

/// Drops every datagram its server sends while `silent`: a host that hears but does not answer.
final class Silencer: DatagramFilter {
    var silent = false
    func fate(of datagram: OutgoingDatagram) -> DatagramFate { silent ? .drop : .deliver }
}

/// Timings short enough for tests, with margin for a loaded 2-core machine.
extension PingConfiguration {
    static var testing: PingConfiguration {
        var c = PingConfiguration()
        c.intervalMs = 20
        c.deadAfterMs = 400
        c.goingDownTimeoutMs = 1_000
        return c
    }
}

/// A cluster of `count` nodes on one loop: each an RPC server on its own loopback
/// address (127.0.0.2 …, any port) with a `PingServer` and an echo handler, plus the
/// hosts file naming them. Everything is shut down, then the loop closed, at the end.
final class LoopCluster {
    let loop: Loop
    let servers: [UdpServer]
    let silencers: [Silencer]
    let hosts: HostsFile
    private(set) var pings: [PingServer] = []

    /// `configurationOf`: each host's ping timings (by default all `configuration`).
    init(
        loop: Loop, count: Int, configuration: PingConfiguration = .testing,
        configurationOf: ((Int) -> PingConfiguration)? = nil
    ) throws {
        self.loop = loop
        var servers: [UdpServer] = []
        var silencers: [Silencer] = []
        for index in 0..<count {
            var serverConfiguration = UdpServerConfiguration.loopback
            serverConfiguration.bindAddress = "127.0.0.\(index + 2)"
            let silencer = Silencer()
            serverConfiguration.datagramFilter = silencer
            let server = UdpServer(loop: loop, configuration: serverConfiguration)
            try server.start()
            server.registerHandler(type: 2) { [unowned server] request in
                try? server.sendReply(request.payload, to: request)
            }
            servers.append(server)
            silencers.append(silencer)
        }
        self.servers = servers
        self.silencers = silencers
        self.hosts = HostsFile(
            hosts: servers.enumerated().map { index, server in
                ClusterHost(id: index, address: server.boundAddress!, httpPort: nil)
            })
        for index in 0..<count {
            let ping = try PingServer(
                loop: loop, server: servers[index], hosts: hosts, selfID: index,
                configuration: configurationOf?(index) ?? configuration)
            try ping.start()
            pings.append(ping)
        }
    }

    func shutdown() {
        for ping in pings { ping.stop() }
        for server in servers { server.shutdown(urgent: true) }
    }
}

/// A loop of `kind` with a cluster of `count` on it; all closed at the end.
func withCluster<R>(
    _ kind: LoopBackendKind, count: Int = 3, configuration: PingConfiguration = .testing,
    configurationOf: ((Int) -> PingConfiguration)? = nil,
    _ body: (Loop, LoopCluster) throws -> R
) throws -> R {
    let loop = try Loop.make(kind, configuration: .unroutedTimerSignalsAccepted)
    defer {
        do { try loop.close() } catch { Issue.record("closing the loop: \(error)") }
    }
    let cluster = try LoopCluster(
        loop: loop, count: count, configuration: configuration, configurationOf: configurationOf)
    defer {
        cluster.shutdown()
        for _ in 0..<3 { try? loop.runOnce() }
    }
    return try body(loop, cluster)
}
