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
    ///
    /// Written into one buffer of the right size, byte by byte where it must be: the
    /// head was a `String` built by interpolation, a tenth of a small reply's cost.
    func serialized(keepAlive: Bool, includeBody: Bool = true) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(headCapacity + (includeBody ? body.count : 0))
        writeHead(keepAlive: keepAlive, into: &out)
        if includeBody { out.append(contentsOf: body) }
        return out
    }

    /// Room for the head: the fields, the status line and the two fields the server adds.
    private var headCapacity: Int {
        fields.reduce(96) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 }
    }

    private func writeHead(keepAlive: Bool, into out: inout [UInt8]) {
        out.append(contentsOf: "HTTP/1.1 ".utf8)
        Self.writeDecimal(status, into: &out)
        out.append(0x20)
        out.append(contentsOf: HttpResponse.reason(status).utf8)
        out.append(contentsOf: [0x0d, 0x0a])
        for (name, value) in fields where !Self.isServerField(name) {
            out.append(contentsOf: name.utf8)
            out.append(contentsOf: [0x3a, 0x20]) // ": "
            out.append(contentsOf: value.utf8)
            out.append(contentsOf: [0x0d, 0x0a])
        }
        out.append(contentsOf: "Content-Length: ".utf8)
        Self.writeDecimal(body.count, into: &out)
        out.append(
            contentsOf: (keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n").utf8)
    }

    /// `Content-Length` and `Connection` (any case): the server writes its own.
    private static func isServerField(_ name: String) -> Bool {
        let count = name.utf8.count
        guard count == 14 || count == 10 else { return false }
        return name.utf8.elementsEqual((count == 14 ? "content-length" : "connection").utf8) { byte, lower in
            byte == lower || ((0x61...0x7a).contains(lower) && byte | 0x20 == lower)
        }
    }

    /// Decimal digits of a non-negative number (a status, a length).
    private static func writeDecimal(_ value: Int, into out: inout [UInt8]) {
        var magnitude = value.magnitude
        let start = out.count
        repeat {
            out.append(0x30 + UInt8(magnitude % 10))
            magnitude /= 10
        } while magnitude > 0
        out[start...].reverse()
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

/// A response serialized once and sent as it is to every request that asks for it: a
/// page that does not change between requests. The bytes go to the socket without a
/// copy (an array shares its storage), for keep-alive, for close, and for HEAD.
public struct HttpPreparedResponse: Sendable {
    /// The status code.
    public let status: Int
    private let keepAlive: [UInt8]
    private let close: [UInt8]
    private let keepAliveHead: [UInt8]
    private let closeHead: [UInt8]

    /// `response` serialized in each of the forms a request may need.
    public init(_ response: HttpResponse) {
        status = response.status
        keepAlive = response.serialized(keepAlive: true)
        close = response.serialized(keepAlive: false)
        keepAliveHead = response.serialized(keepAlive: true, includeBody: false)
        closeHead = response.serialized(keepAlive: false, includeBody: false)
    }

    func bytes(keepAlive keep: Bool, includeBody: Bool) -> [UInt8] {
        switch (keep, includeBody) {
        case (true, true): keepAlive
        case (false, true): close
        case (true, false): keepAliveHead
        case (false, false): closeHead
        }
    }
}
