import Glibc
import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    @Suite struct Transactions {
        @Test(arguments: LoopBackendKind.allCases)
        func manyConcurrentRequests(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                server.echo(type: 3) { $0 + [0xee] }
                let count = 200
                let sizes = (0..<count).map { i in i % 10 == 0 ? 40_000 + i : (i * 97) % 3000 }
                let ledger = Ledger()
                for i in 0..<count {
                    client.sendRequest(
                        pattern(sizes[i], seed: i), type: 3, to: server.address,
                        niceness: i % 2, callback: ledger.callback(i))
                }
                #expect(client.stats.outgoingSlots == count)
                try runUntil(loop, timeoutMs: 20_000) { ledger.isDone(count) }
                try runFor(loop, ms: 30)
                ledger.expectExactlyOnce(count)
                for i in 0..<count { #expect(ledger.reply(i) == pattern(sizes[i], seed: i) + [0xee]) }
                #expect(server.stats.handlerCalls == count)
                #expect(client.stats.requestsCompleted == count)
                try runUntil(loop) { server.stats.incomingSlots == 0 }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func errorRepliesAndMissingHandlers(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                server.registerHandler(type: 4) { [unowned server] request in
                    try? server.sendErrorReply(errno: EACCES, to: request)
                }
                server.registerHandler(type: 5) { [unowned server] request in
                    try? server.sendReply(Array("ok".utf8), to: request)
                    // A second answer is refused: the request is no longer pending.
                    #expect(throws: ReplyError.notPending) { try server.sendReply([], to: request) }
                    #expect(throws: ReplyError.notPending) { try server.sendErrorReply(errno: EIO, to: request) }
                }
                let ledger = Ledger()
                client.sendRequest([1, 2, 3], type: 4, to: server.address, callback: ledger.callback(0))
                client.sendRequest([], type: 5, to: server.address, callback: ledger.callback(1))
                client.sendRequest([9], type: 6, to: server.address, callback: ledger.callback(2)) // no handler
                try runUntil(loop) { ledger.isDone(3) }
                ledger.expectExactlyOnce(3)
                #expect(ledger.error(0) == .remote(errno: EACCES))
                #expect(ledger.reply(1) == Array("ok".utf8))
                #expect(ledger.error(2) == .remote(errno: RemoteErrno.noHandler))
                #expect(server.stats.errorRepliesSent == 2)
                #expect(server.stats.unhandledRequests == 1)
            }
        }

        /// A peer that never reads: the request is resent, then times out, once.
        @Test(arguments: LoopBackendKind.allCases)
        func silentPeerTimesOut(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, _ in
                let silent = RawSocket()
                let ledger = Ledger()
                let start = monotonicNanoseconds()
                client.sendRequest(
                    pattern(50_000, seed: 1), type: 1, to: silent.address, timeoutMs: 400,
                    niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                // The server's clock counts whole milliseconds: 400 of them can be 399.x ms of ours.
                #expect(elapsedMs(since: start) >= 399)
                try runFor(loop, ms: 100)
                ledger.expectExactlyOnce(1)
                #expect(ledger.error(0) == .timedOut)
                #expect(client.stats.timeouts == 1)
                #expect(client.stats.resends >= 1)
                #expect(client.stats.outgoingSlots == 0)
            }
        }

        /// A handler that never answers: the request is acked, then times out.
        @Test(arguments: LoopBackendKind.allCases)
        func unansweredRequestTimesOut(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback { $0.incomingTimeoutMs = 300 }
            try withServers(kind, server: server) { loop, client, server in
                var held: [IncomingRequest] = []
                server.registerHandler(type: 1) { held.append($0) }
                let ledger = Ledger()
                client.sendRequest(
                    [1], type: 1, to: server.address, timeoutMs: 300, niceness: 0,
                    callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) && server.stats.incomingSlots == 0 }
                ledger.expectExactlyOnce(1)
                #expect(ledger.error(0) == .timedOut)
                #expect(server.stats.timeouts == 1)
                // The late answer finds nothing pending.
                #expect(throws: ReplyError.notPending) { try server.sendReply([2], to: held[0]) }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func cancelEndsRequestsOnce(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, _ in
                let silent = RawSocket()
                let ledger = Ledger()
                // A 2 s timeout, so a stalled machine cannot time them out before the cancel.
                let first = client.sendRequest(
                    [1], type: 1, to: silent.address, timeoutMs: 2_000,
                    callback: ledger.callback(0))
                client.sendRequest([2], type: 8, to: silent.address, timeoutMs: 2_000, callback: ledger.callback(1))
                client.sendRequest([3], type: 8, to: silent.address, timeoutMs: 2_000, callback: ledger.callback(2))
                try runFor(loop, ms: 20)
                #expect(client.cancel(first))
                #expect(!client.cancel(first))
                #expect(client.cancelAll(type: 8) == 2)
                try runUntil(loop) { ledger.isDone(3) }
                try runFor(loop, ms: 2_100) // past the timeout: no second callback
                ledger.expectExactlyOnce(3)
                #expect((0..<3).allSatisfy { ledger.error($0) == .cancelled })
                #expect(client.stats.timeouts == 0 && client.stats.outgoingSlots == 0)
            }
        }

        /// A reply that arrives after its request was cancelled gets a cancel ACK,
        /// which ends the responder's transaction at once.
        @Test(arguments: LoopBackendKind.allCases)
        func replyAfterCancelIsRefused(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                var held: [IncomingRequest] = []
                server.registerHandler(type: 1) { held.append($0) }
                let ledger = Ledger()
                let handle = client.sendRequest(
                    [1], type: 1, to: server.address, niceness: 0,
                    callback: ledger.callback(0))
                try runUntil(loop) { held.count == 1 }
                client.cancel(handle)
                try server.sendReply(pattern(100_000, seed: 2), to: held[0])
                try runUntil(loop) { server.stats.incomingSlots == 0 }
                #expect(client.stats.strayReplies >= 1)
                #expect(client.stats.cancelAcksOut >= 1)
                #expect(server.stats.cancelAcksIn >= 1)
                #expect(server.stats.timeouts == 0)
                ledger.expectExactlyOnce(1)
                #expect(ledger.error(0) == .cancelled)
            }
        }

        /// Client side: with every slot taken, a request ends at once with `.noSlots`.
        @Test(arguments: LoopBackendKind.allCases)
        func clientSlotExhaustion(kind: LoopBackendKind) throws {
            let client = UdpServerConfiguration.loopback { $0.maxSlots = 3 }
            try withServers(kind, client: client) { loop, client, _ in
                let silent = RawSocket()
                let ledger = Ledger()
                for i in 0..<5 {
                    client.sendRequest(
                        [UInt8(i)], type: 1, to: silent.address, timeoutMs: 300,
                        callback: ledger.callback(i))
                }
                // Not from inside sendRequest: on the loop's next pass.
                #expect(ledger.completed == 0)
                try runUntil(loop) { ledger.isDone(2) }
                #expect(ledger.error(3) == .noSlots && ledger.error(4) == .noSlots)
                #expect(client.stats.noSlotRequests == 2)
                try runUntil(loop) { ledger.isDone(5) }
                ledger.expectExactlyOnce(5)
                #expect((0..<3).allSatisfy { ledger.error($0) == .timedOut })
                // Slots are free again.
                client.sendRequest([9], type: 1, to: silent.address, timeoutMs: 100, callback: ledger.callback(5))
                try runUntil(loop) { ledger.isDone(6) }
                #expect(ledger.error(5) == .timedOut)
            }
        }

        /// Server side: requests beyond its slots are dropped and counted; their
        /// senders resend and complete once slots free up.
        @Test(arguments: LoopBackendKind.allCases)
        func serverSlotExhaustion(kind: LoopBackendKind) throws {
            let server = UdpServerConfiguration.loopback {
                $0.maxSlots = 2
                $0.maxIncomingSlotsPerPeer = 2
            }
            try withServers(kind, server: server) { loop, client, server in
                var held: [IncomingRequest] = []
                var answerAtOnce = false
                server.registerHandler(type: 1) { [unowned server] request in
                    if answerAtOnce {
                        try? server.sendReply(request.payload, to: request)
                    } else {
                        held.append(request)
                    }
                }
                let ledger = Ledger()
                for i in 0..<4 {
                    client.sendRequest(
                        [UInt8(i)], type: 1, to: server.address, timeoutMs: 10_000, niceness: 0,
                        callback: ledger.callback(i))
                }
                try runUntil(loop) { held.count == 2 && server.stats.noSlotDrops >= 2 }
                #expect(server.stats.incomingSlots == 2)
                try runFor(loop, ms: 250) // resends are dropped too
                #expect(held.count == 2)
                #expect(ledger.completed == 0)
                answerAtOnce = true
                for request in held { try server.sendReply(request.payload, to: request) }
                try runUntil(loop) { ledger.isDone(4) }
                ledger.expectExactlyOnce(4)
                for i in 0..<4 { #expect(ledger.reply(i) == [UInt8(i)]) }
                #expect(client.stats.resends >= 2)
                #expect(server.stats.handlerCalls == 4)
            }
        }

        /// Transaction ids count up and wrap from 0x3ffffffe to 0: 0x3fffffff is never issued,
        /// as the original's `getTransId` (UdpServer.h:320-324) never issues it.
        @Test(arguments: LoopBackendKind.allCases)
        func transactionIdsWrap(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, _ in
                let peer = RawSocket()
                client.nextTransactionId = DatagramHeader.maxTransactionId - 1
                let ledger = Ledger()
                for i in 0..<2 {
                    client.sendRequest([], type: 1, to: peer.address, niceness: 0, callback: ledger.callback(i))
                }
                var ids: [UInt32] = []
                try runUntil(loop) {
                    while let datagram = peer.receive() {
                        if let header = try? DatagramHeader.decode(datagram, geometry: .loopback) {
                            ids.append(header.transactionId)
                        }
                    }
                    return ids.count >= 2
                }
                let first = OriginalProtocol.getTransId(next: Int32(DatagramHeader.maxTransactionId - 1))
                let second = OriginalProtocol.getTransId(next: first.next)
                #expect(ids.prefix(2).map { Int32($0) } == [first.issued, second.issued])
            }
        }
    }
}
