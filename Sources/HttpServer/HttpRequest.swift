import Compat

/// One HTTP/1.x request, whole (head and body).
public struct HttpRequest: Sendable {
    /// The method as sent (`GET`, `POST` …).
    public let method: String
    /// The request target as sent (`/status.json?x=1`).
    public let target: String
    /// The target up to `?`.
    public var path: Substring { target[..<(target.utf8.firstIndex(of: UInt8(ascii: "?")) ?? target.endIndex)] }
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
        // By byte (every request's Host goes through here): a byte that is not ASCII
        // fails the host's check below, as the Character it belongs to did.
        let all = Array(text.utf8)
        var bytes = all[...]
        var portPart: ArraySlice<UInt8>?
        if let colon = all.lastIndex(of: 0x3a), !all[colon...].contains(0x5d) { // ':', no ']' after it
            bytes = all[..<colon]
            portPart = all[(colon + 1)...]
        }
        if let digits = portPart, !digits.isEmpty {
            guard digits.count <= 5, digits.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
            let port = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            guard port <= 65_535 else { return nil }
            self.port = UInt16(port)
        } else {
            self.port = nil
        }
        if bytes.first == UInt8(ascii: "[") {
            guard bytes.count > 2, bytes.last == UInt8(ascii: "]"),
                bytes.dropFirst().dropLast().allSatisfy({
                    Self.isHexDigit($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".")
                })
            else { return nil }
        } else {
            guard bytes.allSatisfy(Self.isRegNameByte) else { return nil }
        }
        // The bytes are ASCII (checked above): lowercase them only if one is upper case.
        host =
            bytes.contains(where: { (0x41...0x5a).contains($0) })
            ? String(decoding: bytes.map { (0x41...0x5a).contains($0) ? $0 | 0x20 : $0 }, as: UTF8.self)
            : String(decoding: bytes, as: UTF8.self)
    }

    private static func isHexDigit(_ b: UInt8) -> Bool {
        (0x30...0x39).contains(b) || (0x41...0x46).contains(b) || (0x61...0x66).contains(b)
    }

    /// A `switch`: an array of the bytes built for every byte looked at cost more than the rest of the parse.
    private static func isRegNameByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "!"),
            UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="),
            UInt8(ascii: "%"):
            true
        default: false
        }
    }
}
