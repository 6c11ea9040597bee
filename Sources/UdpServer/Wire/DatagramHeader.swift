/// The header of every datagram, bit for bit as the original lays it out.
/// All words are big-endian.
///
/// ```
/// word 0: bits 31-24 message type, 23 ACK, 22 cancel, 21 nice, 20-0 datagram number
/// word 1: bit 31 sent by the initiator, 30 had error, 29-0 transaction id
/// word 2: message size in bytes (data datagrams only)
/// ```
///
/// A data datagram is the 12-byte header plus payload; an ACK is the first 8 bytes alone.
package struct DatagramHeader: Hashable, Sendable {
    package enum Kind: Hashable, Sendable {
        case ack
        /// `messageSize` is the whole message's size, headers excluded.
        case data(messageSize: UInt32)
    }

    package static let dataHeaderSize = 12
    package static let ackSize = 8
    package static let maxDatagramNumber: UInt32 = 0x001f_ffff
    /// The original's `UDP_MAX_TRANSID`: the largest id a datagram carries; ids issued wrap to 0
    /// before it, as the original's (which never issues it).
    package static let maxTransactionId: UInt32 = 0x3fff_ffff

    package var kind: Kind
    package var messageType: UInt8
    /// On an ACK: "I have no such transaction, stop sending".
    package var isCancel: Bool
    /// The sender's niceness is above 0.
    package var isNice: Bool
    package var datagramNumber: UInt32
    /// Set on request datagrams and on the requester's ACKs; the receiver flips it to find its slot.
    package var isFromInitiator: Bool
    /// An error reply: its first 4 content bytes are the errno.
    package var hadError: Bool
    package var transactionId: UInt32

    package init(
        kind: Kind, messageType: UInt8 = 0, isCancel: Bool = false, isNice: Bool = false,
        datagramNumber: UInt32, isFromInitiator: Bool, hadError: Bool = false, transactionId: UInt32
    ) {
        precondition(datagramNumber <= Self.maxDatagramNumber, "datagram number \(datagramNumber) does not fit 21 bits")
        precondition(transactionId <= Self.maxTransactionId, "transaction id \(transactionId) does not fit 30 bits")
        self.kind = kind
        self.messageType = messageType
        self.isCancel = isCancel
        self.isNice = isNice
        self.datagramNumber = datagramNumber
        self.isFromInitiator = isFromInitiator
        self.hadError = hadError
        self.transactionId = transactionId
    }

    package var isAck: Bool { kind == .ack }

    /// Bytes this header takes on the wire.
    package var encodedSize: Int { isAck ? Self.ackSize : Self.dataHeaderSize }

    /// The whole datagram is a message's size, or nil for an ACK.
    package var messageSize: Int? {
        if case .data(let size) = kind { return Int(size) }
        return nil
    }

    // MARK: Encoding

    /// Writes the header at the start of `buffer`, which must hold `encodedSize` bytes.
    package func write(to buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= encodedSize)
        var word0 = UInt32(messageType) << 24 | datagramNumber
        if isAck { word0 |= Bits.ack }
        if isCancel { word0 |= Bits.cancel }
        if isNice { word0 |= Bits.nice }
        var word1 = transactionId
        if isFromInitiator { word1 |= Bits.initiator }
        if hadError { word1 |= Bits.hadError }
        buffer.storeBytes(of: word0.bigEndian, toByteOffset: 0, as: UInt32.self)
        buffer.storeBytes(of: word1.bigEndian, toByteOffset: 4, as: UInt32.self)
        if case .data(let size) = kind {
            buffer.storeBytes(of: size.bigEndian, toByteOffset: 8, as: UInt32.self)
        }
    }

    /// The header alone, as bytes.
    package var encoded: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: encodedSize) { buffer, count in
            write(to: UnsafeMutableRawBufferPointer(buffer))
            count = encodedSize
        }
    }

    // MARK: Decoding

    /// Parses and validates a whole received datagram (header and payload) against
    /// `geometry`. Every malformed shape is a distinct `DatagramError`; nothing here
    /// allocates or trusts the sizes it reads before checking them.
    package static func decode(
        _ datagram: UnsafeRawBufferPointer,
        geometry: DatagramGeometry
    ) throws(DatagramError) -> DatagramHeader {
        let length = datagram.count
        guard length >= ackSize else { throw .tooShort(length: length) }
        let word0 = UInt32(bigEndian: datagram.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let word1 = UInt32(bigEndian: datagram.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let number = word0 & Bits.datagramNumber
        var header = DatagramHeader(
            kind: .ack, messageType: UInt8(truncatingIfNeeded: word0 >> 24),
            isCancel: word0 & Bits.cancel != 0, isNice: word0 & Bits.nice != 0,
            datagramNumber: number, isFromInitiator: word1 & Bits.initiator != 0,
            hadError: word1 & Bits.hadError != 0, transactionId: word1 & Bits.transactionId)
        if word0 & Bits.ack != 0 {
            guard length == ackSize else { throw .ackLength(length: length) }
            return header
        }
        guard length >= dataHeaderSize else { throw .dataHeaderTooShort(length: length) }
        let size = UInt32(bigEndian: datagram.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        guard Int(size) <= geometry.maxMessageSize else {
            throw .messageTooLarge(size: Int(size), limit: geometry.maxMessageSize)
        }
        let count = geometry.datagramCount(forMessageSize: Int(size))
        guard Int(number) < count else { throw .datagramNumberOutOfRange(number: Int(number), count: count) }
        let expected = geometry.payloadRange(ofDatagram: Int(number), messageSize: Int(size)).count
        let actual = length - dataHeaderSize
        if actual > expected { throw .payloadTooLong(expected: expected, actual: actual) }
        if actual < expected { throw .payloadTruncated(expected: expected, actual: actual) }
        header.kind = .data(messageSize: size)
        return header
    }

    /// Who a datagram that failed to decode is addressed to: its transaction id,
    /// initiator bit and datagram number (as an ACK-shaped header, the only fields
    /// set), so that it can be refused with a cancel ACK. Nil under 8 bytes.
    package static func addressing(of datagram: UnsafeRawBufferPointer) -> DatagramHeader? {
        guard datagram.count >= ackSize else { return nil }
        let word0 = UInt32(bigEndian: datagram.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let word1 = UInt32(bigEndian: datagram.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        return DatagramHeader(
            kind: .ack, datagramNumber: word0 & Bits.datagramNumber,
            isFromInitiator: word1 & Bits.initiator != 0, transactionId: word1 & Bits.transactionId)
    }

    /// `decode` for a byte array (tests, tools).
    package static func decode(_ datagram: [UInt8], geometry: DatagramGeometry) throws(DatagramError) -> DatagramHeader
    {
        // withUnsafeBytes cannot carry a typed throw out, so hand the result back as a Result.
        let result = datagram.withUnsafeBytes { bytes in
            Result { () throws(DatagramError) -> DatagramHeader in try decode(bytes, geometry: geometry) }
        }
        return try result.get()
    }

    enum Bits {
        static let ack: UInt32 = 0x0080_0000
        static let cancel: UInt32 = 0x0040_0000
        static let nice: UInt32 = 0x0020_0000
        static let datagramNumber: UInt32 = 0x001f_ffff
        static let initiator: UInt32 = 0x8000_0000
        static let hadError: UInt32 = 0x4000_0000
        static let transactionId: UInt32 = 0x3fff_ffff
    }
}
