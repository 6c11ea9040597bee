import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct Lifecycle {
        /// A handler that closes its request's connection and then the whole server:
        /// every socket (the listener, the other clients', an outgoing one) is closed,
        /// its exchange ends once with `.shuttingDown`, a reply after it is dropped,
        /// and the server refuses to start again. `close()` twice is harmless.
        @Test(arguments: LoopBackendKind.allCases)
        func handlerClosesItsConnectionThenTheServer(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                let other = TcpServer(loop: loop, configuration: .testing(), framing: LineFraming())
                defer { other.close() }
                try other.listen(on: .loopback(port: 0))
                var heldByOther: [TcpRequest] = []
                other.onRequest = { heldByOther.append($0) }
                var held: [TcpRequest] = []
                let completions = Completions()
                var replyAfterClose: Bool?
                server.onRequest = { [unowned server] request in
                    if text(request.bytes) == "wait\n" { return held.append(request) }
                    server.close(request.connection)
                    server.close()
                    server.close()
                    replyAfterClose = server.reply(bytes("late\n"), to: request)
                }
                let idle = try TestClient(port: server.port)
                let waiting = try TestClient(port: server.port)
                waiting.send("wait\n")
                server.send("out\n", to: other.address, completions, 0)
                try runUntil(loop) { held.count == 1 && heldByOther.count == 1 && server.stats.incomingOpen == 2 }
                let closer = try TestClient(port: server.port)
                closer.send("close everything\n")
                try runUntil(loop) { server.isClosed }
                for client in [idle, waiting, closer] { try awaitClosed(loop, client) }
                #expect(replyAfterClose == false)
                #expect(completions.error(0) == .shuttingDown)
                #expect(server.stats.incomingOpen == 0 && server.stats.outgoingOpen == 0)
                #expect(server.reply(bytes("later\n"), to: held[0]) == false)
                #expect(throws: TcpError.shuttingDown) { try server.listen(on: .loopback(port: 0)) }
                #expect(throws: TcpError.shuttingDown) {
                    try server.send([1], to: other.address, framing: LineFraming()) { _ in }
                }
                #expect(throws: (any Error).self) { try TestClient(port: server.port) }
                try runFor(loop, ms: 30)
                completions.expectExactlyOnce(1)
                held = []
                heldByOther = []
            }
        }

        /// An HttpServer closed from inside its own handler: the response is dropped,
        /// the client sees the connection closed, and nothing is left open.
        @Test(arguments: LoopBackendKind.allCases)
        func httpServerClosedFromItsHandler(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                server.handler = { [unowned server] _, responder in
                    server.close()
                    #expect(!responder.respond(.text(200, "too late")))
                }
                let client = try TestClient(port: server.port)
                client.send(get("/") + get("/second"))
                try awaitClosed(loop, client)
                #expect(client.takeHttpResponse() == nil)
                #expect(server.stats.requests == 1 && server.tcp.isClosed)
            }
        }

        /// A server released without `close()` closes its sockets as it goes.
        @Test(arguments: LoopBackendKind.allCases)
        func releasedServerClosesItsSockets(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                var client: TestClient?
                do {
                    let server = TcpServer(loop: loop, configuration: .testing(), framing: LineFraming())
                    try server.listen(on: .loopback(port: 0))
                    server.echo()
                    client = try TestClient(port: server.port)
                    client!.send("hi\n")
                    #expect(try awaitLine(loop, client!) == "HI")
                }
                try awaitClosed(loop, client!)
            }
        }

        /// A client that resets its connection while a large reply is being written:
        /// the server ends the connection (no write registration left behind) and
        /// serves the next client.
        @Test(arguments: LoopBackendKind.allCases)
        func clientResetDuringALongReply(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.onRequest = { [unowned server] request in
                    if text(request.bytes) == "big\n" {
                        server.reply([UInt8](repeating: 0x62, count: 8 << 20), to: request)
                    } else {
                        server.reply(upper(request.bytes), to: request)
                    }
                }
                var leaver: TestClient? = try TestClient(port: server.port, receiveBufferSize: 4096)
                leaver!.send("big\n")
                try runUntil(loop) { server.stats.writeWaits == 1 }
                var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
                setsockopt(leaver!.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
                leaver = nil
                try runUntil(loop) { server.stats.incomingOpen == 0 }
                let next = try TestClient(port: server.port)
                next.send("next\n")
                #expect(try awaitLine(loop, next) == "NEXT")
                #expect(server.connections.values.allSatisfy { $0.writeRegistration == nil })
            }
        }
    }
}
