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
            throw text.hasPrefix("https://")
                ? .unsupported("https (TLS) is not supported; use http://")
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
    public convenience init(
        loop: Loop, configuration: TcpServerConfiguration = TcpServerConfiguration(),
        limits: HttpLimits = HttpLimits()
    ) {
        self.init(
            tcp: TcpServer(loop: loop, configuration: configuration, framing: HttpRequestFraming(limits: limits)),
            limits: limits)
    }

    /// GETs `url`; `completion` runs exactly once, later. Throws (without calling it) when the request cannot start.
    /// `timeoutMs` bounds silence; `deadlineMs`, when given, the whole fetch (see `TcpServer.send`).
    public func get(
        _ url: HttpURL, timeoutMs: Int = 60_000, deadlineMs: Int? = nil,
        completion: @escaping (Result<HttpFetched, TcpError>) -> Void
    ) throws(TcpError) {
        let request =
            "GET \(url.target) HTTP/1.1\r\nHost: \(url.host):\(url.address.port)\r\n"
            + "User-Agent: loop-harness\r\nAccept: */*\r\n\r\n"
        let framing = HttpResponseFraming(limits: limits, isHead: false)
        try tcp.send(
            Array(request.utf8), to: url.address, framing: framing, timeoutMs: timeoutMs,
            deadlineMs: deadlineMs
        ) { result in
            completion(
                result.flatMap { bytes in
                    framing.parse(bytes).map { .success($0) } ?? .failure(.malformedReply)
                })
        }
    }
}
