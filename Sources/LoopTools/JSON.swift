/// A small JSON value for `--json` output; the harness takes no dependencies.
///
/// It renders into a byte buffer (`write(into:)`, `utf8`): the admin console renders the
/// node's figures for every `/status.json`, and building a `String` by concatenation,
/// one Unicode scalar at a time, was most of what that request cost.
public enum JSON: CustomStringConvertible, Sendable {
    case string(String)
    case number(Double)
    case int(Int)
    case bool(Bool)
    case array([JSON])
    case object([(String, JSON)])
    case null

    public var description: String { String(decoding: utf8, as: UTF8.self) }

    /// The value as UTF-8 bytes: the same text as `description`.
    public var utf8: [UInt8] {
        var writer = ByteWriter(capacity: 4096) // the node's stats take about 2 KB: one allocation
        write(into: &writer)
        return writer.bytes
    }

    /// Appends the value's UTF-8 text to `out`.
    public func write(into out: inout [UInt8]) {
        out.append(contentsOf: utf8)
    }

    func write(into out: inout ByteWriter) {
        switch self {
        case .string(let s): Self.writeQuoted(s, into: &out)
        case .number(let d):
            if d.isFinite {
                var text = String(d)
                text.withUTF8 { out.append($0) }
            } else {
                out.append("null")
            }
        case .int(let i): out.append(decimal: i)
        case .bool(let b): out.append(b ? "true" : "false")
        case .array(let a):
            out.append(0x5b) // [
            for i in a.indices {
                if i > 0 { out.append(0x2c) } // ,
                a[i].write(into: &out)
            }
            out.append(0x5d) // ]
        case .object(let o):
            out.append(0x7b) // {
            for i in o.indices {
                if i > 0 { out.append(0x2c) }
                Self.writeQuoted(o[i].0, into: &out)
                out.append(0x3a) // :
                o[i].1.write(into: &out)
            }
            out.append(0x7d) // }
        case .null: out.append("null")
        }
    }

    /// The string in quotes, escaped. Its UTF-8 is looked at in place, byte by byte:
    /// every byte of a multi-byte scalar is 0x80 or more, so only ASCII needs a look, and
    /// what needs no escape is copied whole. (Appended one scalar at a time into a
    /// `String`, this was most of what a `/status.json` cost.)
    static func writeQuoted(_ s: String, into out: inout ByteWriter) {
        out.append(0x22)
        var s = s
        s.withUTF8 { bytes in
            var run = 0
            for i in 0..<bytes.count {
                let byte = bytes[i]
                guard byte < 0x20 || byte == 0x22 || byte == 0x5c else { continue }
                out.append(UnsafeBufferPointer(rebasing: bytes[run..<i]))
                run = i + 1
                out.append(0x5c) // \
                switch byte {
                case 0x22, 0x5c: out.append(byte)
                case 0x0a: out.append(0x6e) // n
                case 0x09: out.append(0x74) // t
                default: // u00XX
                    out.append("u00")
                    out.append(hexDigit(byte >> 4))
                    out.append(hexDigit(byte & 0xf))
                }
            }
            out.append(UnsafeBufferPointer(rebasing: bytes[run...]))
        }
        out.append(0x22)
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 { value < 10 ? 0x30 + value : 0x57 + value }
}
