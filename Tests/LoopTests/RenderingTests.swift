import Compat
import LoopTools
import Testing

/// What the console's rendering rests on, rewritten to work on bytes: the same text as before.
@Suite struct Rendering {
    /// JSON text: escapes, UTF-8 as it is, numbers, nesting; `description`, `utf8` and
    /// `write(into:)` agree.
    @Test func jsonText() {
        let value = JSON.object([
            ("plain", .string("abc")), ("quote\"key", .string("a\"b\\c")), ("lines", .string("1\n2\t3\r")),
            ("controls", .string("\u{0}\u{1}\u{1f}\u{7f}")), ("utf8", .string("é 日本 🙂")), ("empty", .string("")),
            ("ints", .array([.int(0), .int(7), .int(-42), .int(Int.max), .int(Int.min)])),
            ("numbers", .array([.number(1.5), .number(-0.25), .number(.infinity), .number(.nan)])),
            ("flags", .array([.bool(true), .bool(false), .null])), ("nested", .object([("a", .array([]))])),
            ("none", .object([])),
        ])
        let expected =
            #"{"plain":"abc","quote\"key":"a\"b\\c","lines":"1\n2\t3\u000d","controls":"\u0000\u0001\u001f\#u{7f}","#
            + #""utf8":"é 日本 🙂","empty":"","ints":[0,7,-42,9223372036854775807,-9223372036854775808],"#
            + #""numbers":[1.5,-0.25,null,null],"flags":[true,false,null],"nested":{"a":[]},"none":{}}"#
        #expect(value.description == expected)
        #expect(value.utf8 == Array(expected.utf8))
        var out = Array("x".utf8)
        value.write(into: &out)
        #expect(out == Array(("x" + expected).utf8))
        let long = String(repeating: "0123456789\"", count: 1_000)
        #expect(JSON.string(long).description == "\"" + String(repeating: "0123456789\\\"", count: 1_000) + "\"")
    }

    /// A dotted quad, strictly: four decimal octets of one to three digits, nothing else.
    @Test func ipv4Parsing() {
        let good: [(String, UInt32)] = [
            ("1.2.3.4", 0x0102_0304), ("255.255.255.255", 0xffff_ffff), ("0.0.0.0", 0), ("01.002.3.4", 0x0102_0304),
            ("127.0.0.1", 0x7f00_0001),
        ]
        for (text, ip) in good { #expect(PeerAddress.parseIPv4(text) == ip, "\(text)") }
        let bad = [
            "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.256", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ", " 1.2.3.4",
            "+1.2.3.4", "1234.1.1.1", "0001.1.1.1", "1.2.3.-4", "١.2.3.4", "1.2.3.4\u{301}", "a.b.c.d",
        ]
        for text in bad { #expect(PeerAddress.parseIPv4(text) == nil, "\(text)") }
        #expect(PeerAddress.parseIPv4("10.1.2.3"[...]) == 0x0a01_0203)
        #expect(PeerAddress("10.1.2.3:80") == PeerAddress(ip: 0x0a01_0203, port: 80))
    }
}
