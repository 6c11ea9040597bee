import TestSupport
import Testing

@testable import UdpServer

extension UdpServerLoopTests {
    @Suite struct Shutdown {
        /// A gentle shutdown lets transactions in progress finish, refuses new
        /// work both ways, then closes and reports that it drained.
        @Test(arguments: LoopBackendKind.allCases)
        func gentleShutdownDrains(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                var held: [IncomingRequest] = []
                server.registerHandler(type: 1) { held.append($0) }
                let ledger = Ledger()
                client.sendRequest([1], type: 1, to: server.address, niceness: 0, callback: ledger.callback(0))
                try runUntil(loop) { held.count == 1 }

                var drained = 0
                server.shutdown { drained += 1 }
                #expect(server.isShuttingDown && !server.isDrained)
                // A new request to the server is dropped (its sender resends, then times out).
                client.sendRequest(
                    [2], type: 1, to: server.address, timeoutMs: 300, niceness: 0,
                    callback: ledger.callback(1))
                try runUntil(loop) { ledger.isDone(1) }
                #expect(ledger.error(1) == .timedOut)
                #expect(server.stats.shutdownDrops >= 1)
                // The server's own new requests end at once.
                server.sendRequest([3], type: 1, to: client.address, callback: ledger.callback(2))
                try runUntil(loop) { ledger.error(2) != nil }
                #expect(ledger.error(2) == .shuttingDown)
                // The request in progress is still answered.
                try server.sendReply([4], to: held[0])
                try runUntil(loop) { ledger.isDone(3) && drained == 1 }
                #expect(ledger.reply(0) == [4])
                #expect(server.isDrained && server.stats.incomingSlots == 0)
                try runFor(loop, ms: 50)
                #expect(drained == 1)
                ledger.expectExactlyOnce(3)
            }
        }

        /// An urgent shutdown ends every request in progress with `.shuttingDown`, at once.
        @Test(arguments: LoopBackendKind.allCases)
        func urgentShutdownEndsEverything(kind: LoopBackendKind) throws {
            try withServers(kind) { loop, client, server in
                var held: [IncomingRequest] = []
                server.registerHandler(type: 1) { held.append($0) }
                let silent = RawSocket()
                let ledger = Ledger()
                for i in 0..<5 {
                    client.sendRequest(
                        [UInt8(i)], type: 1, to: i < 3 ? server.address : silent.address,
                        niceness: i % 2, callback: ledger.callback(i))
                }
                try runUntil(loop) { held.count == 3 }
                var drained = false
                client.shutdown(urgent: true) { drained = true }
                #expect(client.isDrained)
                #expect(client.stats.outgoingSlots == 0)
                try runUntil(loop) { ledger.isDone(5) && drained }
                #expect((0..<5).allSatisfy { ledger.error($0) == .shuttingDown })
                // The callbacks ran before the drained notice, urgent ones first.
                #expect(ledger.order == [0, 2, 4, 1, 3])
                // The server's replies now meet a closed socket; its transactions time out quietly.
                for request in held { try server.sendReply([9], to: request) }
                try runFor(loop, ms: 50)
                ledger.expectExactlyOnce(5)
            }
        }
    }
}
