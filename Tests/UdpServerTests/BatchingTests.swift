import Glibc
import LoopTools
import TestSupport
import Testing

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
                    client.sendRequest(
                        pattern(64, seed: i), type: 1, to: server.address, niceness: 0,
                        callback: ledger.callback(i))
                }
                try runUntil(loop) { ledger.isDone(count) && server.stats.incomingSlots == 0 }
                for i in 0..<count { #expect(ledger.reply(i) == pattern(64, seed: i)) }
                ledger.expectExactlyOnce(count)
                let stats = server.stats
                // Requests and the ACKs of the replies in; ACKs and replies out.
                #expect(stats.datagramsIn == 2 * count && stats.datagramsOut == 2 * count)
                #expect(
                    stats.receiveSystemCalls <= 8,
                    "\(stats.receiveSystemCalls) reads for \(stats.datagramsIn) datagrams")
                // The ACKs, the replies, and one more flush for every millisecond the 32 handlers
                // run (`flushIfHeldLong`): a sanitized build on a busy machine takes a few.
                #expect(
                    stats.sendSystemCalls <= 8, "\(stats.sendSystemCalls) sends for \(stats.datagramsOut) datagrams")
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
                // The client's first resend only after 3 s: on a stalled machine (a sanitizer, other
                // load) the server's turn may come later than the default's tens of milliseconds,
                // and a client resend would then be the machine's doing, not the server's.
                for i in 0..<count {
                    client.sendRequest(
                        pattern(64 << 10, seed: i), type: 1, to: server.address, niceness: 0,
                        backoffMs: 3_000, maxWaitMs: 3_000, callback: ledger.callback(i))
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
                    while monotonicNanoseconds() - start < 3_000_000 {} // 3 ms of work
                    try? server.sendReply([2], to: request)
                }
                server.registerHandler(type: 3) { [unowned server] request in
                    repliesSeenByTheLast = HostilePeers.received(by: peer).filter { !$0.isAck }.map(\.transactionId)
                    try? server.sendReply([3], to: request)
                }
                // All three wait in the socket, so one read callback runs the three handlers.
                for type: UInt8 in [1, 2, 3] {
                    peer.send(
                        dataDatagram(
                            type: type, number: 0, messageSize: 1, transactionId: UInt32(type),
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
                server.registerHandler(type: 1) { [unowned server] request in
                    try? server.sendReply([7, 7], to: request)
                }
                server.registerHandler(type: 2) { [unowned server] _ in server.shutdown(urgent: true) }
                for type: UInt8 in [1, 2] {
                    peer.send(
                        dataDatagram(
                            type: type, number: 0, messageSize: 1, transactionId: UInt32(type),
                            payload: [type]), to: server.address)
                }
                try runUntil(loop) { server.isDrained }
                let replies = HostilePeers.received(by: peer).filter { !$0.isAck }
                #expect(replies.map(\.transactionId) == [1])
            }
        }

        /// Resends a timer scan queues leave before the callbacks that scan runs: here a
        /// request to a silent peer is resent every scan, and another request's timeout
        /// callback, run by the same scan, finds every resend already received.
        @Test(arguments: LoopBackendKind.allCases)
        func resendsLeaveBeforeTheScansCallbacks(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let client = UdpServer(loop: loop, configuration: .loopback)
                try client.start()
                defer { client.shutdown(urgent: true) }
                let silent = RawSocket()
                let alsoSilent = RawSocket()
                var copiesReceived = 0
                var seenAtTimeout: (received: Int, resends: Int)?
                // Resent at every scan (a 1 ms resend time), until the test ends.
                client.sendRequest(
                    [1], type: 1, to: silent.address, timeoutMs: 60_000, niceness: 0,
                    backoffMs: 1, maxWaitMs: 1
                ) { _ in }
                // Never resent before it times out.
                client.sendRequest(
                    [2], type: 1, to: alsoSilent.address, timeoutMs: 500, niceness: 0,
                    backoffMs: 100_000, maxWaitMs: 100_000
                ) { _ in
                    copiesReceived += HostilePeers.received(by: silent).count
                    seenAtTimeout = (copiesReceived, client.stats.resends)
                }
                try runUntil(loop) {
                    copiesReceived += HostilePeers.received(by: silent).count
                    return seenAtTimeout != nil
                }
                let seen = try #require(seenAtTimeout)
                #expect(seen.resends >= 1)
                #expect(seen.received == 1 + seen.resends, "the scan's resend waited behind its callback")
            }
        }

        /// A background handler that quickpolls (as long work must) gets its own datagrams
        /// out at the quickpoll: its reply, and a request it sends and waits for there.
        @Test(arguments: LoopBackendKind.allCases)
        func aQuickpollingHandlerSendsAtItsQuickpoll(kind: LoopBackendKind) throws {
            // A long scan period: the timer scan cannot be what sends them.
            let slowScan = UdpServerConfiguration.loopback { $0.pollTimeMs = 10_000 }
            try withServers(kind, client: slowScan, server: slowScan) { loop, client, server in
                let peer = RawSocket()
                client.echo(type: 2)
                var replyLeftDuringTheHandler = false
                var roundTripsDuringTheHandler = 0
                server.registerHandler(type: 1) { [unowned server, unowned client] request in
                    try? server.sendReply([9], to: request)
                    loop.quickPoll(niceness: 1)
                    replyLeftDuringTheHandler = HostilePeers.received(by: peer).contains { !$0.isAck }
                    // Round trips to the client, each waited for in quickpolls.
                    for round in 0..<5 {
                        var answered = false
                        server.sendRequest([UInt8(round)], type: 2, to: client.address, niceness: 0) { _ in
                            answered = true
                        }
                        let start = monotonicNanoseconds()
                        while !answered && monotonicNanoseconds() - start < 2_000_000_000 {
                            loop.quickPoll(niceness: 1)
                        }
                        if answered { roundTripsDuringTheHandler += 1 }
                    }
                }
                peer.send(
                    dataDatagram(
                        type: 1, number: 0, messageSize: 1, transactionId: 1, nice: true,
                        payload: [1]), to: server.address)
                try runUntil(loop) { server.stats.handlerCalls == 1 }
                #expect(replyLeftDuringTheHandler)
                #expect(roundTripsDuringTheHandler == 5)
            }
        }

        /// Another component's callback that runs inside a handler's quickpoll and sends
        /// through the server: its datagram has left when the quickpoll returns.
        @Test(arguments: LoopBackendKind.allCases)
        func aSendFromAnotherCallbackInAQuickpollLeavesWithIt(kind: LoopBackendKind) throws {
            let slowScan = UdpServerConfiguration.loopback { $0.pollTimeMs = 10_000 }
            try withServers(kind, server: slowScan) { loop, _, server in
                let peer = RawSocket()
                let silent = RawSocket()
                let pipe = PipePair()
                var sentFromThePipe = false
                var requestLeftWithTheQuickpoll: Bool?
                let registration = try loop.registerRead(fd: pipe.readEnd, niceness: 0) { [unowned server] _ in
                    pipe.drain()
                    server.sendRequest([3], type: 3, to: silent.address, niceness: 0) { _ in }
                    sentFromThePipe = true
                }
                defer { try? loop.unregister(registration) }
                server.registerHandler(type: 1) { _ in
                    pipe.fill()
                    loop.quickPoll(niceness: 1)
                    requestLeftWithTheQuickpoll = sentFromThePipe ? !HostilePeers.received(by: silent).isEmpty : nil
                }
                peer.send(
                    dataDatagram(
                        type: 1, number: 0, messageSize: 1, transactionId: 1, nice: true,
                        payload: [1]), to: server.address)
                try runUntil(loop) { server.stats.handlerCalls == 1 }
                #expect(requestLeftWithTheQuickpoll == true)
            }
        }

        /// The socket refuses the second copy of a duplicated datagram in the middle of a
        /// request's window: the request's remaining datagrams leave from the write
        /// callback, not at its resend time.
        @Test(arguments: LoopBackendKind.allCases)
        func aRefusedCopyLeavesTheRestQueued(kind: LoopBackendKind) throws {
            let filter = ScriptedFilter(dataFates: [.deliver, .duplicate], copyFates: [.wouldBlock])
            let configuration = UdpServerConfiguration.loopback {
                $0.datagramFilter = filter
                $0.datagramsPerSystemCall = 2 // the batch fills, and leaves, after datagram 1
            }
            try withLoop(kind) { loop in
                let client = UdpServer(loop: loop, configuration: configuration)
                try client.start()
                defer { client.shutdown(urgent: true) }
                let peer = RawSocket() // never acknowledges
                let payload = DatagramGeometry.loopback.payloadSize
                // A resend time far beyond the write callback's turn, even on a stalled machine.
                client.sendRequest(
                    pattern(3 * payload + 1, seed: 5), type: 1, to: peer.address, niceness: 0,
                    backoffMs: 3_000, maxWaitMs: 3_000
                ) { _ in }
                var numbers: Set<UInt32> = []
                try runUntil(loop) {
                    numbers.formUnion(HostilePeers.received(by: peer).map(\.datagramNumber))
                    return numbers == [0, 1, 2, 3]
                }
                #expect(filter.copiesAsked == 1)
                #expect(client.stats.sendsBlocked == 1)
                #expect(client.stats.resends == 0, "the rest of the window waited for its resend time")
            }
        }

        /// A datagram a filter delays leaves right after the one it waited for, even when
        /// the socket refuses the second copy of that one; not at the next timer scan.
        @Test(arguments: LoopBackendKind.allCases)
        func aDelayedDatagramFollowsTheOneItWaitedFor(kind: LoopBackendKind) throws {
            let filter = ScriptedFilter(dataFates: [.delay, .duplicate], copyFates: [.wouldBlock])
            let configuration = UdpServerConfiguration.loopback {
                $0.datagramFilter = filter
                $0.datagramsPerSystemCall = 2
                $0.pollTimeMs = 60_000 // no timer scan releases it
            }
            try withServers(kind, client: configuration) { loop, client, _ in
                let peer = RawSocket() // never acknowledges
                let payload = DatagramGeometry.loopback.payloadSize
                client.sendRequest(pattern(3 * payload + 1, seed: 6), type: 1, to: peer.address, niceness: 0) { _ in }
                var arrivals: [UInt32] = []
                try runUntil(loop, timeoutMs: 5_000) {
                    arrivals += HostilePeers.received(by: peer).map(\.datagramNumber)
                    return Set(arrivals) == [0, 1, 2, 3]
                }
                #expect(Array(arrivals.prefix(2)) == [1, 0])
                #expect(client.stats.resends == 0)
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

/// Gives data datagrams the fates of `dataFates` in turn, then delivers; the second copy
/// of a duplicated datagram gets those of `copyFates`. ACKs are delivered.
final class ScriptedFilter: DatagramFilter {
    private var dataFates: [DatagramFate]
    private var copyFates: [DatagramFate]
    private(set) var copiesAsked = 0

    init(dataFates: [DatagramFate], copyFates: [DatagramFate] = []) {
        self.dataFates = dataFates
        self.copyFates = copyFates
    }

    func fate(of datagram: OutgoingDatagram) -> DatagramFate {
        if datagram.isSecondCopy {
            copiesAsked += 1
            return copyFates.isEmpty ? .deliver : copyFates.removeFirst()
        }
        if datagram.header.isAck { return .deliver }
        return dataFates.isEmpty ? .deliver : dataFates.removeFirst()
    }
}
