import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

/// An origin server on the loop that answers each path with raw response bytes
/// (`thenClose` for the close-delimited ones), and an HttpClient beside it.
private func withOrigin<R>(
    _ kind: LoopBackendKind, _ responses: [String: (String, Bool)],
    _ body: (Loop, HttpClient, UInt16) throws -> R
) throws -> R {
    try withTcpServer(kind, framing: HttpRequestFraming(limits: HttpLimits())) { loop, origin in
        origin.onRequest = { [unowned origin] request in
            let startLine = text(request.bytes).split(separator: "\r\n").first ?? ""
            let target = startLine.split(separator: " ").dropFirst().first.map(String.init) ?? ""
            let (response, close) = responses[target] ?? ("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false)
            origin.reply(bytes(response), to: request, thenClose: close)
        }
        return try withClient(loop) { tcp in
            try body(loop, HttpClient(tcp: tcp), origin.port)
        }
    }
}

/// Runs one GET and returns its result (its completion runs exactly once).
private func fetch(
    _ loop: Loop, _ client: HttpClient, _ url: String,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> Result<HttpFetched, TcpError> {
    var results: [Result<HttpFetched, TcpError>] = []
    try client.get(HttpURL(url), timeoutMs: 5_000) { results.append($0) }
    try runUntil(loop, sourceLocation: sourceLocation) { !results.isEmpty }
    try runFor(loop, ms: 20)
    #expect(results.count == 1, sourceLocation: sourceLocation)
    return results[0]
}

extension TcpServerLoopTests {
    @Suite struct HttpClientFetching {
        /// A reply framed by Content-Length, a chunked one (extensions and trailers),
        /// and one that ends when the server closes are each read whole; the first two
        /// leave the connection for reuse.
        @Test(arguments: LoopBackendKind.allCases)
        func bodiesOfEveryFraming(kind: LoopBackendKind) throws {
            let responses: [String: (String, Bool)] = [
                "/length": ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false),
                "/chunked": (
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n", false
                ),
                "/close": ("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", true),
                "/empty": ("HTTP/1.1 204 No Content\r\n\r\n", false),
            ]
            try withOrigin(kind, responses) { loop, client, port in
                let base = "http://127.0.0.1:\(port)"
                let length = try fetch(loop, client, base + "/length").get()
                #expect(length.status == 200 && length.body == bytes("hello"))
                let chunked = try fetch(loop, client, base + "/chunked").get()
                #expect(chunked.body == bytes("hello world"))
                let empty = try fetch(loop, client, base + "/empty").get()
                #expect(empty.status == 204 && empty.body.isEmpty)
                #expect(client.tcp.stats.connectionsReused == 2)
                let closed = try fetch(loop, client, base + "/close").get()
                #expect(closed.body == bytes("until the end"))
                #expect(client.tcp.stats.outgoingOpen == 0)
            }
        }

        /// A 301 is reported with its Location, not followed.
        /// Interim responses (100 Continue, 103 Early Hints) before the final one are
        /// skipped, and the final one is reported; a server that sends them without end is
        /// refused, not followed (nor recursed into).
        @Test(arguments: LoopBackendKind.allCases)
        func interimResponsesAreSkipped(kind: LoopBackendKind) throws {
            let endless = String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 100_000)
            let responses: [String: (String, Bool)] = [
                "/hints": (
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                        + "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal", false
                ),
                "/endless": (endless + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
            ]
            try withOrigin(kind, responses) { loop, client, port in
                let base = "http://127.0.0.1:\(port)"
                let hinted = try fetch(loop, client, base + "/hints").get()
                #expect(hinted.status == 200 && hinted.body == bytes("final"))
                #expect(hinted.field("link") == nil)
                // The connection stays usable: the interim heads were the reply's, not a next one.
                let again = try fetch(loop, client, base + "/hints").get()
                #expect(again.status == 200 && client.tcp.stats.connectionsReused == 1)
                #expect(throws: (any Error).self) { try fetch(loop, client, base + "/endless").get() }
            }
        }

        @Test(arguments: LoopBackendKind.allCases)
        func redirectIsReportedNotFollowed(kind: LoopBackendKind) throws {
            let responses: [String: (String, Bool)] = [
                "/old": ("HTTP/1.1 301 Moved Permanently\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n", false),
                "/new": ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnew", false),
            ]
            try withOrigin(kind, responses) { loop, client, port in
                let moved = try fetch(loop, client, "http://127.0.0.1:\(port)/old").get()
                #expect(moved.status == 301 && moved.field("location") == "/new")
                #expect(client.tcp.stats.exchangesCompleted == 1)
            }
        }

        /// Malformed replies end the fetch with `.malformedReply`, once: a chunk size
        /// that is not hex (a negative one must not move the parser backwards), a
        /// truncated body, two Content-Lengths, a status that is not a number.
        @Test(arguments: LoopBackendKind.allCases)
        func malformedRepliesFail(kind: LoopBackendKind) throws {
            let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            let responses: [String: (String, Bool)] = [
                "/minus2": (chunked + "-2\r\nab\r\n0\r\n\r\n", false),
                "/minus10": (chunked + "5\r\nhello\r\n-10\r\n0\r\n\r\n", false),
                "/plus": (chunked + "+5\r\nhello\r\n0\r\n\r\n", false),
                "/hexprefix": (chunked + "0x5\r\nhello\r\n0\r\n\r\n", false),
                "/truncated": ("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", true),
                "/twolengths": ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", false),
                "/status": ("HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n", false),
            ]
            try withOrigin(kind, responses) { loop, client, port in
                for path in responses.keys.sorted() {
                    let result = try fetch(loop, client, "http://127.0.0.1:\(port)\(path)")
                    switch result {
                    case .success(let fetched): Issue.record("\(path): fetched \(fetched.status) \(text(fetched.body))")
                    case .failure(let error): #expect(error == .malformedReply || error == .closedByPeer, "\(path)")
                    }
                }
            }
        }

        /// A status line is `HTTP/1.x`, a space, exactly three digits, a space and the
        /// reason; anything else is a malformed reply. Before, `Int(_:)` read the code:
        /// `+200` and `0200` were a 200, and `HTTP/1.10` passed for a version.
        @Test(arguments: LoopBackendKind.allCases)
        func malformedStatusLinesAreRefused(kind: LoopBackendKind) throws {
            let rest = "\r\nContent-Length: 2\r\n\r\nok"
            let malformed = [
                "HTTP/1.1 +200 OK", "HTTP/1.1 -200 OK", "HTTP/1.1 0200 OK", "HTTP/1.1 20 OK",
                "HTTP/1.1 2000 OK", "HTTP/1.1 +99 OK", "HTTP/1.1 2x0 OK", "HTTP/1.10 200 OK",
                "HTTP/1.x 200 OK", "http/1.1 200 OK", "HTTP/2.0 200 OK", "HTTP/1.1  200 OK",
                "HTTP/1.1 200OK", "HTTP/1.1 +100 Continue\r\n\r\nHTTP/1.1 200 OK",
            ]
            var responses: [String: (String, Bool)] = [:]
            for (index, line) in malformed.enumerated() { responses["/\(index)"] = (line + rest, false) }
            responses["/good"] = ("HTTP/1.0 200 OK" + rest, true)
            try withOrigin(kind, responses) { loop, client, port in
                for (index, line) in malformed.enumerated() {
                    switch try fetch(loop, client, "http://127.0.0.1:\(port)/\(index)") {
                    case .success(let fetched): Issue.record("\(line.debugDescription): fetched as a \(fetched.status)")
                    case .failure(let error): #expect(error == .malformedReply, "\(line.debugDescription)")
                    }
                }
                let good = try fetch(loop, client, "http://127.0.0.1:\(port)/good").get()
                #expect(good.status == 200 && good.body == bytes("ok"))
            }
        }

        /// A server trickling a byte every 100 ms never lets the silence timeout run out;
        /// the deadline ends the fetch all the same, once, with `.deadlinePassed`. Before,
        /// nothing did: the fetch was still open after 4 s (and would have been forever).
        @Test(arguments: LoopBackendKind.allCases)
        func deadlineEndsATrickledReply(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
                let origin = try TricklingOrigin(
                    loop, reply: bytes(head) + [UInt8](repeating: 0x61, count: 100_000),
                    piece: 1, everyMs: 100)
                defer { origin.close() }
                try withClient(loop) { tcp in
                    let client = HttpClient(tcp: tcp)
                    var results: [Result<HttpFetched, TcpError>] = []
                    let started = monotonicNanoseconds()
                    try client.get(HttpURL("http://127.0.0.1:\(origin.port)/"), timeoutMs: 1_000, deadlineMs: 1_500) {
                        results.append($0)
                    }
                    try runUntil(loop, timeoutMs: 4_000) { !results.isEmpty }
                    let elapsed = elapsedMs(since: started)
                    try runFor(loop, ms: 20)
                    #expect(results.count == 1)
                    if case .failure(let error) = results[0] {
                        #expect(error == .deadlinePassed)
                    } else {
                        Issue.record("fetched a reply that never ends: \(results[0])")
                    }
                    // Bytes kept moving: the silence timeout (1 s) never ran out (that would have
                    // been `.timedOut`), the deadline did. How many bytes came in 1.5 s depends on
                    // how loaded the machine is (a sanitizer's run sent fewer than ten).
                    #expect(origin.sent > 0 && elapsed >= 1_500, "ended after \(elapsed) ms, \(origin.sent) bytes")
                    #expect(tcp.stats.outgoingOpen == 0)
                }
            }
        }

        /// The deadline counts from when the fetch was asked for, on a clock read then and
        /// rounded up, not from the loop's `now`, which is the time of its last poll: asked
        /// 5.4 ms after that poll, a 10 ms deadline counted from it passed after 4.6 ms.
        @Test(arguments: LoopBackendKind.allCases)
        func aDeadlineNeverPassesEarly(kind: LoopBackendKind) throws {
            let clock = NanosecondClock(1_000_500_000) // 1000.5 ms
            var configuration = LoopConfiguration.unroutedTimerSignalsAccepted
            configuration.clock = clock.loopClock
            try withLoop(kind, configuration: configuration) { loop in
                let (listener, port) = loopbackListener(nonBlocking: true, backlog: 4)
                defer { close(listener) }
                try withClient(loop, .testing { $0.scanIntervalMs = 1 }) { tcp in
                    try loop.runOnce(maxWaitMs: 0) // the loop's `now` is 1000 from here
                    clock.nanoseconds = 1_005_900_000 // asked at 1005.9 ms
                    var endedAt: Int64 = -1
                    try tcp.send(bytes("ping\n"), to: .loopback(port: port), framing: LineFraming(), deadlineMs: 10) {
                        if case .failure(.deadlinePassed) = $0 { endedAt = clock.nanoseconds }
                    }
                    for step in 1...60 where endedAt < 0 {
                        clock.nanoseconds = 1_005_900_000 + Int64(step) * 500_000
                        try loop.runOnce(maxWaitMs: 0)
                    }
                    #expect(endedAt >= 1_015_900_000, "ended at \(endedAt) ns, asked at 1,005,900,000 with 10 ms")
                    #expect(endedAt > 0 && endedAt <= 1_017_900_000, "ended at \(endedAt) ns")
                }
            }
        }

        /// The deadline is the exchange's, not its connection's: a reply within it is
        /// fetched, and the connection, kept alive past that deadline, carries the next fetch.
        @Test(arguments: LoopBackendKind.allCases)
        func deadlineSparesAReplyWithinIt(kind: LoopBackendKind) throws {
            let responses: [String: (String, Bool)] = ["/": ("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false)]
            try withOrigin(kind, responses) { loop, client, port in
                var results: [Result<HttpFetched, TcpError>] = []
                try client.get(HttpURL("http://127.0.0.1:\(port)/"), timeoutMs: 5_000, deadlineMs: 300) {
                    results.append($0)
                }
                try runUntil(loop) { !results.isEmpty }
                try runFor(loop, ms: 600)
                try client.get(HttpURL("http://127.0.0.1:\(port)/"), timeoutMs: 5_000, deadlineMs: 5_000) {
                    results.append($0)
                }
                try runUntil(loop) { results.count == 2 }
                #expect(results.count == 2)
                #expect(results.allSatisfy { (try? $0.get().body) == bytes("ok") }, "\(results)")
                #expect(client.tcp.stats.connectionsReused == 1)
            }
        }

        /// A fetch from a port nothing listens on fails with `.connectFailed`:
        /// thrown by `get`, or given to the completion once.
        @Test(arguments: LoopBackendKind.allCases)
        func refusedFetch(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                try withClient(loop) { tcp in
                    let client = HttpClient(tcp: tcp)
                    var results: [Result<HttpFetched, TcpError>] = []
                    do {
                        try client.get(HttpURL("http://127.0.0.1:\(closedPort())/")) { results.append($0) }
                        try runUntil(loop) { !results.isEmpty }
                        try runFor(loop, ms: 20)
                        #expect(results.count == 1)
                        if case .failure(let error) = results[0] {
                            #expect(error == .connectFailed(errno: ECONNREFUSED))
                        }
                    } catch let error as TcpError {
                        #expect(error == .connectFailed(errno: ECONNREFUSED) && results.isEmpty)
                    }
                }
            }
        }

        /// The chunked-body parser on its own: what it accepts and what it refuses.
        @Test func chunkedParsing() {
            func end(_ body: String) -> Int?? { HttpResponseFraming.chunkedEnd(bytes(body)[...]) }
            #expect(end("5\r\nhello\r\n0\r\n\r\n") == .some(.some(15)))
            #expect(end("A\r\n0123456789\r\n0\r\n\r\n") == .some(.some(20)))
            #expect(end("5\r\nhel") == .none)
            #expect(end("5\r\nhelloXX0\r\n\r\n") == .some(.none))
            for bad in [
                "-2\r\nab\r\n0\r\n\r\n", "-10\r\n0\r\n\r\n", "+5\r\nhello\r\n0\r\n\r\n", "0x5\r\nhello\r\n0\r\n\r\n",
                " \r\n0\r\n\r\n", "5 5\r\nhello\r\n0\r\n\r\n",
            ] {
                #expect(end(bad) == .some(.none), "\(bad.debugDescription)")
            }
        }
    }
}
