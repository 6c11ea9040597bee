import Glibc
import LoopTools
import TestSupport
import Testing

@testable import UdpServer

/// The original's UDP protocol, transcribed from gigablast/open-source-search-engine
/// (`UdpProtocol.h`, `UdpSlot.cpp`/`.h`, `UdpServer.cpp`) as an oracle: bytes in,
/// fields out, exactly as the C++ computes them, with no use of the port's types.
/// `peek` is the start of a received datagram and `peekSize` its length.
enum OriginalProtocol {
    // UdpProtocol.h
    static let maxTransId: UInt32 = 0x3fff_ffff // UDP_MAX_TRANSID

    static func word(_ peek: [UInt8], _ offset: Int) -> UInt32 { // ntohl(*(int32_t *)(peek + offset))
        peek[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
    }

    static func bytes(_ word: UInt32) -> [UInt8] { // *(int32_t *)buf = htonl(word)
        [UInt8(word >> 24), UInt8(word >> 16 & 0xff), UInt8(word >> 8 & 0xff), UInt8(word & 0xff)]
    }

    static func getTransId(_ peek: [UInt8]) -> Int32 {
        peek.count < 8 ? -1 : Int32(word(peek, 4) & 0x3fff_ffff)
    }

    static func didWeInitiate(_ peek: [UInt8]) -> Bool { peek.count >= 8 && word(peek, 4) & 0x8000_0000 != 0 }
    static func hadError(_ peek: [UInt8]) -> Bool { word(peek, 4) & 0x4000_0000 != 0 }
    /// Only an 8-byte datagram is an ACK, whatever its bits say.
    static func isAck(_ peek: [UInt8]) -> Bool { peek.count == 8 && word(peek, 0) & 0x0080_0000 != 0 }
    static func isCancelTrans(_ peek: [UInt8]) -> Bool { word(peek, 0) & 0x0040_0000 != 0 }
    static func isNice(_ peek: [UInt8]) -> Bool { word(peek, 0) & 0x0020_0000 != 0 }
    static func getDgramNum(_ peek: [UInt8]) -> Int32 { Int32(word(peek, 0) & 0x001f_ffff) }
    static func getMsgSize(_ peek: [UInt8]) -> Int32 { peek.count < 12 ? 0 : Int32(bitPattern: word(peek, 8)) }
    static func getMsgType(_ peek: [UInt8]) -> UInt8 { peek.isEmpty ? 0xff : peek[0] }

    static func getErrno(_ peek: [UInt8]) -> Int32 {
        guard peek.count >= 16, hadError(peek) else { return 0 }
        return Int32(bitPattern: word(peek, 12))
    }

    static func getNumDgrams(msgSize: Int32, maxDgramSize: Int32) -> Int32 {
        if msgSize == -1 { return 1 }
        var n = msgSize / (maxDgramSize - 12)
        if n == 0 { n = 1 } else if msgSize % (maxDgramSize - 12) != 0 { n += 1 }
        return n
    }

    static func makeAck(dgramNum: Int32, transId: Int32, weInitiated: Bool, cancelTrans: Bool) -> [UInt8] {
        var number = UInt32(bitPattern: dgramNum) & 0x001f_ffff | 0x0080_0000
        var id = UInt32(bitPattern: transId)
        if weInitiated { id |= 0x8000_0000 }
        if cancelTrans { number |= 0x0040_0000 }
        return bytes(number) + bytes(id)
    }

    static func setHeader(
        msgSize: Int32, msgType: UInt8, dgramNum: Int32, transId: Int32,
        weInitiated: Bool, hadError: Bool, niceness: Int32
    ) -> [UInt8] {
        var number = UInt32(bitPattern: dgramNum) | UInt32(msgType) << 24
        if niceness != 0 { number |= 0x0020_0000 }
        var t = UInt32(bitPattern: transId)
        if weInitiated { t |= 0x8000_0000 }
        if hadError { t |= 0x4000_0000 }
        return bytes(number) + bytes(t) + bytes(UInt32(bitPattern: msgSize))
    }

    // UdpSlot.h / UdpSlot.cpp
    static let dgramSize: Int32 = 1500 - 28 - 10 // DGRAM_SIZE with SMALLDGRAMS
    static let dgramSizeLoopback: Int32 = 16400 // DGRAM_SIZE_LB
    static let maxDgrams: Int32 = 280 * 1024 * 1024 / dgramSize + 1 // MAX_DGRAMS
    static let ackWindowSize = 4 // ACK_WINDOW_SIZE, ACK_WINDOW_SIZE_LB
    static let resend0: Int32 = 170, resend0Short: Int32 = 170, resend1: Int32 = 200, resend1Local: Int32 = 100
    static let maxResend0: Int32 = 200, maxResend1: Int32 = 15_000

    /// `UdpSlot::setResendTime`, with `rand() % m_resendTime` passed in as `jitter`.
    static func setResendTime(
        backoff: Int32, maxWait: Int32, niceness: Int32, resendCount: Int32,
        dgramsToSend: Int32, isLocal: Bool, jitter: (Int32) -> Int32
    ) -> Int32 {
        let max: Int32 = maxWait >= 0 ? maxWait : niceness == 0 ? maxResend0 : maxResend1
        var resendTime: Int32
        if backoff >= 0 {
            let bs = Int32(truncatingIfNeeded: 1 << resendCount)
            let val = backoff &* bs
            if val < backoff || val < bs || bs < 0 { resendTime = max } else { resendTime = val }
            return resendTime > max ? max : resendTime
        }
        if niceness == 0 {
            resendTime = dgramsToSend <= 1 ? resend0Short : resend0
            let tt = resendTime
            resendTime = resendTime &* Int32(truncatingIfNeeded: 1 << resendCount)
            if resendTime < tt { resendTime = max }
            if resendTime > max { resendTime = max }
            if resendTime <= 0 { resendTime = max }
        } else {
            let base = isLocal ? resend1Local : resend1
            resendTime = base &* Int32(truncatingIfNeeded: 1 << resendCount)
            if resendTime < base { resendTime = max }
            resendTime = resendTime &+ jitter(resendTime)
            if resendTime > max { resendTime = max }
            if resendTime <= 0 { resendTime = max }
        }
        return resendTime
    }

    // UdpServer.h
    /// `UdpServer::getTransId` (UdpServer.h:320-324): the id issued and the next; ids start at 0
    /// (UdpServer.cpp:279) and 0 follows 0x3ffffffe: `UDP_MAX_TRANSID` itself is never issued.
    static func getTransId(next: Int32) -> (issued: Int32, next: Int32) {
        let following = next + 1
        return (next, following >= Int32(maxTransId) ? 0 : following)
    }

    // UdpServer.cpp
    static let incomingTimeoutSeconds = 60 // slot->connect(..., timeout = 60, ...) for a new request
    static let resendAllAfterMs = 30_000 // readTimeoutPoll: "if over 30 secs has passed, resend it ALL"
    static let shutdownTimeoutSeconds = 3 // shutdown(): "set all timeouts to 3 secs"
}

/// The port checked against the original's own arithmetic and bits.
@Suite(.processExclusive) struct OriginalConformance {
    @Test func dataHeadersAreTheOriginalsBytes() throws {
        var random = SplitMix64(seed: 17)
        for _ in 0..<20_000 {
            let number = UInt32(truncatingIfNeeded: random.next()) & 0x1f_ffff
            let id = UInt32(truncatingIfNeeded: random.next()) & OriginalProtocol.maxTransId
            let type = UInt8(truncatingIfNeeded: random.next())
            let size = UInt32(truncatingIfNeeded: random.next())
            let bits = random.next()
            let original = OriginalProtocol.setHeader(
                msgSize: Int32(bitPattern: size), msgType: type, dgramNum: Int32(number), transId: Int32(id),
                weInitiated: bits & 1 != 0, hadError: bits & 2 != 0, niceness: Int32(bits >> 2 & 1))
            let port = DatagramHeader(
                kind: .data(messageSize: size), messageType: type, isNice: bits >> 2 & 1 != 0,
                datagramNumber: number, isFromInitiator: bits & 1 != 0, hadError: bits & 2 != 0,
                transactionId: id)
            #expect(port.encoded == original)
            // And the original's readers see in it what the port wrote.
            #expect(
                OriginalProtocol.getDgramNum(original) == Int32(number) && OriginalProtocol.getMsgType(original) == type
            )
            #expect(OriginalProtocol.getTransId(original) == Int32(id) && !OriginalProtocol.isAck(original))
        }
    }

