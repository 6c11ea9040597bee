import TestSupport
import Testing

@testable import UdpServer

/// The decoder against an independent statement of the rules, over random and
/// mutated datagrams. Pure: no loop.
@Suite(.processExclusive) struct DecoderFuzz {
    /// The rules, written out separately from the decoder.
    static func expected(_ d: [UInt8], _ g: DatagramGeometry) -> DatagramError? {
        guard d.count >= 8 else { return .tooShort(length: d.count) }
        func word(_ i: Int) -> Int { Int(d[i]) << 24 | Int(d[i + 1]) << 16 | Int(d[i + 2]) << 8 | Int(d[i + 3]) }
        if d[1] & 0x80 != 0 { return d.count == 8 ? nil : .ackLength(length: d.count) }
        guard d.count >= 12 else { return .dataHeaderTooShort(length: d.count) }
        let size = word(8)
        let number = word(0) & 0x1f_ffff
        guard size <= g.maxMessageSize else { return .messageTooLarge(size: size, limit: g.maxMessageSize) }
        let count = size == 0 ? 1 : (size + g.payloadSize - 1) / g.payloadSize
        guard number < count else { return .datagramNumberOutOfRange(number: number, count: count) }
        let want = number < count - 1 ? g.payloadSize : size - (count - 1) * g.payloadSize
        let have = d.count - 12
        if have > want { return .payloadTooLong(expected: want, actual: have) }
        if have < want { return .payloadTruncated(expected: want, actual: have) }
        return nil
    }

    static func shape(_ error: DatagramError) -> String {
        switch error {
        case .tooShort: return "tooShort"
        case .ackLength: return "ackLength"
        case .dataHeaderTooShort: return "dataHeaderTooShort"
        case .messageTooLarge: return "messageTooLarge"
        case .datagramNumberOutOfRange: return "datagramNumberOutOfRange"
        case .payloadTooLong: return "payloadTooLong"
        case .payloadTruncated: return "payloadTruncated"
        }
    }

    static func check(_ datagram: [UInt8], _ g: DatagramGeometry) -> Bool {
        let want = expected(datagram, g)
        do {
            let header = try DatagramHeader.decode(datagram, geometry: g)
            // Accepted: it must re-encode to the same header bytes.
            return want == nil && header.encoded == Array(datagram.prefix(header.encodedSize))
        } catch {
            return want == error
        }
    }

    /// Valid datagrams of every kind, then mutated: bits flipped, bytes changed,
    /// cut short, extended; plus pure noise. At least 100,000 in all.
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func decoderAgreesWithTheRules(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        // A small geometry makes every boundary likely to be hit.
        let g = try DatagramGeometry(datagramSize: 12 + 37, maxMessageSize: 37 * 50 + 3)
        var outcomes: [String: Int] = [:]
        var mismatches: [[UInt8]] = []
        for i in 0..<30_000 {
            var d: [UInt8]
            if i % 5 == 0 {
                d = (0..<Int.random(in: 0...60, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
            } else {
                let size = Int.random(in: 0...g.maxMessageSize, using: &random)
                let number = Int.random(in: 0..<g.datagramCount(forMessageSize: size), using: &random)
                let isAck = Int.random(in: 0..<4, using: &random) == 0
                let header = DatagramHeader(
                    kind: isAck ? .ack : .data(messageSize: UInt32(size)),
                    messageType: .random(in: 0...255, using: &random),
                    isCancel: .random(using: &random), isNice: .random(using: &random), datagramNumber: UInt32(number),
                    isFromInitiator: .random(using: &random), hadError: .random(using: &random),
                    transactionId: .random(in: 0...DatagramHeader.maxTransactionId, using: &random))
                d = header.encoded
                if !isAck {
                    d += [UInt8](repeating: 0x5a, count: g.payloadRange(ofDatagram: number, messageSize: size).count)
                }
                for _ in 0..<Int.random(in: 0...3, using: &random) {
                    switch Int.random(in: 0..<5, using: &random) {
                    case 0 where !d.isEmpty:
                        d[Int.random(in: 0..<d.count, using: &random)] ^= 1 << UInt8.random(in: 0...7, using: &random)
                    case 1 where !d.isEmpty:
                        d[Int.random(in: 0..<min(12, d.count), using: &random)] = .random(in: 0...255, using: &random)
                    case 2: d.removeLast(Int.random(in: 0...min(3, d.count), using: &random))
                    case 3: d += [UInt8](repeating: 0, count: Int.random(in: 1...3, using: &random))
                    default: break // left valid
                    }
                }
            }
            let want = Self.expected(d, g)
            outcomes[want.map(Self.shape) ?? "valid", default: 0] += 1
            if !Self.check(d, g) { mismatches.append(d) }
        }
        #expect(mismatches.isEmpty, "first mismatches: \(mismatches.prefix(3))")
        // Every shape was exercised.
        for shape in [
            "valid", "tooShort", "ackLength", "dataHeaderTooShort", "messageTooLarge",
            "datagramNumberOutOfRange", "payloadTooLong", "payloadTruncated",
        ] {
            #expect(outcomes[shape, default: 0] > 0, "\(shape) never came up: \(outcomes)")
        }
    }

    /// Every datagram of up to 13 bytes whose header words take edge values.
    @Test func edgeValuesExhaustively() throws {
        let g = try DatagramGeometry(datagramSize: 14, maxMessageSize: 5) // 2-byte payloads, 3 datagrams
        let word0s: [UInt32] = [0, 1, 2, 3, 0x1f_ffff, 0x0080_0000, 0x0080_0001, 0x00c0_0000, 0xff7f_ffff, 0xffff_ffff]
        let sizes: [UInt32] = [0, 1, 2, 3, 4, 5, 6, 0x7fff_ffff, 0xffff_ffff]
        var checked = 0
        for w0 in word0s {
            for size in sizes {
                let header = [w0, 0xc000_0001, size].flatMap { w in
                    (0..<4).map { UInt8(truncatingIfNeeded: w >> (24 - 8 * $0)) }
                }
                for length in 0...15 {
                    let d =
                        length <= 12 ? Array(header.prefix(length)) : header + [UInt8](repeating: 9, count: length - 12)
                    #expect(Self.check(d, g), "\(d)")
                    checked += 1
                }
            }
        }
        #expect(checked == word0s.count * sizes.count * 16)
    }
}
