import Glibc
import TestSupport
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
        static func floodPartialRequests(
            _ count: Int, from peer: RawSocket, to server: UdpServer, loop: Loop,
            firstId: UInt32 = 1
        ) throws {
            let size = geometry.payloadSize + 1
            let before = server.stats.datagramsIn
            var sent = 0
            while sent < count {
                let batch = min(100, count - sent)
                for i in 0..<batch {
                    peer.send(
                        dataDatagram(
                            type: 1, number: 1, messageSize: UInt32(size),
                            transactionId: firstId + UInt32(sent + i), payload: [7]), to: server.address)
                }
                sent += batch
                try runUntil(loop) { server.stats.datagramsIn - before >= sent }
            }
        }

        /// `count` echo requests from the client, urgent, each given `timeoutMs`; how many were answered.
        static func echoes(
            _ count: Int, size: Int = 16, from client: UdpServer, to server: UdpServer, loop: Loop,
            timeoutMs: Int = 3_000
        ) throws -> Int {
            let ledger = Ledger()
            let message = pattern(size, seed: 3)
            for i in 0..<count {
                client.sendRequest(
                    message, type: 1, to: server.address, timeoutMs: timeoutMs, niceness: 0,
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
        /// holds one, the rest are dropped (its sender may retry once its own finish), and
        /// another peer's large message still fits. Before, two such announcements left no
        /// room for it.
        @Test(arguments: LoopBackendKind.allCases)
        func oneAddressCannotTakeTheIncomingMemory(kind: LoopBackendKind) throws {
            let cap = 4 << 20
            let config = UdpServerConfiguration.loopback {
                $0.maxBufferedIncomingBytes = cap
                $0.log = nil
            }
            try withServers(kind, server: config) { loop, client, server in
                server.echo(type: 1)
                let flooder = RawSocket(ip: Self.flooderIP)
                let size = 3 * cap / 8 // 1.5 MiB: one fits the 2 MiB share, two do not
                let last = Self.geometry.datagramCount(forMessageSize: size) - 1
                let tail = [UInt8](
                    repeating: 1, count: Self.geometry.payloadRange(ofDatagram: last, messageSize: size).count)
                for id: UInt32 in 1...4 {
                    flooder.send(
                        dataDatagram(
                            type: 1, number: UInt32(last), messageSize: UInt32(size),
                            transactionId: id, payload: tail), to: server.address)
                }
                try runUntil(loop) { server.stats.peerShareDrops == 3 }
                #expect(server.bufferedBytes == size)
                #expect(!Self.received(by: flooder).contains { $0.isCancel }, "a temporary refusal is not final")
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
                let flooder = RawSocket() // 127.0.0.1, like the client
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
        /// reply once and one resend, then nothing until the source asks again; the reply
        /// is given up after the silence. Before, it was resent every 200 ms for a minute (300x).
        @Test(arguments: LoopBackendKind.allCases)
        func aSourceThatNeverAcknowledgesReflectsLittle(kind: LoopBackendKind) throws {
            let config = UdpServerConfiguration.loopback {
                $0.log = nil
                $0.strangerReplyHoldMs = 1_000
            }
            try withServers(kind, server: config) { loop, _, server in
                server.echo(type: 1)
                let victim = RawSocket(ip: 0x7f00_0003)
                let request = dataDatagram(
                    type: 1, number: 0, messageSize: 1_000, transactionId: 5,
                    payload: pattern(1_000, seed: 1))
                victim.send(request, to: server.address)
                try runUntil(loop) { server.stats.repliesAbandoned == 1 }
                try runFor(loop, ms: 1_000) // several resend times: nothing more comes
                var reflected = 0
                while let datagram = victim.receive() { reflected += datagram.count }
                #expect(reflected <= server.configuration.unacknowledgedReplyFactor * request.count)
                #expect(reflected >= request.count, "the first reply is always sent")
                #expect(server.stats.incomingSlots == 0)

                // A small request for a large reply: one datagram until an ACK, not a window of
                // four, and one resend of it.
                server.registerHandler(type: 3) { [unowned server] request in
                    try? server.sendReply([UInt8](repeating: 9, count: 8 * Self.geometry.payloadSize), to: request)
                }
                victim.send(
                    dataDatagram(type: 3, number: 0, messageSize: 0, transactionId: 6, payload: []),
                    to: server.address)
                try runUntil(loop) { server.stats.repliesAbandoned == 2 }
                try runFor(loop, ms: 500)
                var data = 0
                while let datagram = victim.receive() { if datagram.count > DatagramHeader.ackSize { data += 1 } }
                #expect(data == 2, "the first datagram and one resend")
            }
        }

        /// An address that answered one of this server's own requests (a transaction id it
        /// could not have guessed) receives at the address it claims: its replies are resent
        /// as long as it takes. An ACK of a reply proves nothing (a forger chose that id).
        @Test(arguments: LoopBackendKind.allCases)
        func onlyAnswersToOurOwnRequestsValidateAnAddress(kind: LoopBackendKind) throws {
            let config = UdpServerConfiguration.loopback {
                $0.log = nil
                $0.strangerReplyHoldMs = 1_000
            }
            try withServers(kind, server: config) { loop, _, server in
                server.echo(type: 1)
                let peer = RawSocket(ip: 0x7f00_0003)
                func replies(to id: UInt32, atLeast count: Int) throws -> Int {
                    let calls = server.stats.handlerCalls
                    peer.send(
                        dataDatagram(type: 1, number: 0, messageSize: 4, transactionId: id, payload: [1, 2, 3, 4]),
                        to: server.address)
                    var n = 0
                    try runUntil(loop) {
                        n += HostilePeers.received(by: peer).filter { !$0.isAck && $0.transactionId == id }.count
                        return n >= count || (server.stats.handlerCalls > calls && server.stats.incomingSlots == 0)
                    }
                    return n
                }
                // It ACKs a reply (as a forger of its own request could): still a stranger.
                #expect(try replies(to: 1, atLeast: 1) >= 1)
                peer.send(
                    DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 1).encoded,
                    to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 0 }
                #expect(try replies(to: 2, atLeast: 6) == 2, "bounded: the reply and one resend")
                #expect(server.stats.repliesAbandoned == 1)

                // It answers the server's own request: from now on every resend.
                let ledger = Ledger()
                server.sendRequest([7], type: 8, to: peer.address, niceness: 0, callback: ledger.callback(0))
                var request: DatagramHeader?
                try runUntil(loop) {
                    request = HostilePeers.received(by: peer).first { !$0.isAck && $0.messageType == 8 }
                    return request != nil
                }
                peer.send(
                    DatagramHeader(
                        kind: .ack, datagramNumber: 0, isFromInitiator: false,
                        transactionId: request!.transactionId
                    ).encoded, to: server.address)
                try runUntil(loop) { server.stats.acksIn >= 2 }
                #expect(try replies(to: 3, atLeast: 6) >= 6)
                #expect(server.stats.repliesAbandoned == 1)
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
                    peer.send(
                        dataDatagram(
                            type: 1, number: 0, messageSize: UInt32(payload.count), transactionId: 9,
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
                    peer.send(
                        DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 9).encoded,
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
                client.sendRequest(
                    [9, 9], type: 4, to: responder.address, timeoutMs: 10_000, niceness: 0,
                    callback: ledger.callback(0))
                var requests: [DatagramHeader] = []
                try runUntil(loop) {
                    requests += HostilePeers.received(by: responder)
                    return !requests.isEmpty
                }
                let id = requests[0].transactionId
                responder.send(
                    DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: false, transactionId: id).encoded,
                    to: client.address)
                // It "restarts": forgets the request and answers only what it receives anew.
                try runUntil(loop) {
                    requests += HostilePeers.received(by: responder)
                    return requests.count >= 2
                }
                #expect(requests[1].transactionId == id && !requests[1].isAck && requests[1].messageSize == 2)
                #expect(client.stats.requestsResent == 1)
                responder.send(
                    dataDatagram(
                        type: 4, number: 0, messageSize: 1, transactionId: id, fromInitiator: false,
                        payload: [1]), to: client.address)
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [1])
            }
        }

        /// A partial request creeping towards a huge announced size (a datagram every
        /// 100 ms: never silent for long) gives way under pressure: at its rate it would
        /// take longer than `maximumTransferMs`.
        @Test(arguments: LoopBackendKind.allCases)
        func aCrawlingRequestGivesWayUnderPressure(kind: LoopBackendKind) throws {
            let cap = 4 << 20
            let config = UdpServerConfiguration.loopback {
                $0.maxBufferedIncomingBytes = cap
                $0.maxBufferedBytesPerPeer = cap
                $0.stalledAfterMs = 200
                $0.maximumTransferMs = 2_000
                $0.log = nil
            }
            try withServers(kind, server: config) { loop, client, server in
                server.echo(type: 1)
                let crawler = RawSocket(ip: Self.flooderIP)
                let size = 3 * cap / 4
                let full = [UInt8](repeating: 1, count: Self.geometry.payloadSize)
                for number in 0..<6 {
                    crawler.send(
                        dataDatagram(
                            type: 1, number: UInt32(number), messageSize: UInt32(size), transactionId: 1,
                            payload: full), to: server.address)
                    try runFor(loop, ms: 100)
                }
                #expect(server.stats.incomingSlots == 1 && server.stats.timeouts == 0)
                let answered = try Self.echoes(1, size: cap / 2, from: client, to: server, loop: loop)
                #expect(answered == 1)
                #expect(server.stats.evictions == 1)
                #expect(Self.received(by: crawler).contains { $0.isCancel && $0.transactionId == 1 })
            }
        }

        /// Data of a partial request that timed out is not ACKed as a copy of a finished
        /// one (its sender would believe it delivered): it starts the request anew.
        @Test(arguments: LoopBackendKind.allCases)
        func lateDataOfATimedOutPartialRequestIsNotAcknowledgedAsACopy(kind: LoopBackendKind) throws {
            try withServers(kind, server: .loopback { $0.incomingTimeoutMs = 200 }) { loop, _, server in
                let peer = RawSocket()
                try Self.floodPartialRequests(1, from: peer, to: server, loop: loop)
                try runUntil(loop) { server.stats.timeouts == 1 && server.stats.incomingSlots == 0 }
                try Self.floodPartialRequests(1, from: peer, to: server, loop: loop)
                #expect(server.stats.incomingSlots == 1 && server.stats.lateDuplicates == 0)
            }
        }

        /// A real client of a stranger's reply that loses its first copies asks again (its
        /// last request datagram, now and then): each ask lets one resend through, and the
        /// reply arrives long before the whole re-send.
        @Test(arguments: LoopBackendKind.allCases)
        func aLostReplyToAStrangerArrivesWhenAskedFor(kind: LoopBackendKind) throws {
            let dropped = DropFirstReplies(3)
            let server = UdpServerConfiguration.loopback {
                $0.datagramFilter = dropped
                $0.log = nil
            }
            try withServers(kind, server: server) { loop, client, server in
                server.echo(type: 1)
                let ledger = Ledger()
                let started = monotonicNanoseconds()
                client.sendRequest(
                    [1, 2, 3], type: 1, to: server.address, timeoutMs: 20_000, niceness: 0,
                    callback: ledger.callback(0))
                try runUntil(loop, timeoutMs: 20_000) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [1, 2, 3])
                #expect(client.stats.replyPokes >= 1 && client.stats.requestsResent == 0)
                #expect(elapsedMs(since: started) < 10_000)
                #expect(dropped.dropped == 3)
            }
        }

        /// The whole re-send is not progress: a peer that ACKs every copy but never replies
        /// does not keep the request alive past its timeout.
        @Test(arguments: LoopBackendKind.allCases)
        func acknowledgedResendsDoNotPostponeTheTimeout(kind: LoopBackendKind) throws {
            let client = UdpServerConfiguration.loopback { $0.requestResendAfterMs = 100 }
            try withServers(kind, client: client) { loop, client, _ in
                let responder = RawSocket()
                let ledger = Ledger()
                let started = monotonicNanoseconds()
                client.sendRequest(
                    [9], type: 4, to: responder.address, timeoutMs: 1_000, niceness: 0,
                    callback: ledger.callback(0))
                try runUntil(loop) {
                    for header in HostilePeers.received(by: responder) where !header.isAck {
                        responder.send(
                            DatagramHeader(
                                kind: .ack, datagramNumber: header.datagramNumber, isFromInitiator: false,
                                transactionId: header.transactionId
                            ).encoded, to: client.address)
                    }
                    return ledger.isDone(1)
                }
                #expect(ledger.error(0) == .timedOut)
                #expect(client.stats.requestsResent >= 2)
                #expect(elapsedMs(since: started) < 8_000)
            }
        }

        /// A request waiting on this server's handler when the shutdown begins keeps its
        /// time (the original skips those too): its late reply still reaches the requester.
        @Test(arguments: LoopBackendKind.allCases)
        func aSlowHandlerKeepsItsRequestThroughTheShutdown(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                var held: IncomingRequest?
                server.registerHandler(type: 1) { held = $0 }
                let ledger = Ledger()
                client.sendRequest(
                    [5], type: 1, to: server.address, timeoutMs: 20_000, niceness: 0,
                    callback: ledger.callback(0))
                try runUntil(loop) { held != nil }
                var drained = false
                server.shutdown { drained = true }
                try runFor(loop, ms: 3_500)
                try server.sendReply([6], to: held!)
                try runUntil(loop) { ledger.isDone(1) && drained }
                #expect(ledger.reply(0) == [6])
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

/// Drops the first `count` reply data datagrams a server sends; everything else passes.
final class DropFirstReplies: DatagramFilter {
    private var left: Int
    private(set) var dropped = 0
    init(_ count: Int) { left = count }
    func fate(of datagram: OutgoingDatagram) -> DatagramFate {
        guard !datagram.header.isAck, !datagram.header.isFromInitiator, left > 0 else { return .deliver }
        left -= 1
        dropped += 1
        return .drop
    }
}

/// Lines a server logged.
final class LogLines {
    private(set) var lines: [String] = []
    var count: Int { lines.count }
    func append(_ line: String) { lines.append(line) }
}
