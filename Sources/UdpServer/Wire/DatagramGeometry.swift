/// How messages are cut into datagrams, and how big a message may be.
///
/// Both ends of a transaction must use the same datagram size: the receiver
/// checks every datagram's payload length against it.
package struct DatagramGeometry: Hashable, Sendable {
    /// The original's `DGRAM_SIZE`: 1500 (Ethernet MTU) - 28 (IP + UDP) - 10 (slack).
    package static let lanDatagramSize = 1462
    /// The original's `DGRAM_SIZE_LB`, for loopback.
    package static let loopbackDatagramSize = 16400
    /// The largest UDP payload over IPv4.
    package static let largestDatagramSize = 65507
    /// The original's `MAX_DGRAMS`: 280 MiB worth of LAN datagrams, plus one.
    package static let maxDatagrams = 280 * 1024 * 1024 / lanDatagramSize + 1
    /// The largest message by default: `maxDatagrams` full LAN payloads (291,191,900 bytes),
    /// whatever datagram size is in use, so the limit does not depend on the path.
    package static let defaultMaxMessageSize = maxDatagrams * (lanDatagramSize - DatagramHeader.dataHeaderSize)

    /// Bytes per datagram, header included.
    package let datagramSize: Int
    /// The largest message accepted, sent or received.
    package let maxMessageSize: Int

    package init(
        datagramSize: Int = lanDatagramSize,
        maxMessageSize: Int = defaultMaxMessageSize
    ) throws(ConfigurationError) {
        guard datagramSize > DatagramHeader.dataHeaderSize, datagramSize <= Self.largestDatagramSize else {
            throw .datagramSize(datagramSize)
        }
        self.datagramSize = datagramSize
        self.maxMessageSize = maxMessageSize
        // The size travels in a 32-bit word and the datagram number in 21 bits.
        guard maxMessageSize >= 0, maxMessageSize <= Int(UInt32.max),
            datagramCount(forMessageSize: maxMessageSize) - 1 <= Int(DatagramHeader.maxDatagramNumber)
        else {
            throw .maxMessageSize(maxMessageSize)
        }
    }

    /// Message bytes carried by one full datagram.
    package var payloadSize: Int { datagramSize - DatagramHeader.dataHeaderSize }

    /// Datagrams needed for `size` bytes: at least one, so an empty message still travels.
    package func datagramCount(forMessageSize size: Int) -> Int {
        max(1, (size + payloadSize - 1) / payloadSize)
    }

    /// The message bytes datagram `number` carries. Every datagram but the last is full.
    package func payloadRange(ofDatagram number: Int, messageSize size: Int) -> Range<Int> {
        let start = number * payloadSize
        return start..<min(size, start + payloadSize)
    }
}

extension DatagramGeometry {
    /// The defaults, known valid (the fallback while a bad configuration waits to be reported by `start()`).
    static let lan = DatagramGeometry(uncheckedDatagramSize: lanDatagramSize, maxMessageSize: defaultMaxMessageSize)

    private init(uncheckedDatagramSize: Int, maxMessageSize: Int) {
        self.datagramSize = uncheckedDatagramSize
        self.maxMessageSize = maxMessageSize
    }
}
