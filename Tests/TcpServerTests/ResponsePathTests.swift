import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServerLoopTests {
    /// The response path made cheap: the head written as bytes, a response serialized
    /// once and sent as it is, and a keep-alive connection that keeps its read
    /// registration from one request to the next.
    @Suite struct ResponsePath {
        /// The head is the status line, the handler's fields less its own
        /// `Content-Length` and `Connection` (any case), then the server's two.
        @Test func headBytes() {
            let response = HttpResponse(
                status: 404,
                fields: [("X-A", "b"), ("CONTENT-LENGTH", "99"), ("connection", "close"), ("Content-Lengthy", "1")],
                body: bytes("abc"))
            #expect(
                text(response.serialized(keepAlive: true))
                    == "HTTP/1.1 404 Not Found\r\nX-A: b\r\nContent-Lengthy: 1\r\nContent-Length: 3\r\n"
                    + "Connection: keep-alive\r\n\r\nabc")
            #expect(
                text(HttpResponse(status: 599, body: []).serialized(keepAlive: false, includeBody: false))
                    == "HTTP/1.1 599 Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }

        /// The Host forms, parsed by byte: host lowercased, port when given, nil for what is not one.
        @Test func authorityParsing() {
            let cases: [(String, String?, UInt16?)] = [
                ("127.0.0.1:8080", "127.0.0.1", 8080), ("LocalHost:80", "localhost", 80),
                ("example.org", "example.org", nil),
                ("example.org:", "example.org", nil), ("[::1]:9", "[::1]", 9), ("[::1]", "[::1]", nil),
                ("a:65535", "a", 65535), ("", "", nil),
            ]
            for (text, host, port) in cases {
                let authority = HttpAuthority(parsing: text)
                #expect(authority?.host == host && authority?.port == port, "\(text)")
            }
            for bad in [
                "a:65536", "a:123456", "a:1x", "user@host", "a b", "a/b", "h\u{e9}te", "a:+1", "[::1", "[zz]:1",
            ] {
                #expect(HttpAuthority(parsing: bad) == nil, "\(bad)")
            }
        }

        /// A prepared response goes out byte for byte as the response it was made from
        /// would: keep-alive, closing (HTTP/1.0 without keep-alive), and HEAD (no body).
        @Test(arguments: LoopBackendKind.allCases)
        func preparedResponseIsSentAsItIs(kind: LoopBackendKind) throws {
            let response = HttpResponse(
                status: 200, fields: [("Content-Type", "text/html")], body: bytes("<p>a page</p>"))
            let prepared = HttpPreparedResponse(response)
            try withHttpServer(kind) { loop, server in
                server.handler = { _, responder in responder.respond(prepared) }
                let client = try TestClient(port: server.port)
                let exchanges: [(request: String, expected: [UInt8])] = [
                    (get("/"), response.serialized(keepAlive: true)),
                    ("HEAD / HTTP/1.1\r\nHost: test\r\n\r\n", response.serialized(keepAlive: true, includeBody: false)),
                    (get("/"), response.serialized(keepAlive: true)),
                    (get("/", version: "HTTP/1.0"), response.serialized(keepAlive: false)),
                ]
                for (request, expected) in exchanges {
                    client.send(request)
                    try runUntil(loop) {
                        client.pump()
                        return client.received.count >= expected.count
                    }
                    #expect(text(Array(client.received.prefix(expected.count))) == text(expected))
                    client.received.removeFirst(expected.count)
                }
                try awaitClosed(loop, client)
                #expect(client.received.isEmpty && server.stats.responses2xx == 4)
            }
        }

        /// A handler that answers at once leaves the connection reading with the same read
        /// registration (no unregister and register again per request); one that holds the
        /// request has none while it does (nothing is read while a request is handled).
        @Test(arguments: LoopBackendKind.allCases)
        func keepAliveConnectionKeepsItsReadRegistration(kind: LoopBackendKind) throws {
            try withTcpServer(kind) { loop, server in
                server.echo()
                let client = try TestClient(port: server.port)
                client.send("first\n")
                #expect(try awaitLine(loop, client) == "FIRST")
                let connection = try #require(server.connections.values.first)
                let registration = try #require(connection.readRegistration)
                for i in 0..<3 {
                    client.send("again \(i)\n")
                    #expect(try awaitLine(loop, client) == "AGAIN \(i)")
                    #expect(connection.readRegistration === registration, "request \(i) registered the reads anew")
                }
                var held: [TcpRequest] = []
                server.onRequest = { held.append($0) }
                client.send("held\n")
                try runUntil(loop) { held.count == 1 }
                #expect(connection.readRegistration == nil, "reads stay watched while a request is handled")
                #expect(server.reply(bytes("LATER\n"), to: held[0]))
                #expect(try awaitLine(loop, client) == "LATER")
                #expect(connection.readRegistration != nil)
                #expect(server.stats.requestsIn == 5 && server.stats.incomingOpen == 1)
            }
        }

        /// A pipelining client that has served its share of a turn is not read again
        /// until its turn comes, even though its requests were answered at once: the
        /// requests served from the turn find the connection without a read registration.
        @Test(arguments: LoopBackendKind.allCases)
        func connectionAwaitingItsTurnIsNotRead(kind: LoopBackendKind) throws {
            var configuration = TcpServerConfiguration.testing()
            configuration.maxRequestsPerTurn = 1
            try withTcpServer(kind, configuration) { loop, server in
                var watched: [Bool] = []
                server.onRequest = { [unowned server] request in // the server holds this closure
                    watched.append(server.connections[request.connection]?.readRegistration != nil)
                    server.reply(upper(request.bytes), to: request)
                }
                let client = try TestClient(port: server.port)
                client.send("one\ntwo\nthree\n")
                #expect(
                    try [awaitLine(loop, client), awaitLine(loop, client), awaitLine(loop, client)] == [
                        "ONE", "TWO", "THREE",
                    ])
                #expect(watched == [true, false, false], "read while awaiting its turn: \(watched)")
                #expect(
                    server.connections.values.first?.readRegistration != nil, "reading again once the turns are done")
                #expect(server.stats.turnsYielded >= 2)
            }
        }
    }
}
