import Compat

/// Answers one request, once. A handler may keep it and answer from a later callback.
public struct HttpResponder {
    let server: HttpServer
    let request: TcpRequest
    let keepAlive: Bool
    let isHead: Bool

    /// Sends `response`; `thenClose` ends the connection after it. False when the
    /// connection is already gone (the reply is dropped and counted).
    @discardableResult
    public func respond(_ response: HttpResponse, thenClose: Bool = false) -> Bool {
        server.count(response.status)
        let keep = keepAlive && !thenClose
        return server.tcp.reply(
            response.serialized(keepAlive: keep, includeBody: !isHead), to: request, thenClose: !keep)
    }

    /// Sends a response serialized beforehand, its bytes as they are.
    @discardableResult
    public func respond(_ prepared: HttpPreparedResponse, thenClose: Bool = false) -> Bool {
        server.count(prepared.status)
        let keep = keepAlive && !thenClose
        return server.tcp.reply(prepared.bytes(keepAlive: keep, includeBody: !isHead), to: request, thenClose: !keep)
    }
}

/// What the HTTP server counts beyond its TcpServer.
public struct HttpServerStats: Sendable, Equatable {
    /// Well-formed requests handed to the handler.
    public var requests = 0
    /// Responses sent with a 2xx status.
    public var responses2xx = 0
    /// Responses sent with a 3xx status.
    public var responses3xx = 0
    /// Responses sent with a 4xx status, refusals included.
    public var responses4xx = 0
    /// Responses sent with a 5xx status.
    public var responses5xx = 0
    /// Requests refused before a handler saw them (malformed, too large, too slow), by status.
    public var refusedByStatus: [Int: Int] = [:]

    /// Every counter by name, for a status page.
    public var fields: [(String, Int)] {
        [
            ("requests", requests), ("responses2xx", responses2xx), ("responses3xx", responses3xx),
            ("responses4xx", responses4xx), ("responses5xx", responses5xx),
        ]
            + refusedByStatus.sorted { $0.key < $1.key }.map { ("refused\($0.key)", $0.value) }
    }
}

/// HTTP/1.1 on a TcpServer: requests framed and parsed within `HttpLimits`,
/// keep-alive, pipelined requests answered in order, and every malformed,
/// oversized or too slow request answered with its 4xx and closed.
public final class HttpServer {
    /// The TcpServer underneath (its configuration, stats and connections).
    public let tcp: TcpServer
    /// The size limits every request must keep within.
    public let limits: HttpLimits
    /// Called with each well-formed request; must lead to exactly one `respond`.
    public var handler: (HttpRequest, HttpResponder) -> Void = { _, responder in
        responder.respond(.text(404, "not found"))
    }
    let framing: HttpRequestFraming
    private var counted = HttpServerStats()

    /// An HTTP server on `loop`; it listens once `listen(on:)` is called.
    public init(
        loop: Loop, configuration: TcpServerConfiguration = TcpServerConfiguration(), limits: HttpLimits = HttpLimits()
    ) {
        var configuration = configuration
        // The framing refuses past its own limits first, with the precise status.
        configuration.maxMessageBytes = limits.maxHeaderBytes + limits.maxBodyBytes + 1
        configuration.refusalReply = HttpResponse.text(503, "too many connections").serialized(keepAlive: false)
        self.limits = limits
        self.framing = HttpRequestFraming(limits: limits)
        self.tcp = TcpServer(loop: loop, configuration: configuration, framing: framing)
        tcp.onRequest = { [unowned self] request in self.received(request) }
    }

    /// What the server has counted so far.
    public var stats: HttpServerStats {
        var stats = counted
        stats.refusedByStatus = framing.refusals
        if tcp.stats.refusedDescriptors + tcp.stats.refusedAtLimit > 0 {
            stats.refusedByStatus[503, default: 0] += tcp.stats.refusedDescriptors + tcp.stats.refusedAtLimit
        }
        return stats
    }

    /// Listens on `address` (port 0: any free port); the address it got.
    @discardableResult
    public func listen(on address: PeerAddress) throws(TcpError) -> PeerAddress {
        try tcp.listen(on: address)
    }

    /// Closes the listener and every connection.
    public func close() { tcp.close() }

    private func received(_ message: TcpRequest) {
        counted.requests += 1
        let bytes = message.bytes[...]
        // The framing accepted these bytes: the head parses and the length is right. It
        // parsed the head of the request it has just framed; others are parsed here.
        guard
            let head = framing.takeFramedHead(message.connection).flatMap({ $0.length <= bytes.count ? $0 : nil })
                ?? HttpHead.end(in: bytes, limit: limits.maxHeaderBytes).flatMap({
                    try? HttpHead.parse(bytes, length: $0, limits: limits)
                })
        else {
            let responder = HttpResponder(server: self, request: message, keepAlive: false, isHead: false)
            responder.respond(.text(400, "malformed request"), thenClose: true)
            return
        }
        let request = HttpRequest(
            method: head.start.0, target: head.start.1, version: head.start.2,
            fields: head.fields, body: Array(bytes[(bytes.startIndex + head.length)...]),
            peer: message.peer, keepAlive: HttpRequestFraming.keepAlive(head))
        let responder = HttpResponder(
            server: self, request: message, keepAlive: request.keepAlive,
            isHead: request.method == "HEAD")
        handler(request, responder)
    }

    func count(_ status: Int) {
        switch status {
        case 200..<300: counted.responses2xx += 1
        case 300..<400: counted.responses3xx += 1
        case 400..<500: counted.responses4xx += 1
        default: counted.responses5xx += 1
        }
    }
}
