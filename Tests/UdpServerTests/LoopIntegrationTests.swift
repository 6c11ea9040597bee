import Glibc
@_spi(LoopInternals) import LoopCore
import LoopTools
import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    @Suite struct LoopIntegration {
        /// When a send would block, the server registers a write callback, carries
        /// on from it, and unregisters it once everything is sent.
        ///
        /// On loopback the kernel hands each datagram to the receiver inside
        /// `sendto`, so even the smallest `SO_SNDBUF` never fills; the send buffer is
        /// shrunk anyway and the filter refuses every third send with `EAGAIN`.
        @Test(arguments: LoopBackendKind.allCases)
        func writeCallbackCarriesOnWhenTheSocketWouldBlock(kind: LoopBackendKind) throws {
            let refuser = LossInjector(.wouldBlockEvery(3))
            let client = UdpServerConfiguration.loopback {
                $0.sendBufferSize = 4096
                $0.datagramFilter = refuser
            }
            try withServers(kind, client: client) { loop, client, server in
                server.echo(type: 1)
                let message = pattern(1 << 20, seed: 5)
                let ledger = Ledger()
                client.sendRequest(message, type: 1, to: server.address, niceness: 0, callback: ledger.callback(0))
                #expect(client.writeRegistration != nil)
                // Done, and everything sent: the ACK of the last reply datagram may have been
                // refused and wait for the write callback.
                try runUntil(loop) {
                    ledger.isDone(1) && !client.socketIsFull && client.sendQueues.allSatisfy(\.isEmpty)
                }
                #expect(ledger.reply(0) == message)
                #expect(client.stats.writeCallbacksRegistered >= 1)
                #expect(client.stats.sendsBlocked >= 10)
                #expect(refuser.refused == client.stats.sendsBlocked)
                #expect(client.writeRegistration == nil)
                #expect(client.socket.map { $0.bufferSize(SO_SNDBUF) <= 2 * 4608 } == true)
                ledger.expectExactlyOnce(1)
            }
        }

        /// Niceness 0 callbacks run first in a batch.
        @Test(arguments: LoopBackendKind.allCases)
        func urgentCallbacksRunFirst(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, _ in
                var order: [String] = []
                client.callbackQueues[1].append(.reply({ _ in order.append("background 1") }, .success([])))
                client.callbackQueues[0].append(.reply({ _ in order.append("urgent 1") }, .success([])))
                client.callbackQueues[1].append(.reply({ _ in order.append("background 2") }, .success([])))
                client.callbackQueues[0].append(
                    .reply(
                        { _ in
                            order.append("urgent 2")
                            // Queued by a callback: still ahead of the background ones.
                            client.callbackQueues[0].append(.reply({ _ in order.append("urgent 3") }, .success([])))
                        }, .success([])))
                #expect(client.needsBottomHalf)
                try loop.runOnce() // the bottom half runs them at the top of the poll
                #expect(order == ["urgent 1", "urgent 2", "urgent 3", "background 1", "background 2"])
                #expect(!client.needsBottomHalf)
            }
        }

        /// A niceness-1 completion is not called from inside quickpoll (a niceness-0
        /// one is); the loop calls it on its next full poll through the bottom half.
        @Test(arguments: LoopBackendKind.allCases)
        func backgroundCallbacksWaitOutQuickPoll(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                var held: [IncomingRequest] = []
                server.registerHandler(type: 1) { held.append($0) }
                var urgentInQuickPoll: Bool?
                var backgroundInQuickPoll: Bool?
                client.sendRequest([0], type: 1, to: server.address, niceness: 0) { result in
                    #expect((try? result.get()) == [0])
                    urgentInQuickPoll = loop.inQuickPoll
                }
                client.sendRequest([1], type: 1, to: server.address, niceness: 1) { result in
                    #expect((try? result.get()) == [1])
                    backgroundInQuickPoll = loop.inQuickPoll
                }
                try runUntil(loop) { held.count == 2 }

                // Long background work: answers both, then quickpolls until the
                // client has read both replies.
                let pipe = PipePair()
                var checkedInsideWork = false
                let work = try loop.registerRead(fd: pipe.readEnd, niceness: 1) { _ in
                    pipe.drain()
                    for request in held.reversed() { try? server.sendReply(request.payload, to: request) }
                    let deadline = monotonicNanoseconds() + 5_000_000_000
                    while (urgentInQuickPoll == nil || client.stats.callbacksHeldBack == 0)
                        && monotonicNanoseconds() < deadline
                    {
                        loop.quickPoll(niceness: 1)
                    }
                    #expect(urgentInQuickPoll == true)
                    #expect(backgroundInQuickPoll == nil)
                    #expect(client.stats.callbacksHeldBack >= 1)
                    checkedInsideWork = true
                }
                pipe.fill()
                try runUntil(loop) { checkedInsideWork && backgroundInQuickPoll != nil }
                try loop.unregister(work)
                #expect(backgroundInQuickPoll == false)
            }
        }

        /// The server's registrations: one read callback and one sleep callback (paused
        /// while the server has nothing to time), all gone after shutdown.
        @Test(arguments: LoopBackendKind.allCases)
        func registersWithTheLoopAndLeavesNoTrace(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let before = loop.counters.registrations
                let server = UdpServer(loop: loop)
                try server.start()
                #expect(server.port != 0)
                #expect(loop.counters.registrations == before + 2)
                #expect(loop.minTick == defaultMinimumTickMs, "the paused poll does not set the tick")
                server.sendRequest([1], type: 0x70, to: PeerAddress(ip: 0x7F00_0001, port: 9), timeoutMs: 5_000) { _ in
                }
                #expect(loop.minTick <= Int64(server.configuration.pollTimeMs))
                server.shutdown(urgent: true)
                #expect(server.isDrained)
                #expect(loop.counters.registrations == before)
                #expect(throws: UdpServerError.alreadyStarted) { try server.start() }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func startRefusesBadConfigurations(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let cases: [(UdpServerConfiguration, UdpServerError)] = [
                    (.loopback { $0.datagramSize = 12 }, .configuration(.datagramSize(12))),
                    (.loopback { $0.datagramSize = 70_000 }, .configuration(.datagramSize(70_000))),
                    (
                        .loopback { $0.maxMessageSize = Int(UInt32.max) + 1 },
                        .configuration(.maxMessageSize(Int(UInt32.max) + 1))
                    ),
                    // 2^21 datagrams of 1 byte each is one too many for the 21-bit number.
                    (
                        .loopback {
                            $0.datagramSize = 13
                            $0.maxMessageSize = (1 << 21) + 1
                        },
                        .configuration(.maxMessageSize((1 << 21) + 1))
                    ),
                    (.loopback { $0.ackWindow = 0 }, .configuration(.ackWindow(0))),
                    (.loopback { $0.maxSlots = 0 }, .configuration(.maxSlots(0))),
                    (.loopback { $0.pollTimeMs = 0 }, .configuration(.pollTime(0))),
                    (.loopback { $0.bindAddress = "127.0.0" }, .invalidBindAddress("127.0.0")),
                ]
                for (configuration, expected) in cases {
                    #expect(throws: expected) { try UdpServer(loop: loop, configuration: configuration).start() }
                }
            }
        }
    }
}

