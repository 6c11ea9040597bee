import Compat
import Glibc

/// An `http://` URL the client can fetch: plain HTTP/1.1 to an IPv4 address.
public struct HttpURL: Sendable, Equatable, CustomStringConvertible {
    /// The host as the URL names it (a name or a dotted quad).
    public let host: String
    /// Where the host resolved to, with the URL's port (80 unless given).
    public let address: PeerAddress
    /// The request target, `/` at least.
    public let target: String

    public var description: String { "http://\(host):\(address.port)\(target)" }

    /// Parses and resolves `text`. `localhost` and dotted quads need no lookup; other
    /// names go through `getaddrinfo`, which blocks: resolve before the loop runs.
    public init(_ text: String) throws(HttpURLError) {
        guard text.hasPrefix("http://") else {
            throw text.hasPrefix("https://") ? .unsupported("https (TLS) is not supported; use http://")
                                             : .unsupported("only http:// URLs")
        }
        let rest = text.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        var target = String(rest.dropFirst(authority.count).prefix { $0 != "#" })
        if target.isEmpty { target = "/" } else if target.first == "?" { target = "/" + target }
        guard !authority.isEmpty, !authority.contains("@") else { throw .malformed("no host, or a user part") }
        var host = String(authority)
        var port: UInt16 = 80
        if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            let portText = authority[authority.index(after: colon)...]
            guard let parsed = UInt16(portText), parsed > 0, portText.allSatisfy(\.isNumber) else {
                throw .malformed("port \(portText) is not 1…65535")
            }
            port = parsed
        }
        guard !host.isEmpty, target.utf8.allSatisfy({ (0x21...0x7e).contains($0) }) else {
            throw .malformed("a URL with spaces or control characters")
        }
        self.host = host
        self.target = target
        self.address = PeerAddress(ip: try Self.resolve(host), port: port)
    }

    private static func resolve(_ host: String) throws(HttpURLError) -> UInt32 {
        if host == "localhost" { return 0x7f00_0001 }
        if let ip = PeerAddress.parseIPv4(host) { return ip }
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &result)
        defer { if let result { freeaddrinfo(result) } }
        guard status == 0, let info = result, let raw = info.pointee.ai_addr else {
            throw .unresolved(host, String(cString: gai_strerror(status)))
        }
        let address = raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
        return PeerAddress(address).ip
    }
}

/// Why a text is not a URL the client can fetch.
public enum HttpURLError: Error, Equatable, CustomStringConvertible {
    /// Not an `http://` URL (https among them), and why.
    case unsupported(String)
    /// An `http://` URL that does not parse, and why.
    case malformed(String)
    /// The host name did not resolve to an IPv4 address: the name, and the resolver's reason.
    case unresolved(String, String)

    public var description: String {
        switch self {
        case .unsupported(let why), .malformed(let why): why
        case .unresolved(let host, let why): "cannot resolve \(host): \(why)"
        }
    }
}

/// A response as the client read it.
public struct HttpFetched: Sendable {
    /// The status code of the final response.
    public let status: Int
    /// Field names lowercased, in order.
    public let fields: [(name: String, value: String)]
    /// The body, de-chunked.
    public let body: [UInt8]

    /// The value of the first field named `name` (any case), if there is one.
    public func field(_ name: String) -> String? {
        let name = name.lowercased()
        return fields.first { $0.name == name }?.value
    }
}

/// Frames one HTTP/1.x response: a fixed `Content-Length`, a chunked body, or a
/// body that ends when the server closes. HEAD, 101, 204 and 304 have none. Interim
/// responses (100, 102, 103…) before the final one are part of its frame and skipped.
struct HttpResponseFraming: TcpFraming {
    let limits: HttpLimits
    let isHead: Bool