    @Test func acksAreTheOriginalsBytes() {
        var random = SplitMix64(seed: 18)
        for _ in 0..<20_000 {
            let number = UInt32(truncatingIfNeeded: random.next()) & 0x1f_ffff
            let id = UInt32(truncatingIfNeeded: random.next()) & OriginalProtocol.maxTransId
            let bits = random.next()
            let original = OriginalProtocol.makeAck(
                dgramNum: Int32(number), transId: Int32(id),
                weInitiated: bits & 1 != 0, cancelTrans: bits & 2 != 0)
            let port = DatagramHeader(
                kind: .ack, isCancel: bits & 2 != 0, datagramNumber: number,
                isFromInitiator: bits & 1 != 0, transactionId: id)
            #expect(port.encoded == original)
            #expect(OriginalProtocol.isAck(original) && OriginalProtocol.isCancelTrans(original) == (bits & 2 != 0))
            let decoded = try? DatagramHeader.decode(original, geometry: .lan)
            #expect(decoded == port)
        }
    }

    @Test func datagramCountsAreGetNumDgrams() throws {
        for datagramSize in [OriginalProtocol.dgramSize, OriginalProtocol.dgramSizeLoopback, 13, 100] {
            let payload = datagramSize - 12
            let limit = Int32(min(1 << 24, Int(payload) * 0x1f_ffff)) // the 21-bit datagram number bounds it too
            let geometry = try DatagramGeometry(datagramSize: Int(datagramSize), maxMessageSize: Int(limit))
            var sizes: [Int32] = [0, 1, payload - 1, payload, payload + 1, 2 * payload, 2 * payload + 1, limit]
            var random = SplitMix64(seed: UInt64(datagramSize))
            sizes += (0..<2_000).map { _ in Int32(random.next() % UInt64(limit)) }
            for size in sizes {
                #expect(
                    geometry.datagramCount(forMessageSize: Int(size))
                        == Int(OriginalProtocol.getNumDgrams(msgSize: size, maxDgramSize: datagramSize)), "size \(size)"
                )
            }
        }
    }

    @Test func constantsAreTheOriginals() {
        #expect(DatagramGeometry.lanDatagramSize == Int(OriginalProtocol.dgramSize))
        #expect(DatagramGeometry.loopbackDatagramSize == Int(OriginalProtocol.dgramSizeLoopback))
        #expect(DatagramGeometry.maxDatagrams == Int(OriginalProtocol.maxDgrams))
        #expect(DatagramHeader.maxTransactionId == OriginalProtocol.maxTransId)
        let defaults = UdpServerConfiguration()
        #expect(defaults.ackWindow == OriginalProtocol.ackWindowSize)
        #expect(defaults.incomingTimeoutMs == OriginalProtocol.incomingTimeoutSeconds * 1000)
        #expect(defaults.requestResendAfterMs == OriginalProtocol.resendAllAfterMs)
        #expect(UdpServer.shutdownIncomingTimeoutMs == Int64(OriginalProtocol.shutdownTimeoutSeconds * 1000))
    }

    /// `setResendTime` for every branch (given backoff, urgent, background local and not),
    /// resend counts 0…30 (overflow included), with the same jitter on both sides.
    @Test func resendTimesAreSetResendTime() {
        var random = SplitMix64(seed: 19)
        for niceness in [0, 1] {
            for backoff in [-1, 0, 1, 50, 1_000, Int(Int32.max)] {
                for maxWait in [-1, 0, 300, 60_000] {
                    for isLocal in [false, true] {
                        for count in 0...30 { // beyond 30 the original's `1 << m_resendCount` is undefined
                            let pick = Int(random.next() % 1_000_000)
                            let policy = ResendPolicy(
                                niceness: niceness, backoffMs: backoff >= 0 ? backoff : nil,
                                maxWaitMs: maxWait >= 0 ? maxWait : nil, peerIsLocal: isLocal)
                            let port = policy.resendTimeMs(afterResends: count) { pick % $0 }
                            let original = OriginalProtocol.setResendTime(
                                backoff: Int32(backoff), maxWait: Int32(maxWait), niceness: Int32(niceness),
                                resendCount: Int32(count), dgramsToSend: 1, isLocal: isLocal
                            ) {
                                // `rand() % 0` (a cap of 0 after an overflow) divides by zero in the original.
                                $0 == 0 ? 0 : Int32(pick) % $0
                            }
                            // A zero the original would resend on every scan; the port's floor is 1 ms.
                            #expect(
                                port == max(1, Int(original)),
                                "niceness \(niceness) backoff \(backoff) maxWait \(maxWait) local \(isLocal) count \(count)"
                            )
                        }
                    }
                }
            }
        }
    }

    /// The differences the port keeps, shown on the oracle, each declared in MIGRATION.md.
    @Test func keptDifferencesAreDeclared() throws {
        // Only an 8-byte datagram is an ACK to the original; 12 bytes with the ACK bit are data to it.
        let ackBitData = OriginalProtocol.setHeader(
            msgSize: 0, msgType: 1, dgramNum: 0x0080_0000, transId: 1,
            weInitiated: true, hadError: false, niceness: 0)
        #expect(!OriginalProtocol.isAck(ackBitData))
        #expect(throws: DatagramError.ackLength(length: 12)) { try DatagramHeader.decode(ackBitData, geometry: .lan) }
        // A non-last datagram shorter than a full payload: the original copies what came.
        let short =
            OriginalProtocol.setHeader(
                msgSize: 3_000, msgType: 1, dgramNum: 0, transId: 1,
                weInitiated: true, hadError: false, niceness: 0) + [1, 2, 3]
        #expect(throws: DatagramError.payloadTruncated(expected: 1_450, actual: 3)) {
            try DatagramHeader.decode(short, geometry: .lan)
        }
        let migration = try #require(readTextFile(packageRoot() + "/MIGRATION.md"))
        for declared in [
            "only an 8-byte datagram is an ACK", "a non-last datagram shorter than its payload",
            "an unknown message type gets an error reply", "a late copy of a request received whole",
            "largest message", "while shutting down", "127/8 counts as local",
            "replies to an address that never acknowledged", "the datagram size per peer",
            "a one-datagram message whose size exceeds its payload", "a refusal's cancel ACK",
            "a cancel ACK ends a reply at once", "the first transaction id is random",
        ] {
            #expect(migration.contains(declared), "MIGRATION.md does not declare: \(declared)")
        }
    }
}

