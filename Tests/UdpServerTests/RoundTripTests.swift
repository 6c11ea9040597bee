import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    @Suite struct RoundTrips {
        static let payload = DatagramGeometry.loopbackDatagramSize - DatagramHeader.dataHeaderSize
        /// 0 B, 1 B, exactly one datagram's payload, one byte over, 1 MiB.
        static let sizes = [0, 1, payload, payload + 1, 1 << 20]

        @Test(arguments: LoopBackendKind.allCases, sizes)
        func echoArrivesIntact(kind: LoopBackendKind, size: Int) throws {
            try withServers(kind) { loop, client, server in
                server.echo(type: 7) { Array($0.reversed()) }
                let message = pattern(size, seed: size)
                let ledger = Ledger()
                client.sendRequest(message, type: 7, to: server.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                try runFor(loop, ms: 30) // a second callback would show here
                ledger.expectExactlyOnce(1)
                #expect(ledger.reply(0) == Array(message.reversed()))
                let datagrams = DatagramGeometry.loopback.datagramCount(forMessageSize: size)
                #expect(server.stats.handlerCalls == 1)
                #expect(server.stats.acksOut >= datagrams)
                #expect(client.stats.acksIn >= datagrams)
                #expect(client.stats.outgoingSlots == 0)
                try runUntil(loop) { server.stats.incomingSlots == 0 } // once the reply is acked
                #expect(client.bufferedBytes == 0 && server.bufferedBytes == 0)
            }
        }

        /// The LAN datagram size: the boundaries move to 1450 bytes.
        @Test(arguments: LoopBackendKind.allCases)
        func lanDatagramSizeBoundaries(kind: LoopBackendKind) throws {
            var lan = UdpServerConfiguration()
            lan.ownAddressDatagramSize = nil // the LAN size to 127.0.0.1 too
            try withServers(kind, client: lan, server: lan) { loop, client, server in
                server.echo(type: 1)
                let sizes = [0, 1, 1449, 1450, 1451, 2900, 2901, 100_000]
                let ledger = Ledger()
                for (i, size) in sizes.enumerated() {
                    client.sendRequest(
                        pattern(size, seed: i), type: 1, to: server.address, niceness: 0,
                        callback: ledger.callback(i))
                }
                try runUntil(loop) { ledger.isDone(sizes.count) }
                ledger.expectExactlyOnce(sizes.count)
                for (i, size) in sizes.enumerated() { #expect(ledger.reply(i) == pattern(size, seed: i)) }
            }
        }

        /// The largest message the default limit allows (291,191,900 bytes) crosses
        /// intact; one byte more is refused before anything is sent or allocated.
        @Test(arguments: LoopBackendKind.allCases)
        func defaultLimitIsReachableAndEnforced(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                let limit = DatagramGeometry.defaultMaxMessageSize
                #expect(limit == (280 * 1024 * 1024 / 1462 + 1) * 1450)
                let message = pattern(limit, seed: 3)
                // The server checks the bytes and answers with a verdict, to spare a second transfer.
                server.registerHandler(type: 9) { [unowned server] request in
                    try? server.sendReply([sameBytes(request.payload, message) ? 1 : 0], to: request)
                }
                let ledger = Ledger()
                client.sendRequest(message, type: 9, to: server.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop, timeoutMs: 60_000) { ledger.isDone(1) }
                #expect(ledger.reply(0) == [1])

                let sentBefore = client.stats.datagramsOut
                let tooLarge = [UInt8](unsafeUninitializedCapacity: limit + 1) { _, n in n = limit + 1 }
                client.sendRequest(tooLarge, type: 9, to: server.address, callback: ledger.callback(1))
                #expect(client.stats.outgoingSlots == 0)
                try runUntil(loop) { ledger.isDone(2) }
                #expect(ledger.error(1) == .messageTooLarge(size: limit + 1, limit: limit))
                #expect(client.stats.datagramsOut == sentBefore)
                ledger.expectExactlyOnce(2)
            }
        }

        /// With a lower configured maximum, the largest allowed message goes both
        /// ways and a larger reply is refused to the handler.
        @Test(arguments: LoopBackendKind.allCases)
        func configuredLimitBothWays(kind: LoopBackendKind) throws {
            let limit = 3 * 1024 * 1024 + 5
            let configuration = UdpServerConfiguration.loopback { $0.maxMessageSize = limit }
            try withServers(kind, client: configuration, server: configuration) { loop, client, server in
                var replyErrors: [ReplyError] = []
                server.registerHandler(type: 2) { [unowned server] request in
                    do throws(ReplyError) { try server.sendReply(request.payload + [0], to: request) } catch {
                        replyErrors.append(error)
                        try? server.sendReply(request.payload, to: request)
                    }
                }
                let message = pattern(limit, seed: 11)
                let ledger = Ledger()
                client.sendRequest(message, type: 2, to: server.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.reply(0) == message)
                #expect(replyErrors == [.messageTooLarge(size: limit + 1, limit: limit)])
                client.sendRequest(message + [1], type: 2, to: server.address, callback: ledger.callback(1))
                try runUntil(loop) { ledger.isDone(2) }
                #expect(ledger.error(1) == .messageTooLarge(size: limit + 1, limit: limit))
                ledger.expectExactlyOnce(2)
            }
        }
    }
}

extension DatagramGeometry {
    static let loopback = try! DatagramGeometry(datagramSize: loopbackDatagramSize)
}
