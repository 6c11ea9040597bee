/// Frames HTTP/1.x requests for the TcpServer: a head within the limits, then the
/// body `Content-Length` declares. Anything else is refused with its 4xx/5xx and
/// the connection closed, and counted by status.
///
/// A request that arrives in pieces is not examined again from its start at each read:
/// what the last read left of each connection's request (where the search for the blank
/// line stopped; once the head is parsed, the length of the whole request) is kept until
/// its verdict, so a head dripped a byte at a time costs work in proportion to its bytes,
/// not to their square.
final class HttpRequestFraming: TcpFraming {
    let limits: HttpLimits
    /// Refusals by status (400, 413, 431, …), including the server's 408 and oversize.
    private(set) var refusals: [Int: Int] = [:]
    /// Bytes the head scanner has examined, over every call: what dripped heads cost.
    private(set) var headBytesScanned = 0
    /// What the last read left of each connection's incomplete request (`frame(_:atEnd:of:)`),
    /// until its verdict or the connection's close.
    private var pending: [TcpConnectionID: Pending] = [:]
    /// The head of the request last framed whole, and its connection: the server takes it
    /// (`takeFramedHead`) rather than parse the same bytes a second time.
    private var framedHead: (connection: TcpConnectionID, head: HttpHead)?

    private struct Pending {
        var scanner: HttpHeadScanner
        /// The request's whole length, once its head is parsed: only its body is awaited.
        var total: Int?
        /// The bytes there were: the buffer holds these and more at the next call.
        var count: Int
    }

    init(limits: HttpLimits) {
        self.limits = limits
    }

    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        frameAfresh(bytes, atEnd: atEnd, of: nil)
    }

    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool, of connection: TcpConnectionID) -> TcpFrame {
        if let entry = pending.removeValue(forKey: connection), !atEnd, bytes.count >= entry.count {
            var scanner = entry.scanner
            headBytesScanned += scanner.scan(bytes, limit: limits.maxHeaderBytes)
            let stillIncomplete =
                if let total = entry.total { bytes.count < total } else {
                    scanner.end == nil && scanner.malformation == nil && bytes.count < limits.maxHeaderBytes
                }
            if stillIncomplete {
                remember(connection, scanner, total: entry.total, bytes)
                return .incomplete
            }
        }
        return frameAfresh(bytes, atEnd: atEnd, of: connection)
    }

    func connectionClosed(_ connection: TcpConnectionID) {
        pending[connection] = nil
    }

    /// The verdict from the first byte; an incomplete request is remembered for the next read.
    private func frameAfresh(_ bytes: ArraySlice<UInt8>, atEnd: Bool, of connection: TcpConnectionID?) -> TcpFrame {
        var scanner = HttpHeadScanner()
        headBytesScanned += scanner.scan(bytes, limit: limits.maxHeaderBytes)
        guard let headLength = scanner.end else {
            if bytes.count >= limits.maxHeaderBytes { return refuse(431, "request header too large") }
            if let why = scanner.malformation { return refuse(400, "malformed request: \(why)") }
            if atEnd && !bytes.isEmpty { return refuse(400, "incomplete request") }
            if let connection { remember(connection, scanner, total: nil, bytes) }
            return .incomplete
        }
        let head: HttpHead
        let bodyLength: Int
        do throws(HttpHeadError) {
            head = try HttpHead.parse(bytes, length: headLength, limits: limits)
            bodyLength = try head.contentLength() ?? 0
        } catch {
            return refuse(error.status, error.reason)
        }
        // The head's third part is the rest of its first line (a status line's reason has
        // spaces): in a request line a space there is a fourth word, malformed (400), not
        // an unsupported version (505).
        if head.start.2.contains(" ") {
            return refuse(400, "malformed request: a request line of more than three words")
        }
        guard head.start.2 == "HTTP/1.1" || head.start.2 == "HTTP/1.0" else {
            if head.start.2.hasPrefix("HTTP/") { return refuse(505, "only HTTP/1.0 and HTTP/1.1") }
            return refuse(400, "malformed request: no HTTP version")
        }
        // A chunked (or otherwise encoded) request body is not supported: the console never needs one.
        if !head.values("transfer-encoding").isEmpty { return refuse(501, "Transfer-Encoding is not supported") }
        guard bodyLength <= limits.maxBodyBytes else { return refuse(413, "request body too large") }
        if let problem = Self.hostProblem(head) { return refuse(400, "malformed request: \(problem)") }
        let total = headLength + bodyLength
        guard bytes.count >= total else {
            if atEnd { return refuse(400, "incomplete request body") }
            if let connection { remember(connection, scanner, total: total, bytes) }
            return .incomplete
        }
        if let connection { framedHead = (connection, head) }
        return .complete(length: total, reusable: Self.keepAlive(head))
    }

    /// The head of the request just framed whole on `connection`, once; nil for another.
    func takeFramedHead(_ connection: TcpConnectionID) -> HttpHead? {
        defer { framedHead = nil }
        guard let framedHead, framedHead.connection == connection else { return nil }
        return framedHead.head
    }

    private func remember(
        _ connection: TcpConnectionID, _ scanner: HttpHeadScanner, total: Int?,
        _ bytes: ArraySlice<UInt8>
    ) {
        pending[connection] = Pending(scanner: scanner, total: total, count: bytes.count)
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host, any request at most
    /// one, and it must be a `host[:port]`. Two Hosts let a front end and this server
    /// disagree on the site asked for; none leaves the server to guess it.
    static func hostProblem(_ head: HttpHead) -> String? {
        let hosts = head.values("host")
        if hosts.count > 1 { return "more than one Host field" }
        guard let host = hosts.first else {
            return head.start.2 == "HTTP/1.1" ? "no Host field (HTTP/1.1 requires one)" : nil
        }
        return HttpAuthority(parsing: host) == nil ? "an invalid Host field" : nil
    }

    static func keepAlive(_ head: HttpHead) -> Bool {
        let connection = head.tokens("connection")
        if head.start.2 == "HTTP/1.0" { return connection.contains("keep-alive") }
        return !connection.contains("close")
    }

    var oversizedReply: [UInt8] { refusal(413, "request too large") }
    var timedOutReply: [UInt8] { refusal(408, "request not received in time") }

    private func refuse(_ status: Int, _ reason: String) -> TcpFrame {
        .refused(reply: refusal(status, reason))
    }

    /// The refusal's bytes; counted here, as every refusal is built once and sent.
    func refusal(_ status: Int, _ reason: String) -> [UInt8] {
        refusals[status, default: 0] += 1
        return HttpResponse.text(status, reason).serialized(keepAlive: false)
    }
}
