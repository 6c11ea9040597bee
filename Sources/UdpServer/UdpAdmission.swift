/// Whom the server answers: the original's rule (UdpServer.cpp `readPoll`, "unauthorized udp
/// packet") answers only the hosts of its hosts.conf, its local networks and its admin IPs,
/// and drops every other datagram, ACKs included, unread. Addresses are matched by IP alone,
/// as the original's `Hostdb::isIpInNetwork` looks a host up with port 0.
///
/// Members are also trusted to receive at the address they send from: a reply to a member
/// is resent as the original resends it (until acknowledged or its timeout), never held by
/// the reflection bound the server puts on addresses that never acknowledged anything.
public struct UdpAdmission: Sendable, Equatable {
    /// An IPv4 prefix: `address` with only its first `length` bits set.
    public struct Network: Sendable, Hashable, CustomStringConvertible {
        /// The network's first address.
        public let address: UInt32
        /// Leading bits that must match, 0…32.
        public let length: Int

        /// `address`/`length`; address bits beyond the prefix are cleared.
        public init(_ address: UInt32, length: Int) {
            self.length = min(max(length, 0), 32)
            self.address = address & Self.mask(self.length)
        }

        /// Whether `ip` lies in the network.
        public func contains(_ ip: UInt32) -> Bool { ip & Self.mask(length) == address }

        private static func mask(_ length: Int) -> UInt32 { length == 0 ? 0 : UInt32.max << (32 - length) }

        /// `a.b.c.d/N`.
        public var description: String { "\(PeerAddress(ip: address, port: 0).ipString)/\(length)" }
    }

    /// The hosts.conf addresses: admitted, and trusted to receive at their address.
    public var members: Set<UInt32>
    /// Admitted as well (gb.conf's admin IPs, `Conf::isConnectIp`).
    public var admins: Set<UInt32>
    /// Admitted as well: every address in these networks.
    public var localNetworks: [Network]

    /// The rule with exactly these sets: a test's narrow rule, or the original's through
    /// `original(members:admins:ownAddress:)`.
    public init(members: Set<UInt32>, admins: Set<UInt32> = [], localNetworks: [Network] = []) {
        self.members = members
        self.admins = admins
        self.localNetworks = localNetworks
    }

    /// The original's rule for a host at `ownAddress` (UdpServer.cpp:1299-1321): its members,
    /// and 127.0.0.1 as itself (the original reads 127.0.0.1 as its own IP, and its own IP
    /// is a member); its admin IPs; and as local networks 10/8, 192.168/16 and the /16 of
    /// its own address (on 127.0.0.2 that is 127.0/16).
    public static func original(members: Set<UInt32>, admins: Set<UInt32> = [], ownAddress: UInt32) -> UdpAdmission {
        UdpAdmission(
            members: members.union([loopbackAddress]), admins: admins,
            localNetworks: [
                Network(0x0a00_0000, length: 8), Network(0xc0a8_0000, length: 16), Network(ownAddress, length: 16),
            ])
    }

    /// 127.0.0.1.
    static let loopbackAddress: UInt32 = 0x7f00_0001

    /// Whether datagrams from `ip` are read at all.
    public func admits(_ ip: UInt32) -> Bool {
        members.contains(ip) || admins.contains(ip) || localNetworks.contains { $0.contains(ip) }
    }

    /// Whether `ip` is a member (hosts.conf), whose replies are resent without the reflection bound.
    public func isMember(_ ip: UInt32) -> Bool { members.contains(ip) }
}
