import Glibc
import Testing
@testable import UdpServer

extension UdpServerLoopTests {
    /// One address flooding, forging its source or going silent must not cost
    /// every other peer its answers: shares, eviction, the reflection bound, and
    /// the original's request re-send and shutdown cut.
    @Suite struct PeerPressure {
        static let geometry = DatagramGeometry.loopback
        static let flooderIP: UInt32 = 0x7f00_0002

        /// Sends the last datagram of `count` two-datagram requests that never finish
        /// (13 bytes each), in batches the server reads before the next, so the kernel
        /// drops none; ids start at `firstId`.
        static func floodPartialRequests(_ count: Int, from peer: RawSocket, to server: UdpServer, loop: Loop,
                                         firstId: UInt32 = 1) throws {
            let size = geometry.payloadSize + 1
            let before = server.stats.datagramsIn
            var sent = 0
            while sent < count {
                let batch = min(100, count - sent)
                for i in 0..<batch {
                    peer.send(dataDatagram(type: 1, number: 1, messageSize: UInt32(size),
                                           transactionId: firstId + UInt32(sent + i), payload: [7]), to: server.address)
                }
                sent += batch
                try runUntil(loop) { server.stats.datagramsIn - before >= sent }
            }
        }

        /// `count` echo requests from the client, urgent, each given `timeoutMs`; how many were answered.
        static func echoes(_ count: Int, size: Int = 16, from client: UdpServer, to server: UdpServer, loop: Loop,
                           timeoutMs: Int = 3_000) throws -> Int {
            let ledger = Ledger()
            let message = pattern(size, seed: 3)
            for i in 0..<count {
                client.sendRequest(message, type: 1, to: server.address, timeoutMs: timeoutMs, niceness: 0,
                                   callback: ledger.callback(i))
            }
            try runUntil(loop, timeoutMs: timeoutMs + 10_000) { ledger.isDone(count) }
            ledger.expectExactlyOnce(count)
            return (0..<count).filter { ledger.reply($0) == message }.count
        }

        /// 3,500 never-finished requests from one address (more than every incoming slot): it keeps
        /// its quarter of the incoming slots, and another peer is answered every time.
        /// Before, the flood took every incoming slot for a minute.
        @Test(arguments: LoopBackendKind.allCases)
        func oneAddressCannotTakeEveryIncomingSlot(kind: LoopBackendKind) throws {
            let quiet = UdpServerConfiguration.loopback { $0.log = nil }
            try withServers(kind, server: quiet) { loop, client, server in
                server.echo(type: 1)
                let flooder = RawSocket(ip: Self.flooderIP)
                try Self.floodPartialRequests(3_500, from: flooder, to: server, loop: loop)
                let share = (server.configuration.maxSlots - server.reservedOutgoingSlots) / 4
                #expect(server.incomingSlotsPerPeer == share)
                #expect(server.stats.incomingSlots <= share)
                #expect(server.stats.peerShareDrops + server.stats.evictions >= 3_500 - share)
                let answered = try Self.echoes(100, from: client, to: server, loop: loop)
                #expect(answered == 100)
            }
        }

        /// Messages announcing more than an address's share of the incoming memory: it
        /// holds one, the rest are refused with a cancel ACK, and another peer's large
        /// message still fits. Before, two such announcements left no room for it.
        @Test(arguments: LoopBackendKind.allCases)
        func oneAddressCannotTakeTheIncomingMemory(kind: LoopBackendKind) throws {
            let cap = 4 << 20
            let config = UdpServerConfiguration.loopback { $0.maxBufferedIncomingBytes = cap; $0.log = nil }
            try withServers(kind, server: config) { loop, client, server in
                server.echo(type: 1)
                let flooder = RawSocket(ip: Self.flooderIP)
                let size = 3 * cap / 8  // 1.5 MiB: one fits the 2 MiB share, two do not
                let last = Self.geometry.datagramCount(forMessageSize: size) - 1
                let tail = [UInt8](repeating: 1, count: Self.geometry.payloadRange(ofDatagram: last, messageSize: size).count)
                for id: UInt32 in 1...4 {
                    flooder.send(dataDatagram(type: 1, number: UInt32(last), messageSize: UInt32(size),
                                              transactionId: id, payload: tail), to: server.address)
                }
                var answers: [DatagramHeader] = []
                try runUntil(loop) {
                    answers += Self.received(by: flooder)
                    return answers.filter(\.isCancel).count == 3
                }
                #expect(server.bufferedBytes == size && server.stats.peerShareDrops == 3)
                let answered = try Self.echoes(1, size: size, from: client, to: server, loop: loop)
                #expect(answered == 1)
            }
        }

