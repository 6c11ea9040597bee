import Glibc
import TestSupport
import Testing

@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct PartialWrites {
        /// A reply of 4 MB to a client that reads at most 32 KB between polls arrives
        /// whole and in order: the server registers its write callback while the socket
        /// would block, carries on from it, and drops it once the reply is out (the
        /// loop's registrations are back to what they were before the request).
        @Test(arguments: LoopBackendKind.allCases)
        func largeReplyToASlowReader(kind: LoopBackendKind) throws {
            let size = 4 << 20
            let reply = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 16) }
            try withTcpServer(kind, framing: LengthPrefixFraming()) { loop, server in
                server.onRequest = { [unowned server] request in
                    let header: [UInt8] = [
                        UInt8(size >> 24), UInt8(size >> 16 & 0xff), UInt8(size >> 8 & 0xff), UInt8(size & 0xff),
                    ]
                    #expect(server.reply(header + reply, to: request))
                }
                let client = try TestClient(port: server.port, receiveBufferSize: 16 * 1024)
                try runUntil(loop) { server.stats.incomingOpen == 1 }
                try runFor(loop, ms: 20)
                let baseline = loop.counters.registrations
                client.send([0, 0, 0, 1, 42])
                try runUntil(loop, timeoutMs: 30_000) {
                    client.pump(limit: 32 * 1024)
                    return client.received.count >= 4 + size
                }
                #expect(client.received.count == 4 + size)
                #expect(client.received.dropFirst(4).elementsEqual(reply))
                #expect(server.stats.writeWaits > 0)
                #expect(server.stats.bytesOut == 4 + size)
                try runFor(loop, ms: 20)
                #expect(server.connections.values.allSatisfy { $0.writeRegistration == nil && $0.state == .reading })
                #expect(loop.counters.registrations == baseline)
                #expect(!client.peerClosed)
            }
        }
    }
}
