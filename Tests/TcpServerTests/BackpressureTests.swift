import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct Backpressure {
        /// A client that pipelines 1,000 requests (200 KB) and never reads the replies is
        /// read no further ahead than `maxReadAheadBytes`: what the server holds for it (its
        /// buffered requests and the unsent reply) stays within that plus one reply, however
        /// long it waits. Once it reads, every reply comes, in order, within the same bound.
        @Test(arguments: LoopBackendKind.allCases)
        func aClientThatNeverReadsHoldsAtMostTheBound(kind: LoopBackendKind) throws {
            let count = 1000
            let filler = String(repeating: "x", count: 4096)
            try withHttpServer(kind) { loop, server in
                server.handler = { request, responder in responder.respond(.text(200, String(request.path) + filler)) }
                let path = { (i: Int) in "/" + String(String(i + 10_000).dropFirst()) }
                let expected = (0..<count).flatMap {
                    HttpResponse.text(200, path($0) + filler).serialized(keepAlive: true)
                }
                let replySize = expected.count / count
                let client = try TestClient(port: server.port, receiveBufferSize: 4096)
                try runUntil(loop) { server.tcp.stats.incomingOpen == 1 }
                let connection = try #require(server.tcp.connections.values.first)
                // A fixed small send buffer: the kernel takes a few replies, not megabytes.
                var size: Int32 = 16 * 1024
                setsockopt(connection.fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
                let padding = "X-Padding: " + String(repeating: "p", count: 150) + "\r\n"
                client.send((0..<count).map { get(path($0), padding) }.joined())
                var mostHeld = 0
                let sample = { mostHeld = max(mostHeld, connection.heldBytes) }
                // Sending only: the replies pile up until the server stops.
                try runUntil(loop) {
                    client.pump(limit: 0)
                    sample()
                    return connection.state == .writing && connection.writeRegistration != nil && !client.hasUnsent
                }
                try runFor(loop, ms: 200) {
                    client.pump(limit: 0)
                    sample()
                }
                sample()
                let bound = server.tcp.configuration.maxReadAheadBytes + replySize
                #expect(mostHeld <= bound, "held \(mostHeld) bytes for a client that does not read (bound \(bound))")
                #expect(server.stats.requests < count)
                // It reads: every reply comes, in order, and the bound holds throughout.
                try runUntil(loop, timeoutMs: 30_000) {
                    client.pump()
                    sample()
                    return client.received.count >= expected.count
                }
                #expect(client.received == expected)
                #expect(mostHeld <= bound, "held \(mostHeld) bytes (bound \(bound))")
                #expect(server.stats.requests == count)
                #expect(!client.peerClosed)
            }
        }
    }
}