        /// The garbage of a flood from the very address a real client uses (the fuzz
        /// burst): once it has stalled, new requests evict it and are answered at once,
        /// instead of waiting a minute for it to time out. The evicted get a cancel ACK.
        @Test(arguments: LoopBackendKind.allCases)
        func stalledGarbageGivesWayAtOnceAfterAFlood(kind: LoopBackendKind) throws {
            let config = UdpServerConfiguration.loopback {
                $0.maxSlots = 64
                $0.reservedOutgoingSlots = 16
                $0.stalledAfterMs = 200
                $0.log = nil
            }
            try withServers(kind, server: config) { loop, client, server in
                server.echo(type: 1)
                let flooder = RawSocket()  // 127.0.0.1, like the client
                try Self.floodPartialRequests(100, from: flooder, to: server, loop: loop)
                #expect(server.stats.incomingSlots == server.incomingSlotsPerPeer)
                _ = flooder.drain()
                try runFor(loop, ms: 300)
                let started = monotonicNanoseconds()
                let answered = try Self.echoes(20, from: client, to: server, loop: loop, timeoutMs: 2_000)
                #expect(answered == 20)
                #expect(elapsedMs(since: started) < 2_000, "the garbage was waited out, not evicted")
                #expect(server.stats.evictions >= 1)
                let cancels = Self.received(by: flooder).filter { $0.isAck && $0.isCancel }
                #expect(cancels.count == server.stats.evictions)
            }
        }

        /// What was dropped and why, at most one line per interval, naming the address.
        @Test(arguments: LoopBackendKind.allCases)
        func dropsAreLoggedBrieflyAndRarely(kind: LoopBackendKind) throws {
            let lines = LogLines()
            let config = UdpServerConfiguration.loopback {
                $0.maxSlots = 64
                $0.reservedOutgoingSlots = 16
                $0.dropLogIntervalMs = 60_000
                $0.log = lines.append
            }
            try withServers(kind, server: config) { loop, _, server in
                let flooder = RawSocket(ip: Self.flooderIP)
                try Self.floodPartialRequests(200, from: flooder, to: server, loop: loop)
                try runUntil(loop) { lines.count == 1 }
                try Self.floodPartialRequests(200, from: flooder, to: server, loop: loop, firstId: 1_000)
                try runFor(loop, ms: 100)
                #expect(lines.count == 1)
                let line = lines.lines[0]
                #expect(line.hasPrefix("udp: dropped") && line.contains("127.0.0.2") && line.contains("share"))
                #expect(line.count < 400, "\(line)")
            }
        }

        /// A request whose source never acknowledges anything (a forged one) gets its
        /// reply resent only within 3x the bytes that source sent, then the reply is
        /// given up. Before, it was resent every 200 ms for a minute (300x).
        @Test(arguments: LoopBackendKind.allCases)
        func aSourceThatNeverAcknowledgesReflectsLittle(kind: LoopBackendKind) throws {
            try withServers(kind, server: .loopback { $0.log = nil }) { loop, _, server in
                server.echo(type: 1)
                let victim = RawSocket(ip: 0x7f00_0003)
                let request = dataDatagram(type: 1, number: 0, messageSize: 1_000, transactionId: 5,
                                           payload: pattern(1_000, seed: 1))
                victim.send(request, to: server.address)
                try runUntil(loop) { server.stats.repliesAbandoned == 1 }
                try runFor(loop, ms: 1_000)  // several resend times: nothing more comes
                var reflected = 0
                while let datagram = victim.receive() { reflected += datagram.count }
                #expect(reflected <= server.configuration.unacknowledgedReplyFactor * request.count)
                #expect(reflected >= request.count, "the first reply is always sent")
                #expect(server.stats.incomingSlots == 0)
            }
        }

