import Compat
import Glibc

/// The RPC message type of pings and going-down notes: the original's 0x11.
public let pingMessageType: UInt8 = 0x11

/// What a member says of itself in its pings: the original's `PingInfo` (Hostdb.h:85),
/// byte for byte as its x86-64 build lays it out (little-endian, 112 bytes with padding),
/// so that an original node and a port node read each other's pings:
///
///     0    int64  local time, ms since the epoch  (m_localHostTimeMS)
///     8    int32  host ID                          (m_hostId)
///     12…71       load, memory, CPU, disk, docs, counters (int32/float; the port sends 0
///                 but for the flags at 40, the incoming UDP slots at 64, the TCP sockets at 68)
///     72   int16  spiders out; 74 int16 collection being merged (-1: none); 76 int16[4] disk temperatures
///     84   char[21] version, NUL-terminated    (m_gbVersionStr)
///     105  repair mode; 106 kernel errors; 107 recovery level; 108…111 padding
///
/// The original copies a member's `PingInfo` into its hosts table and shows its version;
/// it crashes on purpose when the host ID is not the one its hosts.conf gives the sender's
/// address (PingServer.cpp:960), so a port node sends its own only to members, with the ID
/// of its own line. A port node names itself in the version: `port epoll 1234` (its backend
/// and process ID), which the original's hosts page shows.
public struct PingInfo: Equatable, Sendable {
    /// `sizeof(PingInfo)` in the original's x86-64 build.
    package static let size = 112
    /// The version string's room, its NUL included (`m_gbVersionStr[21]`).
    package static let versionCapacity = 21
    /// What an idle original node sets in `m_flags`: not in a daily merge
    /// (`PFLAG_MERGEMODE0 | PFLAG_MERGEMODE0OR6`, Hostdb.h:49-50, PingServer.cpp:496-498).
    package static let idleFlags: Int32 = 0x08 | 0x10

    /// The sender's host ID in the hosts file.
    public var hostID: Int
    /// The sender's wall clock when it sent, ms since the epoch: an original takes host 0's
    /// as the cluster's time (PingServer.cpp:1079, 1215-1223), so it must be the real time.
    public var localTimeMs: Int64
    /// The sender's `m_flags` (`PFLAG_*`, Hostdb.h:44-54).
    public var flags: Int32
    /// Incoming UDP transactions in progress at the sender.
    public var udpSlotsInUseIncoming: Int32
    /// TCP sockets in use at the sender.
    public var tcpSocketsInUse: Int32
    /// The sender's version: an original's build date, or `port BACKEND PID` for a port node.
    public var version: String

    /// A `PingInfo` with these fields; everything else the original carries is 0
    /// (-1 for the collection being merged: none).
    package init(
        hostID: Int, localTimeMs: Int64, version: String, flags: Int32 = PingInfo.idleFlags,
        udpSlotsInUseIncoming: Int32 = 0, tcpSocketsInUse: Int32 = 0
    ) {
        self.hostID = hostID
        self.localTimeMs = localTimeMs
        self.flags = flags
        self.udpSlotsInUseIncoming = udpSlotsInUseIncoming
        self.tcpSocketsInUse = tcpSocketsInUse
        self.version = version
    }

    /// A port node's version string: `port BACKEND PID`.
    package static func portVersion(backend: LoopBackendKind, pid: Int32) -> String {
        "port \(backend.rawValue) \(pid)"
    }

    /// The backend a port node named in its version; nil for an original (or anything else).
    public var backend: LoopBackendKind? { portFields.map(\.backend) }

    /// The process ID a port node named in its version; nil for an original.
    public var pid: Int32? { portFields.map(\.pid) }

    private var portFields: (backend: LoopBackendKind, pid: Int32)? {
        let words = version.split(separator: " ")
        guard words.count == 3, words[0] == "port", let backend = LoopBackendKind(rawValue: String(words[1])),
            let pid = Int32(words[2])
        else { return nil }
        return (backend, pid)
    }

