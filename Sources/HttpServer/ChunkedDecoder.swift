/// Where a chunked body stands, kept between reads: each read resumes where the last
/// one stopped, so a body is examined once, not again from its start at every read
/// (which cost a client the whole body so far per read: quadratic in the body).
struct ChunkedDecoder {
    /// What the bytes so far make.
    enum Outcome: Equatable {
        /// More bytes are needed.
        case incomplete
        /// The body, its last chunk and trailer included, is this many bytes long.
        case complete(length: Int)
        /// The bytes can never be a chunked body.
        case malformed
    }

    private enum Phase: Equatable {
        case sizeLine
        case data(remaining: Int)
        case dataEnd
        case trailer
        case finished(Outcome)
    }

    private var phase = Phase.sizeLine
    /// Offset from the body's start of the first byte not yet consumed.
    private(set) var consumed = 0
    /// How far the search for the current line's end has gone (it resumes there).
    private var searched = 0
    /// Bytes looked at so far, over every call: a test counts them.
    private(set) var bytesExamined = 0

    /// Goes on with `body`, which holds every byte given before and perhaps more.
    mutating func advance(_ body: ArraySlice<UInt8>) -> Outcome {
        var nothing: [UInt8]? = nil
        return advance(body, collectingInto: &nothing)
    }

    /// Goes on with `body`; appends the chunks' data to `data` unless it is nil.
    mutating func advance(_ body: ArraySlice<UInt8>, collectingInto data: inout [UInt8]?) -> Outcome {
        let base = body.startIndex
        while true {
            switch phase {
            case .finished(let outcome):
                return outcome
            case .sizeLine, .trailer:
                guard let end = lineEnd(body) else { return .incomplete }
                let line = body[(base + consumed)..<(base + end)]
                consumed = end + 2
                searched = consumed
                if phase == .trailer {
                    // Trailer fields are skipped; the blank line ends the body.
                    if line.isEmpty { phase = .finished(.complete(length: consumed)) }
                } else if let size = Self.chunkSize(line) {
                    phase = size == 0 ? .trailer : .data(remaining: size)
                } else {
                    phase = .finished(.malformed)
                }
            case .data(let remaining):
                let take = min(remaining, body.count - consumed)
                if take > 0 {
                    data?.append(contentsOf: body[(base + consumed)..<(base + consumed + take)])
                    bytesExamined += take
                    consumed += take
                }
                guard remaining == take else {
                    phase = .data(remaining: remaining - take)
                    return .incomplete
                }
                phase = .dataEnd
            case .dataEnd:
                guard body.count - consumed >= 2 else { return .incomplete }
                bytesExamined += 2
                let ok = body[base + consumed] == 0x0d && body[base + consumed + 1] == 0x0a
                consumed += 2
                searched = consumed
                phase = ok ? .sizeLine : .finished(.malformed)
            }
        }
    }

    /// Where the line that begins at `consumed` ends (the offset of its CR), searching
    /// on from where the last search stopped.
    private mutating func lineEnd(_ body: ArraySlice<UInt8>) -> Int? {
        let base = body.startIndex
        var i = max(searched, consumed)
        defer { searched = i }
        while i + 1 < body.count {
            bytesExamined += 1
            if body[base + i] == 0x0d && body[base + i + 1] == 0x0a { return i }
            i += 1
        }
        return nil
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

    /// The chunks' data of a whole chunked body (framed already), de-chunked in one pass.
    static func dechunk(_ body: ArraySlice<UInt8>) -> [UInt8] {
        var decoder = ChunkedDecoder()
        var data: [UInt8]? = []
        _ = decoder.advance(body, collectingInto: &data)
        return data ?? []
    }
}