extension UdpServerLoopTests {
    /// The original's readers pointed at what a live server sends.
    @Suite struct OriginalConformanceOnTheWire {
        /// The errno of an error reply, as the original's `getErrno` reads it off the wire
        /// (big-endian, after the header, with the error bit): ENOSYS for a type with no handler.
        @Test(arguments: LoopBackendKind.allCases)
        func errorRepliesReadAsTheOriginalReadsThem(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                server.registerHandler(type: 4) { [unowned server] request in
                    try? server.sendErrorReply(errno: EACCES, to: request)
                }
                let peer = RawSocket()
                var errnos: [Int32: Int32] = [:]
                for (id, type) in [(UInt32(1), UInt8(4)), (2, 9)] {
                    peer.send(
                        OriginalProtocol.setHeader(
                            msgSize: 0, msgType: type, dgramNum: 0, transId: Int32(id),
                            weInitiated: true, hadError: false, niceness: 0), to: server.address)
                }
                try runUntil(loop) {
                    while let datagram = peer.receive() {
                        guard !OriginalProtocol.isAck(datagram) else { continue }
                        #expect(OriginalProtocol.hadError(datagram) && !OriginalProtocol.didWeInitiate(datagram))
                        #expect(OriginalProtocol.getMsgSize(datagram) == 4)
                        errnos[OriginalProtocol.getTransId(datagram)] = OriginalProtocol.getErrno(datagram)
                    }
                    return errnos.count == 2
                }
                #expect(errnos == [1: EACCES, 2: ENOSYS])
            }
        }
    }
}

/// The package's root directory, from this file's path.
func packageRoot(_ file: String = #filePath) -> String {
    var parts = file.split(separator: "/", omittingEmptySubsequences: false)
    while let last = parts.last, last != "Tests" { parts.removeLast() }
    parts.removeLast()
    return parts.joined(separator: "/")
}
