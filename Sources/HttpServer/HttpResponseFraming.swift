/// Frames one HTTP/1.x response: a fixed `Content-Length`, a chunked body, or a
/// body that ends when the server closes. HEAD, 101, 204 and 304 have none. Interim
/// responses (100, 102, 103…) before the final one are part of its frame and skipped.
///
/// Asked again with the whole reply so far at every read, it keeps what it learnt
/// (the final head, where the chunked body stands) and examines only the new bytes.
struct HttpResponseFraming: TcpFraming {
    let limits: HttpLimits
    let isHead: Bool
    /// What the framing learnt of the reply so far.
    let state = ResponseFramingState()

    /// Interim responses a reply may start with; a server that sends more is refused
    /// rather than followed without end.
    static let maxInterimResponses = 8

    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        // Fewer bytes than last time: another message (an exchange tried again), from scratch.
        if bytes.count < state.bytesSeen { state.reset() }
        state.bytesSeen = bytes.count
        let head: FinalHead
        if let known = state.head {
            head = known
        } else {
            var start = 0
            var interims = 0
            while let interim = interimHeadLength(bytes.dropFirst(start)) {
                interims += 1
                if interims > Self.maxInterimResponses { return .refused(reply: []) }
                start += interim
            }
            switch finalHead(bytes.dropFirst(start), atEnd: atEnd) {
            case .frame(let frame): return frame
            case .head(let found): head = found.after(start)
            }
            state.head = head
        }
        switch head.body {
        case .none:
            return .complete(length: head.length, reusable: head.reusable)
        case .length(let length):
            if bytes.count >= head.length + length {
                return .complete(length: head.length + length, reusable: head.reusable)
            }
            return atEnd ? .refused(reply: []) : .incomplete
        case .untilClose:
            return atEnd ? .complete(length: bytes.count, reusable: false) : .incomplete
        case .chunked:
            switch state.chunked.advance(bytes.dropFirst(head.length)) {
            case .complete(let length): return .complete(length: head.length + length, reusable: head.reusable)
            case .malformed: return .refused(reply: [])
            case .incomplete: return atEnd ? .refused(reply: []) : .incomplete
            }
        }
    }

    /// The status code of a response head, read strictly: `HTTP/1.x`, a space,
    /// exactly three digits, a space and the reason. `Int(_:)` alone took `+200`.
    static func status(_ head: HttpHead) -> Int? {
        let version = Array(head.start.0.utf8)
        let code = Array(head.start.1.utf8)
        guard version.count == 8, version.starts(with: "HTTP/1.".utf8), (0x30...0x39).contains(version[7]),
            code.count == 3, code.allSatisfy({ (0x30...0x39).contains($0) }), let status = Int(head.start.1),
            status >= 100
        else { return nil }
        return status
    }

    /// The length of the interim response `bytes` begin with, if they begin with a whole one.
    private func interimHeadLength(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard let headLength = HttpHead.end(in: bytes, limit: limits.maxHeaderBytes),
            let head = try? HttpHead.parse(bytes, length: headLength, limits: limits),
            let status = Self.status(head), (100...199).contains(status), status != 101
        else { return nil }
        return headLength
    }

    private enum HeadOutcome {
        case frame(TcpFrame)
        case head(FinalHead)
    }

    private func finalHead(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> HeadOutcome {
        guard let headLength = HttpHead.end(in: bytes, limit: limits.maxHeaderBytes) else {
            return .frame(bytes.count >= limits.maxHeaderBytes || atEnd ? .refused(reply: []) : .incomplete)
        }
        guard let head = try? HttpHead.parse(bytes, length: headLength, limits: limits),
            let status = Self.status(head)
        else {
            return .frame(.refused(reply: []))
        }
        let reusable = HttpRequestFraming.keepAlive(
            HttpHead(start: ("", "", head.start.0), fields: head.fields, length: 0))
        if isHead || status < 200 || status == 204 || status == 304 {
            return .head(FinalHead(length: headLength, reusable: reusable, body: .none))
        }
        if head.tokens("transfer-encoding").last == "chunked" {
            return .head(FinalHead(length: headLength, reusable: reusable, body: .chunked))
        }
        let declared: Int?
        do { declared = try head.contentLength() } catch { return .frame(.refused(reply: [])) }
        // No length: the body ends when the server closes the connection.
        return .head(
            FinalHead(length: headLength, reusable: reusable, body: declared.map { .length($0) } ?? .untilClose))
    }

    /// The length of a whole chunked body: nil while incomplete, `.some(nil)` when malformed.
    static func chunkedEnd(_ body: ArraySlice<UInt8>) -> Int?? {
        var decoder = ChunkedDecoder()
        switch decoder.advance(body) {
        case .complete(let length): return .some(length)
        case .malformed: return .some(nil)
        case .incomplete: return nil
        }
    }

    /// The final response in `bytes` (already framed whole, interim responses first).
    func parse(_ bytes: [UInt8]) -> HttpFetched? {
        var all = bytes[...]
        while let interim = interimHeadLength(all) { all = all.dropFirst(interim) }
        guard let headLength = HttpHead.end(in: all, limit: limits.maxHeaderBytes),
            let head = try? HttpHead.parse(all, length: headLength, limits: limits),
            let status = Self.status(head)
        else { return nil }
        let rest = all.dropFirst(headLength)
        var body = Array(rest)
        if head.tokens("transfer-encoding").last == "chunked" && !isHead {
            body = ChunkedDecoder.dechunk(rest)
        }
        return HttpFetched(status: status, fields: head.fields, body: body)
    }
}

/// The final response's head, once read: how long it is and how its body is framed.
struct FinalHead {
    enum Body {
        /// HEAD, 1xx, 204, 304.
        case none
        case length(Int)
        case chunked
        /// Until the server closes the connection.
        case untilClose
    }

    /// Bytes from the reply's start (interim responses included) to the body.
    var length: Int
    var reusable: Bool
    var body: Body

    /// The same head, `offset` bytes further into the reply (after interim responses).
    func after(_ offset: Int) -> FinalHead { FinalHead(length: offset + length, reusable: reusable, body: body) }
}

/// What an `HttpResponseFraming` learnt of its reply so far, kept between reads.
final class ResponseFramingState {
    /// The final head, once it has arrived whole.
    var head: FinalHead?
    /// Where the chunked body stands.
    var chunked = ChunkedDecoder()
    /// The bytes the last call saw.
    var bytesSeen = 0
    /// Body bytes examined by decoders given up on (`reset`).
    private var examinedBefore = 0

    /// Bytes of chunked framing examined, over every call: what a test counts.
    var bytesExamined: Int { examinedBefore + chunked.bytesExamined }

    func reset() {
        examinedBefore += chunked.bytesExamined
        head = nil
        chunked = ChunkedDecoder()
        bytesSeen = 0
    }
}
