import Glibc
import LoopTools
import Testing
import TestTraits
@testable import UdpServer

extension UdpServerLoopTests {
    /// Datagrams read with `recvmmsg` and sent with `sendmmsg`: fewer system calls, the
    /// same datagrams, and nothing lost or held when the socket refuses part of a batch.
    @Suite struct Batching {
        /// 32 requests waiting at once are read, acknowledged and answered in a handful of
        /// system calls (one each way per datagram before batching: 64 in, 64 out).
        @Test(arguments: LoopBackendKind.allCases)
        func aBurstTakesFewSystemCalls(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                server.echo(type: 1)
                let ledger = Ledger()
                let count = 32
                for i in 0..<count {
                    client.sendRequest(pattern(64, seed: i), type: 1, to: server.address, niceness: 0,
                                       callback: ledger.callback(i))
                }
                try runUntil(loop) { ledger.isDone(count) && server.stats.incomingSlots == 0 }
                for i in 0..<count { #expect(ledger.reply(i) == pattern(64, seed: i)) }
                ledger.expectExactlyOnce(count)
                let stats = server.stats
                // Requests and the ACKs of the replies in; ACKs and replies out.
                #expect(stats.datagramsIn == 2 * count && stats.datagramsOut == 2 * count)
                #expect(stats.receiveSystemCalls <= 8, "\(stats.receiveSystemCalls) reads for \(stats.datagramsIn) datagrams")
                #expect(stats.sendSystemCalls <= 4, "\(stats.sendSystemCalls) sends for \(stats.datagramsOut) datagrams")
                #expect(client.stats.receiveSystemCalls <= 8)
            }
        }

        /// The filter refuses every seventh datagram with `EAGAIN` in the middle of batches
        /// of ACKs and reply datagrams: each refused one and those after it go back to their
        /// transactions and leave from the write callback. Nothing waits for a resend.
        @Test(arguments: LoopBackendKind.allCases)
        func aRefusedBatchGivesEveryDatagramBack(kind: LoopBackendKind) throws {
            let refuser = LossInjector(.wouldBlockEvery(7))
            let server = UdpServerConfiguration.loopback { $0.datagramFilter = refuser }
            try withServers(kind, server: server) { loop, client, server in
                server.echo(type: 1)
                let ledger = Ledger()
                let count = 8
                for i in 0..<count {
                    client.sendRequest(pattern(64 << 10, seed: i), type: 1, to: server.address, niceness: 0,
                                       callback: ledger.callback(i))
                }
                try runUntil(loop) { ledger.isDone(count) && server.stats.incomingSlots == 0 }
                for i in 0..<count { #expect(ledger.reply(i) == pattern(64 << 10, seed: i)) }
                ledger.expectExactlyOnce(count)
                #expect(refuser.refused >= 5)
                #expect(server.stats.sendsBlocked == refuser.refused)
                #expect(server.stats.writeCallbacksRegistered >= 1)
                #expect(server.writeRegistration == nil)
                // Given back, not lost: no datagram had to wait for its resend time.
                #expect(server.stats.resends == 0 && client.stats.resends == 0)
                #expect(client.stats.duplicates == 0)
            }
        }

        /// A handler that runs a millisecond or more is followed by a send: what the
        /// handlers before it answered does not wait for the ones after it.
        @Test(arguments: LoopBackendKind.allCases)
        func aLongHandlerDoesNotHoldEarlierReplies(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                let peer = RawSocket()
                var repliesSeenByTheLast: [UInt32] = []
                server.registerHandler(type: 1) { [unowned server] request in try? server.sendReply([1], to: request) }
                server.registerHandler(type: 2) { [unowned server] request in
                    let start = monotonicNanoseconds()
                    while monotonicNanoseconds() - start < 3_000_000 {}  // 3 ms of work
                    try? server.sendReply([2], to: request)
                }
                server.registerHandler(type: 3) { [unowned server] request in
                    repliesSeenByTheLast = HostilePeers.received(by: peer).filter { !$0.isAck }.map(\.transactionId)
                    try? server.sendReply([3], to: request)
                }
                // All three wait in the socket, so one read callback runs the three handlers.
                for type: UInt8 in [1, 2, 3] {
                    peer.send(dataDatagram(type: type, number: 0, messageSize: 1, transactionId: UInt32(type),
                                           payload: [type]), to: server.address)
                }
                try runUntil(loop) { server.stats.handlerCalls == 3 }
                // The first reply waited behind the long handler at most (the second may have left too).
                #expect(repliesSeenByTheLast.contains(1))
            }
        }

        /// An urgent shutdown from a handler closes the socket, but the reply an earlier
        /// handler sent (still in the batch) leaves first.
        @Test(arguments: LoopBackendKind.allCases)
        func closingSendsWhatWasAlreadySent(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, _, server in
                let peer = RawSocket()
                server.registerHandler(type: 1) { [unowned server] request in try? server.sendReply([7, 7], to: request) }
                server.registerHandler(type: 2) { [unowned server] _ in server.shutdown(urgent: true) }
                for type: UInt8 in [1, 2] {
                    peer.send(dataDatagram(type: type, number: 0, messageSize: 1, transactionId: UInt32(type),
                                           payload: [type]), to: server.address)
                }
                try runUntil(loop) { server.isDrained }
                let replies = HostilePeers.received(by: peer).filter { !$0.isAck }
                #expect(replies.map(\.transactionId) == [1])
            }
        }

        /// One datagram a call (the original's way) still works end to end, and so does
        /// the largest batch.
        @Test(arguments: LoopBackendKind.allCases, [1, 256])
        func anyBatchSizeCarriesAMessage(kind: LoopBackendKind, perCall: Int) throws {
            let configuration = UdpServerConfiguration.loopback { $0.datagramsPerSystemCall = perCall }
            try withServers(kind, client: configuration, server: configuration) { loop, client, server in
                server.echo(type: 1)
                let ledger = Ledger()
                let message = pattern(1 << 20, seed: perCall)
                client.sendRequest(message, type: 1, to: server.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == message)
                if perCall == 1 {
                    #expect(server.stats.sendSystemCalls == server.stats.datagramsOut)
                }
            }
        }

        @Test(arguments: LoopBackendKind.allCases, [0, 257, -1])
        func batchSizeOutOfRangeIsRefused(kind: LoopBackendKind, perCall: Int) throws {
            try withLoop(kind) { loop in
                let server = UdpServer(loop: loop, configuration: .loopback { $0.datagramsPerSystemCall = perCall })
                #expect(throws: UdpServerError.configuration(.datagramsPerSystemCall(perCall))) { try server.start() }
            }
        }
    }
}