        /// A peer that acknowledged before is the requester itself: its next reply is
        /// resent as long as it takes, beyond the bound for strangers.
        @Test(arguments: LoopBackendKind.allCases)
        func aPeerThatAcknowledgedGetsEveryResend(kind: LoopBackendKind) throws {
            try withServers(kind, server: .loopback { $0.log = nil }) { loop, _, server in
                server.echo(type: 1)
                let peer = RawSocket(ip: 0x7f00_0003)
                peer.send(dataDatagram(type: 1, number: 0, messageSize: 4, transactionId: 1, payload: [1, 2, 3, 4]),
                          to: server.address)
                var first: [DatagramHeader] = []
                try runUntil(loop) {
                    first += HostilePeers.received(by: peer)
                    return first.contains { !$0.isAck }
                }
                peer.send(DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 1).encoded,
                          to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 0 }
                peer.send(dataDatagram(type: 1, number: 0, messageSize: 4, transactionId: 2, payload: [5, 6, 7, 8]),
                          to: server.address)
                var replies = 0
                try runUntil(loop) {
                    replies += HostilePeers.received(by: peer).filter { !$0.isAck && $0.transactionId == 2 }.count
                    return replies >= 6
                }
                #expect(server.stats.repliesAbandoned == 0)
            }
        }

        /// A datagram under the key of a finished request that disagrees about the
        /// message is a new request (a restarted peer reusing the id): served at once.
        @Test(arguments: LoopBackendKind.allCases)
        func aRestartedPeerReusingAnIdIsServed(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                server.echo(type: 1)
                let peer = RawSocket()
                func ask(_ payload: [UInt8]) throws -> [UInt8] {
                    peer.send(dataDatagram(type: 1, number: 0, messageSize: UInt32(payload.count), transactionId: 9,
                                           payload: payload), to: server.address)
                    var reply: [UInt8]?
                    try runUntil(loop) {
                        while let datagram = peer.receive() {
                            if datagram.count > DatagramHeader.ackSize {
                                reply = Array(datagram.dropFirst(DatagramHeader.dataHeaderSize))
                            }
                        }
                        return reply != nil
                    }
                    peer.send(DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 9).encoded,
                              to: server.address)
                    try runUntil(loop) { server.stats.incomingSlots == 0 }
                    return reply ?? []
                }
                let first = try ask([1, 2, 3])
                let second = try ask([4, 5, 6, 7, 8])
                #expect(first == [1, 2, 3] && second == [4, 5, 6, 7, 8])
                #expect(server.stats.handlerCalls == 2 && server.stats.lateDuplicates == 0)
            }
        }

        /// The original's `readTimeoutPoll`: a request fully acknowledged whose reply
        /// does not come is sent again, whole, after `requestResendAfterMs` of silence,
        /// so a peer that restarted and forgot it still answers.
        @Test(arguments: LoopBackendKind.allCases)
        func anAcknowledgedRequestIsSentAgainAfterSilence(kind: LoopBackendKind) throws {
            let client = UdpServerConfiguration.loopback { $0.requestResendAfterMs = 300 }
            try withServers(kind, client: client) { loop, client, _ in
                let responder = RawSocket()
                let ledger = Ledger()
                client.sendRequest([9, 9], type: 4, to: responder.address, timeoutMs: 10_000, niceness: 0,
                                   callback: ledger.callback(0))
                var requests: [DatagramHeader] = []
                try runUntil(loop) {
                    requests += HostilePeers.received(by: responder)
                    return !requests.isEmpty
                }
                let id = requests[0].transactionId
                responder.send(DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: false, transactionId: id).encoded,
                               to: client.address)
                // It "restarts": forgets the request and answers only what it receives anew.
                try runUntil(loop) {
                    requests += HostilePeers.received(by: responder)
                    return requests.count >= 2
                }
                #expect(requests[1].transactionId == id && !requests[1].isAck && requests[1].messageSize == 2)
                #expect(client.stats.requestsResent == 1)
                responder.send(dataDatagram(type: 4, number: 0, messageSize: 1, transactionId: id, fromInitiator: false,
                                            payload: [1]), to: client.address)
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [1])
            }
        }

        /// Shutting down, incoming transactions get the original's 3 s without
        /// progress, not the full minute: a stalled peer cannot hold the drain.
        @Test(arguments: LoopBackendKind.allCases)
        func aStalledPeerCannotHoldTheShutdown(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                let peer = RawSocket()
                try Self.floodPartialRequests(1, from: peer, to: server, loop: loop)
                #expect(server.stats.incomingSlots == 1)
                var drained = false
                let started = monotonicNanoseconds()
                server.shutdown { drained = true }
                try runUntil(loop, timeoutMs: 20_000) { drained }
                #expect(elapsedMs(since: started) < 15_000)
                #expect(server.stats.timeouts == 1)
            }
        }

        static func received(by peer: RawSocket) -> [DatagramHeader] { HostilePeers.received(by: peer) }
    }
}

/// Lines a server logged.
final class LogLines {
    private(set) var lines: [String] = []
    var count: Int { lines.count }
    func append(_ line: String) { lines.append(line) }
}
