import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    /// A hand-driven peer sends exactly the datagrams each case needs.
    @Suite struct HostilePeers {
        static let geometry = DatagramGeometry.loopback

        /// Collects what the server sends to `peer`, decoded.
        static func received(by peer: RawSocket) -> [DatagramHeader] {
            var headers: [DatagramHeader] = []
            while let datagram = peer.receive() {
                if let header = try? DatagramHeader.decode(datagram, geometry: geometry) { headers.append(header) }
            }
            return headers
        }

        @Test(arguments: LoopBackendKind.allCases)
        func strayAcksAreDroppedAndCounted(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                let peer = RawSocket()
                for id: UInt32 in [1, 2, 3] {
                    peer.send(
                        DatagramHeader(
                            kind: .ack, datagramNumber: 0, isFromInitiator: id % 2 == 0,
                            transactionId: id
                        ).encoded, to: server.address)
                }
                try runUntil(loop) { server.stats.strayAcks == 3 }
                try runFor(loop, ms: 30)
                #expect(Self.received(by: peer).isEmpty)
                #expect(server.stats.incomingSlots == 0 && server.stats.outgoingSlots == 0)
            }
        }

        /// A reply for no transaction is answered with a cancel ACK so its sender stops.
        @Test(arguments: LoopBackendKind.allCases)
        func strayReplyGetsACancelAck(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                let peer = RawSocket()
                peer.send(
                    dataDatagram(
                        type: 4, number: 0, messageSize: 3, transactionId: 77, fromInitiator: false,
                        payload: [1, 2, 3]), to: server.address)
                var answers: [DatagramHeader] = []
                try runUntil(loop) {
                    answers += Self.received(by: peer)
                    return !answers.isEmpty
                }
                #expect(
                    answers == [
                        DatagramHeader(
                            kind: .ack, isCancel: true, datagramNumber: 0,
                            isFromInitiator: true, transactionId: 77)
                    ])
                #expect(server.stats.strayReplies == 1 && server.stats.cancelAcksOut == 1)
            }
        }

        /// A cancel ACK ends the responder's transaction while it sends its reply.
        @Test(arguments: LoopBackendKind.allCases)
        func cancelAckEndsTheReply(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                server.echo(type: 1) { _ in pattern(200_000, seed: 1) }
                let peer = RawSocket()
                peer.send(
                    dataDatagram(type: 1, number: 0, messageSize: 1, transactionId: 5, payload: [9]),
                    to: server.address)
                var replies = 0
                try runUntil(loop) {
                    replies += Self.received(by: peer).filter { !$0.isAck }.count
                    return replies > 0
                }
                #expect(server.stats.incomingSlots == 1)
                peer.send(
                    DatagramHeader(
                        kind: .ack, isCancel: true, datagramNumber: 0, isFromInitiator: true,
                        transactionId: 5
                    ).encoded, to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 0 }
                #expect(server.stats.cancelAcksIn == 1 && server.stats.timeouts == 0)
            }
        }

        /// Duplicates of request datagrams are re-ACKed and dropped; a request
        /// datagram for a transaction in progress joins it; a late copy after the
        /// transaction ended is re-ACKed and does not start the handler again.
        @Test(arguments: LoopBackendKind.allCases)
        func duplicatesJoinAndNeverRerunTheHandler(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                var requests: [IncomingRequest] = []
                server.registerHandler(type: 2) { requests.append($0) }
                let peer = RawSocket()
                let size = Self.geometry.payloadSize + 10
                let message = pattern(size, seed: 4)
                func datagram(_ number: UInt32) -> [UInt8] {
                    let range = Self.geometry.payloadRange(ofDatagram: Int(number), messageSize: size)
                    return dataDatagram(
                        type: 2, number: number, messageSize: UInt32(size), transactionId: 9,
                        payload: Array(message[range]))
                }
                var seen: [DatagramHeader] = []
                func collect() -> [DatagramHeader] {
                    seen += Self.received(by: peer)
                    return seen
                }

                peer.send(datagram(0), to: server.address)
                peer.send(datagram(0), to: server.address)
                try runUntil(loop) { collect().count == 2 }
                #expect(
                    seen.allSatisfy {
                        $0.isAck && $0.datagramNumber == 0 && !$0.isFromInitiator && $0.transactionId == 9
                    })
                #expect(server.stats.duplicates == 1 && requests.isEmpty)

                peer.send(datagram(1), to: server.address)
                try runUntil(loop) { requests.count == 1 }
                #expect(requests[0].payload == message)
                // Resent while the handler works: re-ACKed, joins, no second call.
                peer.send(datagram(0), to: server.address)
                try runUntil(loop) { server.stats.duplicates == 2 }

                try server.sendReply([42], to: requests[0])
                seen.removeAll()
                try runUntil(loop) { collect().contains { !$0.isAck } }
                let reply = try #require(seen.first { !$0.isAck })
                #expect(reply.messageSize == 1 && !reply.isFromInitiator)
                peer.send(
                    DatagramHeader(kind: .ack, datagramNumber: 0, isFromInitiator: true, transactionId: 9).encoded,
                    to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 0 }

                // A late copy of the request: remembered as finished, ACKed again (as the
                // original does: the ACK may be what was lost), not served again.
                seen.removeAll()
                peer.send(datagram(1), to: server.address)
                try runUntil(loop) { server.stats.lateDuplicates == 1 && collect().contains { $0.isAck } }
                #expect(seen.allSatisfy { $0.isAck && !$0.isCancel && $0.datagramNumber == 1 && $0.transactionId == 9 })
                try runFor(loop, ms: 30)
                #expect(requests.count == 1)
                #expect(server.stats.incomingSlots == 0 && server.stats.handlerCalls == 1)
            }
        }

        /// Repeating an old datagram is not progress: a peer that resends the first
        /// datagram of a request forever does not keep its slot (and buffer) alive.
        @Test(arguments: LoopBackendKind.allCases)
        func duplicatesDoNotPostponeTheTimeout(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback { $0.incomingTimeoutMs = 300 }
            try withServers(kind, server: server) { loop, _, server in
                let peer = RawSocket()
                let full = [UInt8](repeating: 7, count: Self.geometry.payloadSize)
                let first = dataDatagram(
                    type: 1, number: 0, messageSize: UInt32(2 * full.count), transactionId: 9,
                    payload: full)
                peer.send(first, to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 1 }
                let started = monotonicNanoseconds()
                var lastSend = started
                // Resend it every 50 ms; the slot must still time out about 300 ms after it was new.
                try runUntil(loop, timeoutMs: 5_000) {
                    if monotonicNanoseconds() - lastSend > 50_000_000 {
                        peer.send(first, to: server.address)
                        lastSend = monotonicNanoseconds()
                    }
                    _ = peer.drain()
                    return server.stats.incomingSlots == 0
                }
                #expect(server.stats.timeouts == 1)
                #expect(server.stats.duplicates >= 1)
                #expect(server.bufferedBytes == 0)
            }
        }

        /// Strangers cannot take every slot: some stay for this server's own requests.
        @Test(arguments: LoopBackendKind.allCases)
        func incomingRequestsLeaveSlotsForOutgoingOnes(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback {
                $0.maxSlots = 8
                $0.reservedOutgoingSlots = 2
                $0.maxIncomingSlotsPerPeer = 8 // one peer may take them all: the reserve is what is tested
            }
            try withServers(kind, server: server) { loop, client, server in
                let peer = RawSocket()
                let full = [UInt8](repeating: 7, count: Self.geometry.payloadSize)
                for id in 1...20 {
                    peer.send(
                        dataDatagram(
                            type: 1, number: 0, messageSize: UInt32(2 * full.count),
                            transactionId: UInt32(id), payload: full), to: server.address)
                }
                try runUntil(loop) { server.stats.incomingSlots + server.stats.noSlotDrops == 20 }
                #expect(server.stats.incomingSlots == 6)
                // The server can still ask: its own request gets a slot.
                client.echo(type: 5)
                let ledger = Ledger()
                server.sendRequest([4, 2], type: 5, to: client.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [4, 2])
            }
        }

        /// Sizes that lie: beyond the limit or the memory cap is refused with a cancel
        /// ACK, without allocating; disagreeing datagrams are corrupt.
        @Test(arguments: LoopBackendKind.allCases)
        func messageSizeLiesAllocateNothing(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback {
                $0.maxBufferedIncomingBytes = 1 << 20
                $0.maxBufferedBytesPerPeer = 1 << 20 // the total cap is what is tested
            }
            try withServers(kind, server: server) { loop, client, server in
                server.echo(type: 1)
                let peer = RawSocket()
                let full = [UInt8](repeating: 7, count: Self.geometry.payloadSize)
                let limit = UInt32(DatagramGeometry.defaultMaxMessageSize)
                peer.send(
                    dataDatagram(type: 1, number: 0, messageSize: limit + 1, transactionId: 1, payload: full),
                    to: server.address)
                peer.send(
                    dataDatagram(type: 1, number: 0, messageSize: .max, transactionId: 2, payload: full),
                    to: server.address)
                peer.send(
                    dataDatagram(type: 1, number: 0, messageSize: limit, transactionId: 3, payload: full),
                    to: server.address)
                // Each refused at once with a cancel ACK (the original's answer when it cannot
                // allocate), so the sender stops instead of resending for a minute.
                var cancels: [DatagramHeader] = []
                try runUntil(loop) {
                    cancels += Self.received(by: peer)
                    return server.stats.memoryDrops == 3 && cancels.count == 3
                }
                #expect(cancels.allSatisfy { $0.isAck && $0.isCancel && !$0.isFromInitiator })
                #expect(Set(cancels.map(\.transactionId)) == [1, 2, 3])
                #expect(server.bufferedBytes == 0 && server.stats.incomingSlots == 0 && server.stats.corrupt == 0)

                // Within the cap: held until the rest comes (or the timeout); a
                // datagram that disagrees about the size is refused.
                peer.send(
                    dataDatagram(type: 1, number: 0, messageSize: 100_000, transactionId: 4, payload: full),
                    to: server.address)
                try runUntil(loop) { server.stats.incomingSlots == 1 }
                #expect(server.bufferedBytes == 100_000)
                peer.send(
                    dataDatagram(type: 1, number: 1, messageSize: 200_000, transactionId: 4, payload: full),
                    to: server.address)
                try runUntil(loop) { server.stats.corrupt == 1 }

                // The server still answers.
                let ledger = Ledger()
                client.sendRequest([1, 2], type: 1, to: server.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [1, 2])
            }
        }

        /// A peer playing the responder: a cancel ACK ends the request with
        /// `.rejectedByPeer`; an error reply too short for an errno ends it with
        /// `.remote(RemoteErrno.malformed)`.
        @Test(arguments: LoopBackendKind.allCases)
        func oddAnswersFromAResponder(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, _ in
                let peer = RawSocket()
                let ledger = Ledger()
                client.sendRequest([1], type: 3, to: peer.address, niceness: 0, callback: ledger.callback(0))
                client.sendRequest([2], type: 3, to: peer.address, niceness: 0, callback: ledger.callback(1))
                var requests: [DatagramHeader] = []
                try runUntil(loop) {
                    requests += Self.received(by: peer)
                    return Set(requests.map(\.transactionId)).count == 2
                }
                let ids = requests.map(\.transactionId)
                #expect(requests.allSatisfy { $0.isFromInitiator && $0.messageType == 3 && !$0.isAck })
                peer.send(
                    DatagramHeader(
                        kind: .ack, isCancel: true, datagramNumber: 0, isFromInitiator: false,
                        transactionId: ids[0]
                    ).encoded, to: client.address)
                peer.send(
                    dataDatagram(
                        type: 3, number: 0, messageSize: 2, transactionId: ids.first { $0 != ids[0] }!,
                        fromInitiator: false, hadError: true, payload: [0, 1]), to: client.address)
                try runUntil(loop) { ledger.isDone(2) }
                #expect(ledger.error(0) == .rejectedByPeer)
                #expect(ledger.error(1) == .remote(errno: RemoteErrno.malformed))
                try runFor(loop, ms: 30)
                ledger.expectExactlyOnce(2)
            }
        }

        /// One read callback reads at most `maxDatagramsPerRead`, so a flood cannot hold the loop.
        @Test(arguments: LoopBackendKind.allCases)
        func readsAreBoundedPerCallback(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback { $0.maxDatagramsPerRead = 10 }
            try withServers(kind, server: server) { loop, _, server in
                let peer = RawSocket()
                for _ in 0..<100 { peer.send([0xff, 1, 2], to: server.address) }
                var polls = 0
                try runUntil(loop) {
                    #expect(server.stats.datagramsIn <= 10 * polls)
                    polls += 1
                    return server.stats.datagramsIn == 100
                }
                #expect(polls >= 10)
                #expect(server.stats.corrupt == 100)
            }
        }
    }
}