    /// Interim responses a reply may start with; a server that sends more is refused
    /// rather than followed without end.
    static let maxInterimResponses = 8

    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        var start = bytes.startIndex
        for _ in 0...Self.maxInterimResponses {
            guard let interim = interimHeadLength(bytes[start...]) else {
                switch frameFinal(bytes[start...], atEnd: atEnd) {
                case .complete(let length, let reusable):
                    return .complete(length: start - bytes.startIndex + length, reusable: reusable)
                case let other: return other
                }
            }
            start += interim
        }
        return .refused(reply: [])
    }

    /// The length of the interim response `bytes` begin with, if they begin with a whole one.
    private func interimHeadLength(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard let headLength = HttpHead.end(in: bytes, limit: limits.maxHeaderBytes),
              let head = try? HttpHead.parse(bytes, length: headLength, limits: limits),
              let status = Int(head.start.1), (100...199).contains(status), status != 101 else { return nil }
        return headLength
    }

    private func frameFinal(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        guard let headLength = HttpHead.end(in: bytes, limit: limits.maxHeaderBytes) else {
            return bytes.count >= limits.maxHeaderBytes || atEnd ? .refused(reply: []) : .incomplete
        }
        guard let head = try? HttpHead.parse(bytes, length: headLength, limits: limits),
              head.start.0.hasPrefix("HTTP/1."), let status = Int(head.start.1), (100...999).contains(status) else {
            return .refused(reply: [])
        }
        let reusable = HttpRequestFraming.keepAlive(HttpHead(start: ("", "", head.start.0), fields: head.fields, length: 0))
        if isHead || status < 200 || status == 204 || status == 304 {
            return .complete(length: headLength, reusable: reusable)
        }
        if head.tokens("transfer-encoding").last == "chunked" {
            switch Self.chunkedEnd(bytes.dropFirst(headLength)) {
            case .some(.some(let bodyLength)): return .complete(length: headLength + bodyLength, reusable: reusable)
            case .some(.none): return .refused(reply: [])
            case .none: return atEnd ? .refused(reply: []) : .incomplete
            }
        }
        let declared: Int?
        do { declared = try head.contentLength() } catch { return .refused(reply: []) }
        if let length = declared {
            if bytes.count >= headLength + length { return .complete(length: headLength + length, reusable: reusable) }
            return atEnd ? .refused(reply: []) : .incomplete
        }
        // No length: the body ends when the server closes the connection.
        return atEnd ? .complete(length: bytes.count, reusable: false) : .incomplete
    }

    /// The length of a chunked body: nil while incomplete, `.some(nil)` when malformed.
    static func chunkedEnd(_ body: ArraySlice<UInt8>) -> Int?? {
        var i = body.startIndex
        while true {
            guard let lineEnd = lineEnd(body, from: i) else { return nil }
            guard let size = chunkSize(body[i..<lineEnd]) else { return .some(nil) }
            i = lineEnd + 2
            if size == 0 {
                // Trailer fields, then the blank line.
                while true {
                    guard let end = Self.lineEnd(body, from: i) else { return nil }
                    if end == i { return .some(end + 2 - body.startIndex) }
                    i = end + 2
                }
            }
            guard body.endIndex - i >= size + 2 else { return nil }
            guard body[i + size] == 0x0d, body[i + size + 1] == 0x0a else { return .some(nil) }
            i += size + 2
        }
    }

    /// The size a chunk line declares (before any `;extension`): hex digits only.
    /// `Int(_:radix:)` alone also takes a sign, and a negative size moved the parser
    /// back into bytes it had read (an index out of bounds: a server could crash the
    /// client with `-10`).
    static func chunkSize(_ line: ArraySlice<UInt8>) -> Int? {
        let sizeText = String(decoding: line.prefix { $0 != 0x3b }, as: UTF8.self).trimmingSpaces
        guard !sizeText.isEmpty, sizeText.count <= 15, sizeText.allSatisfy(\.isHexDigit) else { return nil }
        return Int(sizeText, radix: 16)
    }

    private static func lineEnd(_ bytes: ArraySlice<UInt8>, from start: Int) -> Int? {
        var i = start
        while i + 1 < bytes.endIndex {
            if bytes[i] == 0x0d && bytes[i + 1] == 0x0a { return i }
            i += 1
        }
        return nil
    }

    /// The final response in `bytes` (already framed whole, interim responses first).
    func parse(_ bytes: [UInt8]) -> HttpFetched? {
        var all = bytes[...]
        while let interim = interimHeadLength(all) { all = all.dropFirst(interim) }
        guard let headLength = HttpHead.end(in: all, limit: limits.maxHeaderBytes),
              let head = try? HttpHead.parse(all, length: headLength, limits: limits),
              let status = Int(head.start.1) else { return nil }
        let rest = all.dropFirst(headLength)
        var body = Array(rest)
        if head.tokens("transfer-encoding").last == "chunked" && !isHead {
            body = Self.dechunk(rest)
        }
        return HttpFetched(status: status, fields: head.fields, body: body)
    }

    private static func dechunk(_ chunked: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        var i = chunked.startIndex
        while let end = lineEnd(chunked, from: i) {
            guard let size = chunkSize(chunked[i..<end]), size > 0, end + 2 + size <= chunked.endIndex else { break }
            out += chunked[(end + 2)..<(end + 2 + size)]
            i = end + 2 + size + 2
        }
        return out
    }
}

/// Fetches over a TcpServer's outgoing side: one GET, keep-alive reuse of the
/// connection to the same server, redirects reported (not followed).
public final class HttpClient {
    /// The TcpServer whose outgoing side carries the requests (and pools their connections).
    public let tcp: TcpServer
    /// The size limits a reply must keep within.
    public let limits: HttpLimits

    /// A client fetching over `tcp`, whose replies must keep within `limits`.
    public init(tcp: TcpServer, limits: HttpLimits = HttpLimits()) {
        self.tcp = tcp
        self.limits = limits
    }

    /// A client with a TcpServer of its own that never listens; replies up to `configuration.maxMessageBytes`.
    public convenience init(loop: Loop, configuration: TcpServerConfiguration = TcpServerConfiguration(),
                            limits: HttpLimits = HttpLimits()) {
        self.init(tcp: TcpServer(loop: loop, configuration: configuration, framing: HttpRequestFraming(limits: limits)),
                  limits: limits)
    }

    /// GETs `url`; `completion` runs exactly once, later. Throws (without calling it) when the request cannot start.
    public func get(_ url: HttpURL, timeoutMs: Int = 60_000,
                    completion: @escaping (Result<HttpFetched, TcpError>) -> Void) throws(TcpError) {
        let request = "GET \(url.target) HTTP/1.1\r\nHost: \(url.host):\(url.address.port)\r\n"
            + "User-Agent: loop-harness\r\nAccept: */*\r\n\r\n"
        let framing = HttpResponseFraming(limits: limits, isHead: false)
        try tcp.send(Array(request.utf8), to: url.address, framing: framing, timeoutMs: timeoutMs) { result in
            completion(result.flatMap { bytes in
                framing.parse(bytes).map { .success($0) } ?? .failure(.malformedReply)
            })
        }
    }
}
