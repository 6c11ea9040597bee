/// A message being received: the buffer it is reassembled in and which datagrams arrived.
/// Created from a datagram whose header was validated, so `size` is within the limit.
final class IncomingMessage {
    let size: Int
    let type: UInt8
    let hadError: Bool
    let datagramCount: Int
    private var received: BitSet
    /// Left uninitialized: every byte is written by some datagram before the
    /// message is complete, and untouched pages cost no memory until then.
    private var buffer: [UInt8]

    init(size: Int, type: UInt8, hadError: Bool, geometry: DatagramGeometry) {
        self.size = size
        self.type = type
        self.hadError = hadError
        datagramCount = geometry.datagramCount(forMessageSize: size)
        received = BitSet(capacity: datagramCount)
        buffer = [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
    }

    var isComplete: Bool { received.isFull }
    var receivedCount: Int { received.count }

    /// Whether a datagram agrees with the first one seen of this message.
    func matches(_ header: DatagramHeader) -> Bool {
        header.messageSize == size && header.messageType == type && header.hadError == hadError
    }

    /// Stores a datagram's payload; false if it was already there. The header was
    /// validated against the geometry, so the payload fits its place exactly.
    func accept(number: Int, payload: UnsafeRawBufferPointer, geometry: DatagramGeometry) -> Bool {
        guard received.insert(number) else { return false }
        let range = geometry.payloadRange(ofDatagram: number, messageSize: size)
        buffer.withUnsafeMutableBytes { destination in
            UnsafeMutableRawBufferPointer(rebasing: destination[range]).copyMemory(from: payload)
        }
        return true
    }

    /// The complete message. Call once, when `isComplete`.
    func takeBytes() -> [UInt8] {
        precondition(isComplete)
        defer { buffer = [] }
        return buffer
    }
}