    package var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.size)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            for index in 0..<MemoryLayout<T>.size {
                out[offset + index] = UInt8(truncatingIfNeeded: value >> (8 * index))
            }
        }
        put(localTimeMs, at: 0)
        put(Int32(truncatingIfNeeded: hostID), at: 8)
        put(flags, at: 40)
        put(udpSlotsInUseIncoming, at: 64)
        put(tcpSocketsInUse, at: 68)
        put(Int16(-1), at: 74)
        for (index, byte) in version.utf8.prefix(Self.versionCapacity - 1).enumerated() { out[84 + index] = byte }
        return out
    }

    /// Parses a ping's payload: exactly `size` bytes, a host ID in 0…`HostsFile.maxHosts`-1
    /// and a NUL-terminated version.
    package init(parsing payload: [UInt8]) throws(PingInfoError) {
        guard payload.count == Self.size else { throw .wrongSize(payload.count) }
        func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
            (0..<MemoryLayout<T>.size).reduce(T.zero) { value, index in
                value | T(truncatingIfNeeded: payload[offset + index]) << (8 * index)
            }
        }
        let id = Int(get(Int32.self, at: 8))
        guard (0..<HostsFile.maxHosts).contains(id) else { throw .badHostID(id) }
        let versionBytes = payload[84..<84 + Self.versionCapacity]
        guard let end = versionBytes.firstIndex(of: 0) else { throw .unterminatedVersion }
        self.init(
            hostID: id, localTimeMs: get(Int64.self, at: 0),
            version: String(decoding: payload[84..<end], as: UTF8.self),
            flags: get(Int32.self, at: 40), udpSlotsInUseIncoming: get(Int32.self, at: 64),
            tcpSocketsInUse: get(Int32.self, at: 68))
    }
}

/// Why a ping's payload was refused (the request gets an EINVAL error reply, and is counted).
package enum PingInfoError: Error, Equatable, CustomStringConvertible {
    case wrongSize(Int)
    case badHostID(Int)
    case unterminatedVersion
    /// A member's ping naming another host ID than its line's: the original crashes on it.
    case notTheSendersID(claimed: Int, sender: Int)

    package var description: String {
        switch self {
        case .wrongSize(let size): return "a PingInfo is \(PingInfo.size) bytes, not \(size)"
        case .badHostID(let id): return "host ID \(id) out of range"
        case .unterminatedVersion: return "the version has no terminating NUL in its 21 bytes"
        case .notTheSendersID(let claimed, let sender):
            return "a ping from host \(sender)'s address names host \(claimed)"
        }
    }
}

/// The forms a type-0x11 request takes, told apart by size as the original's
/// `handleRequest11` does (PingServer.cpp:954, 1126, 1159, 1215).
package enum PingMessage: Equatable {
    /// A member's ping: its `PingInfo`.
    case info(PingInfo)
    /// A member's going-down note: its host ID (int32, little-endian) and whether to alert the
    /// admin (one byte), 5 bytes (PingServer.cpp:2439-2440, 1126).
    case goingDown(hostID: Int32)
    /// A ping from someone who is not a member: 3 bytes, which the original answers without
    /// logging "No host" (PingServer.cpp:902). The port's clients of the cluster send it.
    case probe
    /// Any other size: a `PingInfo` of the wrong size (`Unknown request size`), or the
    /// original's clock messages (4 and 8 bytes), which the port does not keep.
    case other(size: Int)

    package static let goingDownSize = 5
    package static let probeSize = 3

    package init(_ payload: [UInt8]) throws(PingInfoError) {
        switch payload.count {
        case PingInfo.size: self = .info(try PingInfo(parsing: payload))
        case Self.goingDownSize:
            let id = payload[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            self = .goingDown(hostID: Int32(bitPattern: id))
        case Self.probeSize: self = .probe
        default: self = .other(size: payload.count)
        }
    }

    package var bytes: [UInt8] {
        switch self {
        case .info(let info): return info.bytes
        case .goingDown(let id):
            let bits = UInt32(bitPattern: id)
            return [0, 8, 16, 24].map { UInt8(truncatingIfNeeded: bits >> $0) } + [0]
        case .probe: return [0, 0, 0]
        case .other(let size): return [UInt8](repeating: 0, count: size)
        }
    }
}
