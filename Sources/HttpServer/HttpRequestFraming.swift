/// Frames HTTP/1.x requests for the TcpServer: a head within the limits, then the
/// body `Content-Length` declares. Anything else is refused with its 4xx/5xx and
/// the connection closed, and counted by status.
final class HttpRequestFraming: TcpFraming {
    let limits: HttpLimits
    /// Refusals by status (400, 413, 431, …), including the server's 408 and oversize.
    private(set) var refusals: [Int: Int] = [:]

    init(limits: HttpLimits) {
        self.limits = limits
    }

    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        guard let headLength = HttpHead.end(in: bytes, limit: limits.maxHeaderBytes) else {
            if bytes.count >= limits.maxHeaderBytes { return refuse(431, "request header too large") }
            if HttpHead.cannotBecomeHead(bytes, limit: limits.maxHeaderBytes) {
                return refuse(400, "malformed request: not an HTTP head")
            }
            if atEnd && !bytes.isEmpty { return refuse(400, "incomplete request") }
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
        if head.start.2.contains(" ") { return refuse(400, "malformed request: a request line of more than three words") }
        guard head.start.2 == "HTTP/1.1" || head.start.2 == "HTTP/1.0" else {
            if head.start.2.hasPrefix("HTTP/") { return refuse(505, "only HTTP/1.0 and HTTP/1.1") }
            return refuse(400, "malformed request: no HTTP version")
        }
        // A chunked (or otherwise encoded) request body is not supported: the console never needs one.
        if !head.values("transfer-encoding").isEmpty { return refuse(501, "Transfer-Encoding is not supported") }
        guard bodyLength <= limits.maxBodyBytes else { return refuse(413, "request body too large") }
        if let problem = Self.hostProblem(head) { return refuse(400, "malformed request: \(problem)") }
        let total = headLength + bodyLength
        guard bytes.count >= total else { return atEnd ? refuse(400, "incomplete request body") : .incomplete }
        return .complete(length: total, reusable: Self.keepAlive(head))
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request needs exactly one Host, any request at most
    /// one, and it must be a `host[:port]`. Two Hosts let a front end and this server
    /// disagree on the site asked for; none leaves the server to guess it.
    static func hostProblem(_ head: HttpHead) -> String? {
        let hosts = head.values("host")
        if hosts.count > 1 { return "more than one Host field" }
        guard let host = hosts.first else { return head.start.2 == "HTTP/1.1" ? "no Host field (HTTP/1.1 requires one)" : nil }
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
