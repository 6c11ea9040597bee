/// Why a script's text does not parse.
public struct ScriptParseError: Error, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String
    public var description: String { "line \(line): \(message)" }
}

extension Script {
    /// Parses the text `description` prints: one step per line (or `;`-separated),
    /// bodies in braces, `#` to the end of a line is a comment.
    public init(parsing text: String) throws(ScriptParseError) {
        var parser = ScriptParser(tokens: ScriptParser.tokenize(text))
        self.init(try parser.steps(nested: false))
    }
}

struct ScriptParser {
    struct Token {
        let text: String
        let line: Int
    }
    var tokens: [Token]
    var index = 0

    static func tokenize(_ text: String) -> [Token] {
        var tokens: [Token] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            var word = ""
            func flush() {
                if !word.isEmpty { tokens.append(Token(text: word, line: number + 1)) }
                word = ""
            }
            for ch in line {
                if ch == "{" || ch == "}" || ch == ";" {
                    flush()
                    tokens.append(Token(text: String(ch), line: number + 1))
                } else if ch == " " || ch == "\t" || ch == "\r" {
                    flush()
                } else {
                    word.append(ch)
                }
            }
            flush()
            tokens.append(Token(text: "\n", line: number + 1))
        }
        return tokens
    }

    private var line: Int { index < tokens.count ? tokens[index].line : (tokens.last?.line ?? 1) }

    private func fail(_ message: String) -> ScriptParseError { ScriptParseError(line: line, message: message) }

    private mutating func next() throws(ScriptParseError) -> String {
        guard index < tokens.count else { throw fail("unexpected end of script") }
        defer { index += 1 }
        return tokens[index].text
    }

    private func peek() -> String? { index < tokens.count ? tokens[index].text : nil }

    /// Steps until the end (top level) or the closing brace (a body).
    mutating func steps(nested: Bool) throws(ScriptParseError) -> [Step] {
        var steps: [Step] = []
        while let token = peek() {
            if token == "\n" || token == ";" {
                // Inside a body a newline is just a separator.
                index += 1
                continue
            }
            if token == "}" {
                guard nested else { throw fail("'}' without '{'") }
                index += 1
                return steps
            }
            let step = try self.step()
            if nested && step.isTopLevelOnly { throw fail("'\(step)' is not allowed inside a callback") }
            steps.append(step)
        }
        if nested { throw fail("missing '}'") }
        return steps
    }

    private mutating func number(_ what: String) throws(ScriptParseError) -> Int {
        let t = try next()
        guard let n = Int(t) else { throw fail("expected \(what), found '\(t)'") }
        return n
    }

    private mutating func prefixed(_ prefix: Character, _ what: String) throws(ScriptParseError) -> Int {
        let t = try next()
        guard t.first == prefix, let n = Int(t.dropFirst()), n >= 0 else {
            throw fail("expected \(what) (\(prefix)N), found '\(t)'")
        }
        return n
    }

    private mutating func slot() throws(ScriptParseError) -> Int {
        let s = try prefixed("s", "a slot")
        guard scriptSlots.contains(s) else { throw fail("slot s\(s) out of range s0…s\(scriptSlots.upperBound - 1)") }
        return s
    }

    private mutating func optionalOwner() throws(ScriptParseError) -> Int? {
        guard let t = peek(), t.first == "o" else { return nil }
        return try prefixed("o", "an owner")
    }

    private mutating func body() throws(ScriptParseError) -> [Step] {
        let t = try next()
        guard t == "{" else { throw fail("expected '{', found '\(t)'") }
        return try steps(nested: true)
    }

    private mutating func step() throws(ScriptParseError) -> Step {
        let word = try next()
        switch word {
        case "pipe": return .pipe(read: try slot(), write: try slot())
        case "socketpair": return .socketPair(try slot(), try slot())
        case "file": return .regularFile(try slot())
        case "write":
            let s = try slot()
            let n = try number("a byte count")
            guard (1...4096).contains(n) else { throw fail("byte count \(n) out of range 1…4096") }
            return .write(slot: s, bytes: n)
        case "fill": return .fill(try slot())
        case "drain": return .drain(try slot())
        case "close": return .close(try slot())
        case "dup": return .dup(from: try slot(), to: try slot())
        case "onread", "onwrite":
            let id = try prefixed("r", "a registration id")
            let s = try slot()
            let n = try prefixed("n", "a niceness")
            let o = try optionalOwner()
            return .watch(
                id: id, kind: word == "onread" ? .read : .write, slot: s, niceness: n, owner: o, body: try body())
        case "sleep":
            let id = try prefixed("r", "a registration id")
            let period = try number("a period in ms")
            let n = try prefixed("n", "a niceness")
            let o = try optionalOwner()
            return .sleep(id: id, periodMs: period, niceness: n, owner: o, body: try body())
        case "after":
            let id = try prefixed("r", "a registration id")
            let ms = try number("a delay in ms")
            let n = try prefixed("n", "a niceness")
            let o = try optionalOwner()
            return .after(id: id, ms: ms, niceness: n, owner: o, body: try body())
        case "unreg": return .unregister(id: try prefixed("r", "a registration id"))
        case "unregall": return .unregisterAll(slot: try slot())
        case "closeafter": return .closeAfterBatch(slot: try slot())
        case "job":
            let id = try prefixed("j", "a job id")
            let n = try prefixed("n", "a niceness")
            return .job(id: id, niceness: n, body: try body())
        case "quickpoll": return .quickPoll
        case "stop": return .stop
        case "clock":
            let t = try next()
            guard let d = Int(t.hasPrefix("+") ? String(t.dropFirst()) : t), abs(d) <= 1_000_000 else {
                throw fail("expected a clock step like +15 or -5 (at most 1000000 ms), found '\(t)'")
            }
            return .clock(d)
        case "once": return .runOnce
        case "run": return .run
        case "take": return .takeShutdown
        case "signal":
            let name = try next()
            guard let signal = ProcessSignal(rawValue: name) else {
                throw fail(
                    "expected a signal (\(ProcessSignal.allCases.map(\.rawValue).joined(separator: " "))), found '\(name)'"
                )
            }
            let n = try number("a signal count")
            guard (1...100_000).contains(n) else { throw fail("signal count \(n) out of range 1…100000") }
            return .signal(signal, count: n)
        case "signals": return .signalCounts
        case "child": return .child
        case "secondloop": return .secondLoop
        default: throw fail("unknown step '\(word)'")
        }
    }
}
