import Compat

/// One HTTP/1.x request, whole (head and body).
public struct HttpRequest: Sendable {
    /// The method as sent (`GET`, `POST` …).
    public let method: String
    /// The request target as sent (`/status.json?x=1`).
    public let target: String
    /// The target up to `?`.
    public var path: Substring { target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0] }
    /// `HTTP/1.0` or `HTTP/1.1`.
    public let version: String
    /// Field names lowercased, in order.
    public let fields: [(name: String, value: String)]
    /// The body, de-chunked; empty when there is none.
    public let body: [UInt8]
    /// The client's address.
    public let peer: PeerAddress
    /// The Host field parsed: the server refuses an HTTP/1.1 request without one, and any
    /// request with two or with one that is not `host[:port]`, so it is nil only for an
    /// HTTP/1.0 request that left it out.
    public var authority: HttpAuthority? { field("host").flatMap(HttpAuthority.init(parsing:)) }
    /// The connection stays open after the response (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    public let keepAlive: Bool

    /// The first value of a field, by its case-insensitive name.
    public func field(_ name: String) -> String? {
        let name = name.lowercased()
        return fields.first { $0.name == name }?.value
    }
}

/// A `host[:port]` as a Host field (or an origin, after its `http://`) names it: the host
/// lowercased, the port when one is given. RFC 3986's uri-host: a registered name or IPv4
/// address (letters, digits and `-._~!$&'()*+,;=%`) or a bracketed IPv6 literal.
public struct HttpAuthority: Sendable, Equatable {
    /// The host, lowercased; empty when the field is.
    public let host: String
    /// The port given, if any (`http` means 80 without one).
    public let port: UInt16?

    /// Nil when `text` is not a uri-host with an optional port: userinfo (`user@`), a path,
    /// spaces, a port that is not a number up to 65535.
    public init?(parsing text: String) {
        var hostPart = Substring(text)
        var portPart: Substring?
        if let colon = text.lastIndex(of: ":"), !text[colon...].contains("]") {
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        if let digits = portPart, !digits.isEmpty {
            guard digits.count <= 5, digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                let port = Int(digits), port <= 65_535
            else { return nil }
            self.port = UInt16(port)
        } else {
            self.port = nil
        }
        let bytes = Array(hostPart.utf8)
        if bytes.first == UInt8(ascii: "[") {
            guard bytes.count > 2, bytes.last == UInt8(ascii: "]"),
                bytes.dropFirst().dropLast().allSatisfy({
                    Self.isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".")
                })
            else { return nil }
        } else {
            guard bytes.allSatisfy(Self.isRegNameByte) else { return nil }
        }
        host = String(decoding: bytes, as: UTF8.self).lowercased()
    }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b)
    }

    private static func isRegNameByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: return true
        default: return Array("-._~!$&'()*+,;=%".utf8).contains(b)
        }
    }
}

/// An HTTP response to send.
public struct HttpResponse: Sendable, Equatable {
    /// The status code.
    public var status: Int
    /// Header fields, in order.
    public var fields: [(name: String, value: String)]
    /// The body.
    public var body: [UInt8]

    /// A response with `status`, `fields` and `body`.
    public init(status: Int, fields: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.fields = fields
        self.body = body
    }

    public static func == (a: HttpResponse, b: HttpResponse) -> Bool {
        a.status == b.status && a.body == b.body && a.fields.map(\.name) == b.fields.map(\.name)
            && a.fields.map(\.value) == b.fields.map(\.value)
    }

    /// A short text body (the reason, for errors) with its type.
    public static func text(_ status: Int, _ text: String) -> HttpResponse {
        HttpResponse(
            status: status, fields: [("Content-Type", "text/plain; charset=utf-8")], body: Array((text + "\n").utf8))
    }

    /// The value of the first field named `name` (any case), if there is one.
    public func field(_ name: String) -> String? {
        let name = name.lowercased()
        return fields.first { $0.name.lowercased() == name }?.value
    }

    /// The bytes on the wire: status line, the fields, `Content-Length` and
    /// `Connection` from the server's decision, and the body (none for HEAD).
    func serialized(keepAlive: Bool, includeBody: Bool = true) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(HttpResponse.reason(status))\r\n"
        for (name, value) in fields where !["content-length", "connection"].contains(name.lowercased()) {
            head += "\(name): \(value)\r\n"
        }
        head += "Content-Length: \(body.count)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n\r\n"
        return Array(head.utf8) + (includeBody ? body : [])
    }

    /// The reason phrase the status line carries for `status`.
    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 301: "Moved Permanently"
        case 302: "Found"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 421: "Misdirected Request"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status"
        }
    }
}
