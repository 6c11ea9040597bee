/// Why a received datagram was rejected. Each malformed shape has its own case.
package enum DatagramError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Fewer than the 8 bytes every datagram starts with.
    case tooShort(length: Int)
    /// The ACK bit is set but the datagram is not exactly 8 bytes.
    case ackLength(length: Int)
    /// A data datagram without room for its 12-byte header.
    case dataHeaderTooShort(length: Int)
    /// The claimed message size is beyond the limit.
    case messageTooLarge(size: Int, limit: Int)
    /// The datagram number is not below the message's datagram count.
    case datagramNumberOutOfRange(number: Int, count: Int)
    /// More payload than this datagram of the message can carry (also any oversized datagram).
    case payloadTooLong(expected: Int, actual: Int)
    /// Less payload than this datagram must carry: every datagram but the last is full,
    /// and the last one holds exactly the rest of the message.
    case payloadTruncated(expected: Int, actual: Int)

    package var description: String {
        switch self {
        case .tooShort(let n): return "datagram of \(n) bytes is shorter than 8"
        case .ackLength(let n): return "ACK of \(n) bytes (must be 8)"
        case .dataHeaderTooShort(let n): return "data datagram of \(n) bytes is shorter than its 12-byte header"
        case .messageTooLarge(let size, let limit): return "message size \(size) exceeds the limit \(limit)"
        case .datagramNumberOutOfRange(let number, let count):
            return "datagram #\(number) of a message of \(count) datagrams"
        case .payloadTooLong(let expected, let actual): return "payload of \(actual) bytes, expected \(expected)"
        case .payloadTruncated(let expected, let actual): return "payload of \(actual) bytes, expected \(expected)"
        }
    }
}