extension UdpServerLoopTests.LoopIntegration {
    /// A second node on a port in use is refused with a clear error, and the first
    /// keeps its datagrams (with `SO_REUSEADDR` both bound and the second took them).
    @Test(arguments: LoopBackendKind.allCases)
    func aPortInUseIsAClearError(kind: LoopBackendKind) throws {
        try withServers(kind) { loop, client, server in
            let port = server.address.port
            let intruder = UdpServer(loop: loop, configuration: .loopback { $0.port = port })
            #expect(throws: UdpServerError.addressInUse("127.0.0.1:\(port)")) { try intruder.start() }
            #expect("\(UdpServerError.addressInUse("127.0.0.1:\(port)"))".contains("already in use"))
            server.echo(type: 1)
            let ledger = Ledger()
            client.sendRequest([1, 2, 3], type: 1, to: server.address, niceness: 0, callback: ledger.callback(0))
            try runUntil(loop) { ledger.isDone(1) }
            #expect(ledger.reply(0) == [1, 2, 3])
        }
    }
}

extension UdpServerLoopTests.LoopIntegration {
    /// The 20 ms time poll runs only while it has something to time: an idle server
    /// costs its loop no wake-ups (the epoll loop then sleeps until something happens).
    @Test(arguments: LoopBackendKind.allCases)
    func timePollRunsOnlyWhileThereIsWork(kind: LoopBackendKind) throws {
        try withServers(kind) { loop, client, server in
            let idle = loop.counters.sleepCallbacks
            try runFor(loop, ms: 200)
            #expect(loop.counters.sleepCallbacks == idle, "a poll ran with nothing in flight")
            // Answered: the poll wakes for the transactions, and pauses once they end.
            server.echo(type: 1)
            let ledger = Ledger()
            client.sendRequest([1, 2, 3], type: 1, to: server.address, niceness: 0, callback: ledger.callback(0))
            try runUntil(loop) { ledger.isDone(1) }
            #expect(ledger.reply(0) == [1, 2, 3])
            // Unanswered: only the poll's resends and its timeout end it.
            let silent = RawSocket()
            client.sendRequest(
                [4], type: 1, to: silent.address, timeoutMs: 300, niceness: 0, callback: ledger.callback(1))
            let busy = loop.counters.sleepCallbacks
            try runUntil(loop) { ledger.isDone(2) }
            #expect(ledger.error(1) == .timedOut)
            #expect(loop.counters.sleepCallbacks - busy >= 5, "the poll timed the request out")
            // Nothing in flight again: at most the scans that find it so.
            try runFor(loop, ms: 60)
            let settled = loop.counters.sleepCallbacks
            try runFor(loop, ms: 200)
            #expect(loop.counters.sleepCallbacks == settled, "the poll kept running after the work ended")
            ledger.expectExactlyOnce(2)
        }
    }
}
