import Cluster
import Compat
import LoopTools
import NodeSupport
import UdpServer

/// A node's place in a cluster (`serve --hosts FILE --id N`): it pings the other
/// hosts, shows them in its stats and console, and tells them before it exits.
final class ClusterMembership {
    let hosts: HostsFile
    let me: ClusterHost
    let pings: PingServer

    init(node: RpcNode, hosts: HostsFile, me: ClusterHost, configuration: PingConfiguration) throws {
        self.hosts = hosts
        self.me = me
        self.pings = try PingServer(
            loop: node.loop, server: node.server, hosts: hosts, selfID: me.id,
            configuration: configuration)
        try pings.start()
        // Unowned both: the node keeps its sections, and a section holding the node would keep it forever.
        node.addStatsSections { [unowned self, unowned node] in [("cluster", self.json(now: node.loop.now))] }
        // Going-down notes first, while the server still answers: the others stop sending
        // here before the drain drops new requests.
        node.beforeExit = { [unowned self] drain in self.pings.broadcastGoingDown(drain) }
    }

    /// Admin requests are obeyed from the listed hosts, from the admin addresses (the
    /// original's gb.conf admin IPs make their holder its master admin) and from 127.0.0.1,
    /// where the machine's own tools (`loop-harness shutdown`) send from. Not all of 127/8: a
    /// cluster on loopback aliases gives its members 127.0.0.2 …, so an address there is no credential.
    static func trustedPeers(_ hosts: HostsFile, admins: [UInt32] = []) -> TrustedPeers {
        var prefixes = [TrustedPeers.Prefix(network: 0x7f00_0001, length: 32)]
        for ip in hosts.hosts.map(\.address.ip) + admins where !prefixes.contains(where: { $0.contains(ip) }) {
            prefixes.append(TrustedPeers.Prefix(network: ip, length: 32))
        }
        return TrustedPeers(prefixes: prefixes)
    }

    /// The original's rule: the UDP server answers the listed hosts (by address alone, as
    /// `Hostdb::isIpInNetwork`), the admin addresses and its local networks, nobody else.
    static func admission(_ hosts: HostsFile, me: ClusterHost, admins: [UInt32]) -> UdpAdmission {
        .original(members: Set(hosts.hosts.map(\.address.ip)), admins: Set(admins), ownAddress: me.address.ip)
    }

    func json(now: Int64) -> JSON {
        .object([
            ("hostId", .int(me.id)),
            ("aliveCount", .int(pings.aliveIDs.count)),
            ("pingIntervalMs", .int(pings.configuration.intervalMs)),
            ("deadAfterMs", .int(pings.configuration.deadAfterMs)),
            ("pings", .object(pings.stats.fields.map { ($0.0, .int($0.1)) })),
            ("hosts", .array(pings.table.map { row($0, now: now) })),
        ])
    }

    /// What the console page shows of each host as rendered (`ConsolePage.renderedHostColumns`
    /// that can change: alive or not, the backend): the page is rendered again when it does.
    func pageKey() -> [String] {
        pings.table.map { status in
            let info = status.isSelf ? pings.ownInfo : status.info
            return (status.alive ? "+" : "-") + (info.map { $0.backend?.rawValue ?? "original" } ?? "")
        }
    }

    private func row(_ status: HostStatus, now: Int64) -> JSON {
        let info = status.isSelf ? pings.ownInfo : status.info
        return .object([
            ("id", .int(status.host.id)),
            ("address", .string(status.host.address.ipString)),
            ("udpPort", .int(Int(status.host.address.port))),
            ("httpPort", status.host.httpPort.map { .int(Int($0)) } ?? .null),
            ("self", .bool(status.isSelf)),
            ("alive", .bool(status.alive)),
            ("rttMs", status.rttMs.map { .number($0) } ?? .null),
            ("lastSeenMsAgo", status.lastSeenMsAgo(now: now).map { .int(Int($0)) } ?? .null),
            // What the host said of itself in its last ping: a port node names its backend
            // and process ID in its version; an original, its build date.
            ("backend", info.map { .string($0.backend?.rawValue ?? "original") } ?? .null),
            ("pid", info?.pid.map { .int(Int($0)) } ?? .null),
            ("version", info.map { .string($0.version) } ?? .null),
            ("pingsSent", .int(status.pingsSent)),
            ("pingReplies", .int(status.pingReplies)),
            ("pingTimeouts", .int(status.pingTimeouts)),
            ("pingErrors", .int(status.pingErrors)),
            ("deaths", .int(status.deaths)),
            ("downMs", .int(Int(status.downMs(now: now)))),
            ("goingDownNotes", .int(status.goingDownNotes)),
        ])
    }
}
