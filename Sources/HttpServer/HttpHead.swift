/// The size limits of an HTTP message. Past them a request is answered with a
/// 4xx and its connection closed; a reply is refused as malformed.
public struct HttpLimits: Sendable {
    /// The request or status line and every header, with their line ends.
    public var maxHeaderBytes = 8 * 1024
    /// Header fields in one message.
    public var maxHeaderCount = 64
    /// The request target (path and query).
    public var maxTargetBytes = 2 * 1024
    /// The body, after de-chunking.
    public var maxBodyBytes = 64 * 1024

    /// The defaults: 8 KiB of head, 64 fields, a 2 KiB target, a 64 KiB body.
    public init() {}
}

/// An HTTP/1.x start line and header fields, parsed strictly: CRLF line ends,
/// token field names, no line folding, no bytes outside visible ASCII, space and tab.
struct HttpHead {
    /// The start line split at its first two spaces.
    var start: (String, String, String)
    /// Field names lowercased, in order.
    var fields: [(name: String, value: String)]
    /// Bytes up to and including the blank line.
    var length: Int

    func values(_ name: String) -> [String] { fields.filter { $0.name == name }.map(\.value) }

    /// The tokens of every `name` field (`Connection: keep-alive, Upgrade`), lowercased.
    func tokens(_ name: String) -> [String] {
        values(name).flatMap { $0.split(separator: ",") }.map { $0.trimmingSpaces.lowercased() }
    }

    /// The body length `Content-Length` declares: nil when absent; throws when it is
    /// not a number or two disagree (a request smuggling vector).
    func contentLength() throws(HttpHeadError) -> Int? {
        let declared = values("content-length")
        guard let first = declared.first else { return nil }
        guard declared.allSatisfy({ $0 == first }), !first.isEmpty, first.count <= 18,
            first.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let length = Int(first)
        else {
            throw .malformed("invalid Content-Length")
        }
        return length
    }

    /// Where the head ends (the index after the blank line), or nil if it has not
    /// ended within `limit` bytes.
    static func end(in bytes: ArraySlice<UInt8>, limit: Int) -> Int? {
        let start = bytes.startIndex
        let stop = min(bytes.endIndex, start + limit)
        var i = start
        while i + 3 < stop {
            if bytes[i + 3] != 0x0a {
                i += 1
                continue
            }
            if bytes[i] == 0x0d && bytes[i + 1] == 0x0a && bytes[i + 2] == 0x0d { return i + 4 - start }
            i += 1
        }
        return nil
    }

    /// Parses the head that ends at `length` (from `end(in:limit:)`).
    static func parse(_ bytes: ArraySlice<UInt8>, length: Int, limits: HttpLimits) throws(HttpHeadError) -> HttpHead {
        let head = bytes[bytes.startIndex..<(bytes.startIndex + length - 2)]
        var lines: [ArraySlice<UInt8>] = []
        var lineStart = head.startIndex
        var i = head.startIndex
        while i < head.endIndex {
            let byte = head[i]
            if byte == 0x0d {
                guard i + 1 < head.endIndex, head[i + 1] == 0x0a else { throw .malformed("a bare CR") }
                lines.append(head[lineStart..<i])
                i += 2
                lineStart = i
                continue
            }
            guard byte == 0x09 || (0x20...0x7e).contains(byte) else { throw .malformed("a control or non-ASCII byte") }
            i += 1
        }
        guard let startLine = lines.first, !startLine.isEmpty else { throw .malformed("no start line") }
        let parts = startLine.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else { throw .malformed("a malformed start line") }
        if parts[1].count > limits.maxTargetBytes { throw .targetTooLong }
        guard lines.count - 1 <= limits.maxHeaderCount else { throw .tooManyFields }
        var fields: [(name: String, value: String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: 0x3a) else { throw .malformed("a header line without a colon") }
            let name = line[line.startIndex..<colon]
            guard !name.isEmpty, name.allSatisfy(isTokenByte) else { throw .malformed("an invalid header name") }
            // Bytes, not Characters: the head is ASCII (checked above), where the two agree.
            var value = line[(colon + 1)...]
            while let first = value.first, first == 0x20 || first == 0x09 { value = value.dropFirst() }
            while let last = value.last, last == 0x20 || last == 0x09 { value = value.dropLast() }
            let lowercased = name.map { (0x41...0x5a).contains($0) ? $0 | 0x20 : $0 }
            fields.append((String(decoding: lowercased, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return HttpHead(
            start: (
                String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self),
                String(decoding: parts[2], as: UTF8.self)
            ),
            fields: fields, length: length)
    }

    /// RFC 9110's tchar. A `switch` over the bytes: an array of them built for every byte
    /// looked at was a tenth of what a small request cost.
    private static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            true
        default: false
        }
    }
}

/// The search for the blank line that ends a head, resumable: fed the same growing bytes
/// again, it goes on from where it stopped, so every byte is examined once however the
/// head arrives (a byte a read costs what a byte of a whole head costs). It stops at the
/// first byte no head holds (a control or non-ASCII byte, a CR without its LF, an LF
/// without its CR): garbage with no blank line in it (a TLS hello, another protocol,
/// bare-LF line ends) is refused at once rather than held until the request deadline.
struct HttpHeadScanner {
    /// Bytes examined, from the start of the message.
    private(set) var scanned = 0
    /// Where the head ends (the index after its blank line, from the start), once found.
    private(set) var end: Int?
    /// Why the bytes can never be a head, once seen.
    private(set) var malformation: String?
    /// How much of CR LF CR LF the bytes examined end with (0…3).
    private var matched = 0

    /// Examines `bytes` (the message so far, from its start) past the bytes already
    /// examined, up to `limit` from the start; how many it examined this time.
    mutating func scan(_ bytes: ArraySlice<UInt8>, limit: Int) -> Int {
        guard end == nil, malformation == nil else { return 0 }
        let first = scanned
        let stop = min(bytes.count, limit)
        var i = scanned
        scanning: while i < stop {
            let byte = bytes[bytes.startIndex + i]
            i += 1
            let afterCR = matched == 1 || matched == 3
            switch byte {
            case 0x0d where !afterCR:
                matched = matched == 2 ? 3 : 1
            case 0x0a where afterCR:
                if matched == 3 {
                    end = i
                    break scanning
                }
                matched = 2
            case 0x0a:
                malformation = "an LF without its CR"
                break scanning
            case 0x0d, 0x09, 0x20...0x7e:
                guard !afterCR else {
                    malformation = "a CR without its LF"
                    break scanning
                }
                matched = 0
            default:
                malformation = "a control or non-ASCII byte"
                break scanning
            }
        }
        scanned = i
        return i - first
    }
}

/// Why a head could not be read; each maps to the status a server answers with.
enum HttpHeadError: Error, Equatable {
    case malformed(String)
    case targetTooLong
    case tooManyFields

    var status: Int {
        switch self {
        case .malformed: 400
        case .targetTooLong: 414
        case .tooManyFields: 431
        }
    }

    var reason: String {
        switch self {
        case .malformed(let why): "malformed request: \(why)"
        case .targetTooLong: "request target too long"
        case .tooManyFields: "too many header fields"
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    var trimmingSpaces: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
