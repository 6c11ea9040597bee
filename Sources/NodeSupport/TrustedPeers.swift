import UdpServer

/// The peers whose admin requests (save-and-exit) a node obeys: IPv4 prefixes,
/// loopback (127.0.0.0/8) unless the node is told otherwise (`serve --trust`).
/// Anyone who can reach the node may call its other handlers.
public struct TrustedPeers: Equatable, Sendable, CustomStringConvertible {
    /// One CIDR prefix: `network` with only its first `length` bits set.
    public struct Prefix: Equatable, Sendable, CustomStringConvertible {
        public let network: UInt32
        public let length: Int

        public init(network: UInt32, length: Int) {
            self.network = network
            self.length = length
        }

        public var mask: UInt32 { length == 0 ? 0 : UInt32.max << (32 - length) }

        public func contains(_ ip: UInt32) -> Bool { ip & mask == network }

        public var description: String { "\(PeerAddress(ip: network, port: 0).ipString)/\(length)" }
    }

    public let prefixes: [Prefix]

    public static let loopback = TrustedPeers(prefixes: [Prefix(network: 0x7f00_0000, length: 8)])

    public init(prefixes: [Prefix]) { self.prefixes = prefixes }

    /// Parses `10.0.0.0/8,192.168.1.7`: comma-separated dotted quads (a /32 each) or
    /// CIDR prefixes, strictly: no empty entries, prefix lengths 0…32 in decimal, and
    /// no address bits beyond the prefix (10.1.0.0/8 is refused, not read as 10.0.0.0/8).
    public init(parsing list: String) throws(TrustListError) {
        var prefixes: [Prefix] = []
        for entry in list.split(separator: ",", omittingEmptySubsequences: false) {
            prefixes.append(try Self.prefix(entry))
        }
        self.prefixes = prefixes
    }

    private static func prefix(_ entry: Substring) throws(TrustListError) -> Prefix {
        guard !entry.isEmpty else { throw .emptyEntry }
        let parts = entry.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let ip = PeerAddress.parseIPv4(parts[0]) else { throw .notAnAddress(String(entry)) }
        var length = 32
        if parts.count == 2 {
            let text = parts[1]
            guard !text.isEmpty, text.count <= 2, text.allSatisfy({ ("0"..."9").contains($0) }),
                let value = Int(text), (0...32).contains(value)
            else { throw .badPrefixLength(String(entry)) }
            length = value
        }
        let prefix = Prefix(network: ip, length: length)
        guard ip & prefix.mask == ip else {
            throw .hostBitsSet(String(entry), Prefix(network: ip & prefix.mask, length: length).description)
        }
        return prefix
    }

    public func contains(_ ip: UInt32) -> Bool { prefixes.contains { $0.contains(ip) } }

    public var description: String { prefixes.map(\.description).joined(separator: ",") }
}

/// Why a `--trust` list was refused.
public enum TrustListError: Error, Equatable, CustomStringConvertible {
    /// `a,,b`, a leading or trailing comma, or nothing at all.
    case emptyEntry
    case notAnAddress(String)
    case badPrefixLength(String)
    /// The entry, and the prefix it may have meant.
    case hostBitsSet(String, String)

    public var description: String {
        switch self {
        case .emptyEntry: return "an empty entry"
        case .notAnAddress(let entry): return "'\(entry)' is not an IPv4 address or a.b.c.d/N prefix"
        case .badPrefixLength(let entry): return "'\(entry)' has a prefix length outside 0…32"
        case .hostBitsSet(let entry, let meant):
            return "'\(entry)' has bits set beyond its prefix (did you mean \(meant)?)"
        }
    }
}
