import Compat

/// The RPC message type of pings and going-down notes: the original's 0x11.
public let pingMessageType: UInt8 = 0x11

/// What a ping (request and reply) carries about its sender, as the original's
/// `PingInfo` does: who it is and what it runs. A fixed 17-byte layout, big-endian:
///
///     0      version (1)
///     1      kind: 0 ping, 1 going down (the original's shutdown note)
///     2…3    host ID, -1 when the sender is not a member (a load client)
///     4      backend: 0 epoll, 1 legacy
///     5…8    process ID
///     9…16   uptime, ms
///
/// A node of either build reads the other's: the mixed cluster of a rolling migration.
public struct PingInfo: Equatable, Sendable {
    /// What the message is: a ping, or the sender's note that it is going down.
    public enum Kind: UInt8, Sendable {
        /// A ping, or its reply.
        case ping = 0
        /// The sender is shutting down: count it dead now, not after the dead-host timeout.
        case goingDown = 1
    }

    package static let version: UInt8 = 1
    package static let size = 17

    /// A ping, or a going-down note.
    public var kind: Kind
    /// nil: not a member.
    public var hostID: Int?
    /// The loop backend the sender runs on.
    public var backend: LoopBackendKind
    /// The sender's process ID.
    public var pid: UInt32
    /// How long the sender's ping server has been up, in milliseconds.
    public var uptimeMs: UInt64

    package init(kind: Kind, hostID: Int?, backend: LoopBackendKind, pid: UInt32, uptimeMs: UInt64) {
        self.kind = kind
        self.hostID = hostID
        self.backend = backend
        self.pid = pid
        self.uptimeMs = uptimeMs
    }

    package var bytes: [UInt8] {
        var out: [UInt8] = [Self.version, kind.rawValue]
        let id = UInt16(bitPattern: Int16(hostID ?? -1))
        out += [UInt8(id >> 8), UInt8(id & 0xff), backend == .epoll ? 0 : 1]
        for shift in stride(from: 24, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: pid >> UInt32(shift)))
        }
        for shift in stride(from: 56, through: 0, by: -8) {
            out.append(UInt8(truncatingIfNeeded: uptimeMs >> UInt64(shift)))
        }
        return out
    }

    /// Parses a ping's payload, strictly: the exact size, a known version, kind and
    /// backend, and a host ID of -1 or 0…`HostsFile.maxHosts`-1.
    package init(parsing payload: [UInt8]) throws(PingInfoError) {
        guard payload.count == Self.size else { throw .wrongSize(payload.count) }
        guard payload[0] == Self.version else { throw .unknownVersion(payload[0]) }
        guard let kind = Kind(rawValue: payload[1]) else { throw .unknownKind(payload[1]) }
        let id = Int(Int16(bitPattern: UInt16(payload[2]) << 8 | UInt16(payload[3])))
        guard id == -1 || (0..<HostsFile.maxHosts).contains(id) else { throw .badHostID(id) }
        let backend: LoopBackendKind
        switch payload[4] {
        case 0: backend = .epoll
        case 1: backend = .legacy
        default: throw .unknownBackend(payload[4])
        }
        let pid = payload[5...8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let uptime = payload[9...16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        self.init(kind: kind, hostID: id == -1 ? nil : id, backend: backend, pid: pid, uptimeMs: uptime)
    }
}

/// Why a ping's payload was refused (the request gets an EINVAL error reply, and is counted).
package enum PingInfoError: Error, Equatable, CustomStringConvertible {
    case wrongSize(Int)
    case unknownVersion(UInt8)
    case unknownKind(UInt8)
    case badHostID(Int)
    case unknownBackend(UInt8)

    package var description: String {
        switch self {
        case .wrongSize(let size): return "a ping is \(PingInfo.size) bytes, not \(size)"
        case .unknownVersion(let version): return "unknown ping version \(version)"
        case .unknownKind(let kind): return "unknown ping kind \(kind)"
        case .badHostID(let id): return "host ID \(id) out of range"
        case .unknownBackend(let backend): return "unknown backend \(backend)"
        }
    }
}
