import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServerLoopTests {
    @Suite struct HttpServing {
        /// Each kind of bad input is answered with its status and the connection
        /// closed, before any handler sees it; the server then serves the next client.
        /// The timeouts are long, so a 408 cannot stand in for the status expected.
        @Test(arguments: LoopBackendKind.allCases)
        func badInputIsRefusedWithItsStatus(kind: LoopBackendKind) throws {
            let cases: [(String, [UInt8], Int)] = [
                (
                    "oversized header",
                    bytes("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 9_000) + "\r\n\r\n"), 431
                ),
                (
                    "oversized header, no end yet",
                    bytes("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 9_000)), 431
                ),
                ("oversized body", bytes("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"), 413),
                ("garbage with a line end", bytes("hello there\r\n\r\n"), 400),
                (
                    "garbage without one (a TLS hello)",
                    [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03], 400
                ),
                ("bare LF line ends", bytes("GET / HTTP/1.1\nHost: x\n\n"), 400),
                (
                    "two Content-Lengths",
                    bytes("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"), 400
                ),
                ("Content-Length not digits", bytes("POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\nabc"), 400),
                ("Content-Length negative", bytes("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400),
                ("Transfer-Encoding", bytes("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 501),
                ("HTTP/2.0", bytes("GET / HTTP/2.0\r\n\r\n"), 505),
                ("a start line of four words", bytes("GET / HTTP/1.1 extra\r\n\r\n"), 400),
                ("a start line with two spaces", bytes("GET  / HTTP/1.1\r\n\r\n"), 400),
                ("NUL in a field", bytes("GET / HTTP/1.1\r\nX: a\u{0}b\r\n\r\n"), 400),
                ("control byte in the target", bytes("GET /\u{7} HTTP/1.1\r\n\r\n"), 400),
                ("a field without a colon", bytes("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400),
                ("a folded field", bytes("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400),
            ]
            try withHttpServer(kind) { loop, server in
                var handled = 0
                server.handler = { _, responder in
                    handled += 1
                    responder.respond(.text(200, "fine"))
                }
                for (name, input, status) in cases {
                    let client = try TestClient(port: server.port)
                    client.send(input)
                    do {
                        let response = try awaitResponse(loop, client, timeoutMs: 3_000)
                        #expect(response.status == status, "\(name)")
                        #expect(response.field("connection") == "close", "\(name)")
                        try awaitClosed(loop, client)
                    } catch is ConditionTimedOut {
                        Issue.record("\(name): no response")
                    }
                    let next = try TestClient(port: server.port)
                    next.send(get("/"))
                    #expect(try awaitResponse(loop, next).status == 200, "after \(name)")
                }
                #expect(handled == cases.count)
                #expect(server.tcp.stats.refusedMessages == cases.count)
            }
        }

        /// RFC 9112 §3.2: an HTTP/1.1 request without a Host field, and a request of any
        /// version with two of them or with one that is not a host[:port], gets a 400 and is
        /// closed before a handler sees it. An HTTP/1.0 request may leave Host out.
        @Test(arguments: LoopBackendKind.allCases)
        func hostFieldIsRequiredOnceInHttp11(kind: LoopBackendKind) throws {
            let refused: [(String, String)] = [
                ("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n"),
                ("HTTP/1.1 POST without Host", "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
                ("two Hosts", "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: rebind.example\r\n\r\n"),
                ("two Hosts, same value", "GET / HTTP/1.1\r\nHost: test\r\nhost: test\r\n\r\n"),
                ("two Hosts in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
                ("a Host with userinfo", "GET / HTTP/1.1\r\nHost: user@test\r\n\r\n"),
                ("a Host with a space", "GET / HTTP/1.1\r\nHost: te st\r\n\r\n"),
                ("a Host with a path", "GET / HTTP/1.1\r\nHost: test/x\r\n\r\n"),
                ("a Host with a non-numeric port", "GET / HTTP/1.1\r\nHost: test:80x\r\n\r\n"),
            ]
            let served: [(String, String)] = [
                ("HTTP/1.1 with Host", "GET / HTTP/1.1\r\nHost: test\r\n\r\n"),
                ("HTTP/1.1 with Host and port", "GET / HTTP/1.1\r\nHOST: 127.0.0.1:8080\r\n\r\n"),
                ("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n"),
            ]
            try withHttpServer(kind) { loop, server in
                var handled = 0
                server.handler = { _, responder in
                    handled += 1
                    responder.respond(.text(200, "fine"))
                }
                for (name, request) in refused {
                    let client = try TestClient(port: server.port)
                    client.send(request)
                    let response = try awaitResponse(loop, client, timeoutMs: 5_000)
                    #expect(response.status == 400, "\(name): \(response.status) \(text(response.body))")
                    #expect(text(response.body).contains("Host"), "\(name): the reason names the field")
                    try awaitClosed(loop, client)
                }
                #expect(handled == 0, "no handler saw a request without exactly one valid Host")
                #expect(server.stats.refusedByStatus[400] == refused.count)
                for (name, request) in served {
                    let client = try TestClient(port: server.port)
                    client.send(request)
                    #expect(try awaitResponse(loop, client, timeoutMs: 5_000).status == 200, "\(name)")
                }
                #expect(handled == served.count)
            }
        }

        /// HEAD gets the head GET would (its Content-Length too) and no body; the
        /// next request on the connection is framed right after it.
        @Test(arguments: LoopBackendKind.allCases)
        func headGetsNoBody(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                server.handler = { _, responder in responder.respond(.text(200, "twelve bytes")) }
                let client = try TestClient(port: server.port)
                client.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get("/"))
                let head = try awaitResponse(loop, client, isHead: true)
                #expect(head.status == 200 && head.body.isEmpty && head.field("content-length") == "13")
                let full = try awaitResponse(loop, client)
                #expect(full.body == bytes("twelve bytes\n"))
                #expect(client.received.isEmpty && !client.peerClosed)
            }
        }

        /// HTTP/1.1 keeps the connection unless `Connection: close`; HTTP/1.0 closes
        /// it unless `Connection: keep-alive`. The response says which.
        @Test(arguments: LoopBackendKind.allCases)
        func keepAliveRulesOfBothVersions(kind: LoopBackendKind) throws {
            let cases: [(String, String, Bool)] = [
                ("HTTP/1.1", "", true),
                ("HTTP/1.1", "Connection: close\r\n", false),
                ("HTTP/1.1", "Connection: Keep-Alive, Close\r\n", false),
                ("HTTP/1.0", "", false),
                ("HTTP/1.0", "Connection: keep-alive\r\n", true),
            ]
            try withHttpServer(kind) { loop, server in
                server.handler = { request, responder in responder.respond(.text(200, request.version)) }
                for (version, extra, kept) in cases {
                    let client = try TestClient(port: server.port)
                    client.send(get("/", version: version, extra))
                    let response = try awaitResponse(loop, client)
                    #expect(response.body == bytes(version + "\n"))
                    #expect(response.field("connection") == (kept ? "keep-alive" : "close"), "\(version) \(extra)")
                    if kept {
                        client.send(get("/", version: version, extra))
                        #expect(try awaitResponse(loop, client).status == 200)
                        #expect(!client.peerClosed)
                    } else {
                        try awaitClosed(loop, client)
                    }
                }
            }
        }

        /// Pipelined HTTP requests are answered in order, and a body is handed over whole.
        @Test(arguments: LoopBackendKind.allCases)
        func pipelinedRequestsWithBodies(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                server.handler = { request, responder in
                    responder.respond(.text(200, "\(request.method) \(request.target) \(text(request.body))"))
                }
                let client = try TestClient(port: server.port)
                client.send(
                    "POST /a HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello" + get("/b")
                        + "POST /c?x=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
                let bodies = try (0..<3).map { _ in text(try awaitResponse(loop, client).body) }
                #expect(bodies == ["POST /a hello\n", "GET /b \n", "POST /c?x=1 \n"])
                #expect(server.stats.requests == 3 && server.stats.responses2xx == 3)
            }
        }

        /// A responder used twice: the second answer is dropped and counted, not sent.
        @Test(arguments: LoopBackendKind.allCases)
        func secondResponseIsDropped(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                server.handler = { _, responder in
                    responder.respond(.text(200, "first"))
                    #expect(!responder.respond(.text(500, "second")))
                }
                let client = try TestClient(port: server.port)
                client.send(get("/") + get("/"))
                #expect(try awaitResponse(loop, client).body == bytes("first\n"))
                #expect(try awaitResponse(loop, client).body == bytes("first\n"))
                try runFor(loop, ms: 30)
                client.pump()
                #expect(client.received.isEmpty)
                #expect(server.tcp.stats.repliesDropped == 2)
            }
        }
    }
}
