import TestSupport
import Testing

@testable import UdpServer

/// The wire format, bit for bit. Pure value code: no loop.
@Suite(.processExclusive) struct Wire {
    static let lan = try! DatagramGeometry()

    @Test func everyFieldHasItsBits() {
        func words(_ header: DatagramHeader) -> [UInt32] {
            let bytes = header.encoded
            return stride(from: 0, to: bytes.count, by: 4).map { (i: Int) -> UInt32 in
                bytes[i..<i + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            }
        }
        let zero = DatagramHeader(
            kind: .data(messageSize: 0), datagramNumber: 0, isFromInitiator: false, transactionId: 0)
        #expect(words(zero) == [0, 0, 0])
        var h = zero
        h.messageType = 0xab
        #expect(words(h) == [0xab00_0000, 0, 0])
        h = zero
        h.isCancel = true
        #expect(words(h) == [0x0040_0000, 0, 0])
        h = zero
        h.isNice = true
        #expect(words(h) == [0x0020_0000, 0, 0])
        h = zero
        h.datagramNumber = 0x1f_ffff
        #expect(words(h) == [0x001f_ffff, 0, 0])
        h = zero
        h.isFromInitiator = true
        #expect(words(h) == [0, 0x8000_0000, 0])
        h = zero
        h.hadError = true
        #expect(words(h) == [0, 0x4000_0000, 0])
        h = zero
        h.transactionId = 0x3fff_ffff
        #expect(words(h) == [0, 0x3fff_ffff, 0])
        h = zero
        h.kind = .data(messageSize: 0xdead_beef)
        #expect(words(h) == [0, 0, 0xdead_beef])
        h = zero
        h.kind = .ack
        #expect(words(h) == [0x0080_0000, 0])
        let all = DatagramHeader(
            kind: .ack, messageType: 0x12, isCancel: true, isNice: true,
            datagramNumber: 0x1f_ffff, isFromInitiator: true, hadError: true,
            transactionId: 0x3fff_ffff)
        #expect(all.encoded == [0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        // Big-endian: the most significant byte first.
        let sized = DatagramHeader(
            kind: .data(messageSize: 0x0102_0304), messageType: 5, datagramNumber: 0x0a_0b0c,
            isFromInitiator: true, transactionId: 0x0d0e_0f10)
        #expect(sized.encoded == [0x05, 0x0a, 0x0b, 0x0c, 0x8d, 0x0e, 0x0f, 0x10, 0x01, 0x02, 0x03, 0x04])
    }

    @Test func roundTripsRandomHeaders() throws {
        var random = SplitMix64(seed: 42)
        let geometry = Self.lan
        for _ in 0..<20_000 {
            let size = Int.random(in: 0...200_000, using: &random)
            let count = geometry.datagramCount(forMessageSize: size)
            let number = Int.random(in: 0..<count, using: &random)
            let isAck = Bool.random(using: &random)
            let header = DatagramHeader(
                kind: isAck ? .ack : .data(messageSize: UInt32(size)),
                messageType: .random(in: 0...255, using: &random), isCancel: .random(using: &random),
                isNice: .random(using: &random),
                datagramNumber: isAck
                    ? .random(in: 0...DatagramHeader.maxDatagramNumber, using: &random) : UInt32(number),
                isFromInitiator: .random(using: &random), hadError: .random(using: &random),
                transactionId: .random(in: 0...DatagramHeader.maxTransactionId, using: &random))
            let payload =
                isAck
                ? []
                : [UInt8](
                    repeating: 1,
                    count: geometry.payloadRange(ofDatagram: number, messageSize: size).count)
            #expect(try DatagramHeader.decode(header.encoded + payload, geometry: geometry) == header)
        }
    }

    @Test func sizesAndCounts() throws {
        let lan = Self.lan
        #expect(lan.payloadSize == 1450)
        #expect(DatagramGeometry.maxDatagrams == 200_822)
        #expect(lan.maxMessageSize == 291_191_900)
        #expect(lan.datagramCount(forMessageSize: 0) == 1)
        #expect(lan.datagramCount(forMessageSize: 1) == 1)
        #expect(lan.datagramCount(forMessageSize: 1450) == 1)
        #expect(lan.datagramCount(forMessageSize: 1451) == 2)
        #expect(lan.datagramCount(forMessageSize: lan.maxMessageSize) == DatagramGeometry.maxDatagrams)
        #expect(lan.payloadRange(ofDatagram: 0, messageSize: 0) == 0..<0)
        #expect(lan.payloadRange(ofDatagram: 1, messageSize: 1451) == 1450..<1451)
        let loopback = try DatagramGeometry(datagramSize: DatagramGeometry.loopbackDatagramSize)
        #expect(loopback.payloadSize == 16_388)
        #expect(loopback.maxMessageSize == lan.maxMessageSize)
        #expect(throws: ConfigurationError.datagramSize(12)) { try DatagramGeometry(datagramSize: 12) }
        #expect(throws: ConfigurationError.maxMessageSize(-1)) { try DatagramGeometry(maxMessageSize: -1) }
    }

    /// One example of each malformed shape, and the edges just inside.
    @Test func decodingNamesEveryMalformedShape() throws {
        let g = try DatagramGeometry(datagramSize: 112, maxMessageSize: 1000) // 100-byte payloads, 10 datagrams max
        func data(number: UInt32, size: UInt32, payload: Int) -> [UInt8] {
            dataDatagram(
                type: 1, number: number, messageSize: size, transactionId: 7,
                payload: .init(repeating: 0, count: payload))
        }
        let ack = DatagramHeader(kind: .ack, datagramNumber: 3, isFromInitiator: true, transactionId: 7).encoded
        func decode(_ bytes: [UInt8]) -> Result<DatagramHeader, DatagramError> {
            Result { () throws(DatagramError) -> DatagramHeader in try DatagramHeader.decode(bytes, geometry: g) }
        }
        for n in 0..<8 {
            #expect(throws: DatagramError.tooShort(length: n)) {
                try DatagramHeader.decode(Array(ack.prefix(n)), geometry: g)
            }
        }
        #expect(try decode(ack).get().isAck)
        #expect(throws: DatagramError.ackLength(length: 9)) { try DatagramHeader.decode(ack + [0], geometry: g) }
        #expect(throws: DatagramError.ackLength(length: 12)) {
            try DatagramHeader.decode(ack + [0, 0, 0, 0], geometry: g)
        }
        let header = data(number: 0, size: 0, payload: 0)
        for n in 8..<12 {
            #expect(throws: DatagramError.dataHeaderTooShort(length: n)) {
                try DatagramHeader.decode(Array(header.prefix(n)), geometry: g)
            }
        }
        #expect(try decode(header).get().messageSize == 0)
        #expect(throws: DatagramError.messageTooLarge(size: 1001, limit: 1000)) {
            try DatagramHeader.decode(data(number: 0, size: 1001, payload: 100), geometry: g)
        }
        #expect(throws: DatagramError.messageTooLarge(size: Int(UInt32.max), limit: 1000)) {
            try DatagramHeader.decode(data(number: 0, size: .max, payload: 100), geometry: g)
        }
        #expect(try decode(data(number: 9, size: 1000, payload: 100)).get().datagramNumber == 9)
        #expect(throws: DatagramError.datagramNumberOutOfRange(number: 10, count: 10)) {
            try DatagramHeader.decode(data(number: 10, size: 1000, payload: 100), geometry: g)
        }
        #expect(throws: DatagramError.datagramNumberOutOfRange(number: 1, count: 1)) {
            try DatagramHeader.decode(data(number: 1, size: 0, payload: 0), geometry: g)
        }
        // Not the last datagram: must be full.
        #expect(throws: DatagramError.payloadTruncated(expected: 100, actual: 99)) {
            try DatagramHeader.decode(data(number: 0, size: 250, payload: 99), geometry: g)
        }
        #expect(throws: DatagramError.payloadTooLong(expected: 100, actual: 101)) {
            try DatagramHeader.decode(data(number: 1, size: 250, payload: 101), geometry: g)
        }
        // The last: exactly the rest.
        #expect(try decode(data(number: 2, size: 250, payload: 50)).get().datagramNumber == 2)
        #expect(throws: DatagramError.payloadTruncated(expected: 50, actual: 49)) {
            try DatagramHeader.decode(data(number: 2, size: 250, payload: 49), geometry: g)
        }
        #expect(throws: DatagramError.payloadTooLong(expected: 50, actual: 51)) {
            try DatagramHeader.decode(data(number: 2, size: 250, payload: 51), geometry: g)
        }
        #expect(throws: DatagramError.payloadTooLong(expected: 0, actual: 1)) {
            try DatagramHeader.decode(data(number: 0, size: 0, payload: 1), geometry: g)
        }
    }

    @Test func peerAddresses() {
        #expect(PeerAddress("127.0.0.1:8000") == PeerAddress(ip: 0x7f00_0001, port: 8000))
        #expect(PeerAddress("10.5.6.7:0") == PeerAddress(ip: 0x0a05_0607, port: 0))
        #expect(PeerAddress("255.255.255.255:65535")?.description == "255.255.255.255:65535")
        for bad in [
            "", "127.0.0.1", "127.0.0.1:", "127.0.0:1", "127.0.0.1.1:1", "256.0.0.1:1", "1.2.3.4:65536",
            "a.b.c.d:1", "1..2.3:4", "+1.2.3.4:5", "1.2.3.4:-5", "1.2.3.4:+5", "0001.2.3.4:5", "1.2.3.4:5:6",
        ] {
            #expect(PeerAddress(bad) == nil, "\(bad)")
        }
        let me: UInt32 = 0xac10_0305 // 172.16.3.5
        #expect(PeerAddress("10.1.2.3:1")!.isLocal(to: me))
        #expect(PeerAddress("192.168.9.9:1")!.isLocal(to: me))
        #expect(PeerAddress("127.0.0.1:1")!.isLocal(to: me))
        #expect(PeerAddress("172.16.200.1:1")!.isLocal(to: me))
        #expect(!PeerAddress("172.17.3.5:1")!.isLocal(to: me))
        #expect(!PeerAddress("8.8.8.8:53")!.isLocal(to: me))
    }
}
