/// One option a command takes, with what its value may be. The help text and
/// every error message come from here, so a range is stated once.
public struct Option: Sendable {
    public enum Kind: Sendable {
        /// Present or not; takes no value.
        case flag
        /// A whole number within the range; without a default, the command reading it supplies one.
        case integer(ClosedRange<Int>, default: Int?)
        /// A decimal number within the range.
        case decimal(ClosedRange<Double>, default: Double)
        /// One of these words.
        case choice([String], default: String?)
        /// Free text, checked by the command that reads it (an address, a path, a list);
        /// `expects` says what it must be, for the error messages.
        case text(placeholder: String, expects: String)
    }

    public let name: String
    public let kind: Kind
    public let help: String
    public var required = false
    /// May be given more than once (a text option): `ParsedOptions.strings` has every value.
    public var repeatable = false

    public init(name: String, kind: Kind, help: String, required: Bool = false, repeatable: Bool = false) {
        self.name = name
        self.kind = kind
        self.help = help
        self.required = required
        self.repeatable = repeatable
    }

    public static func flag(_ name: String, _ help: String) -> Option {
        Option(name: name, kind: .flag, help: help)
    }

    public static func integer(_ name: String, _ range: ClosedRange<Int>, default value: Int?, _ help: String) -> Option
    {
        Option(name: name, kind: .integer(range, default: value), help: help)
    }

    public static func decimal(_ name: String, _ range: ClosedRange<Double>, default value: Double, _ help: String)
        -> Option
    {
        Option(name: name, kind: .decimal(range, default: value), help: help)
    }

    public static func choice(_ name: String, _ words: [String], default value: String?, _ help: String) -> Option {
        Option(name: name, kind: .choice(words, default: value), help: help)
    }

    public static func text(
        _ name: String, _ placeholder: String, expects: String? = nil, _ help: String,
        required: Bool = false, repeatable: Bool = false
    ) -> Option {
        Option(
            name: name, kind: .text(placeholder: placeholder, expects: expects ?? placeholder), help: help,
            required: required, repeatable: repeatable)
    }

    /// `--port P`, `--backend epoll|legacy`, `--json`: the option as the help shows it.
    public var synopsis: String {
        switch kind {
        case .flag: return name
        case .integer: return name + " N"
        case .decimal: return name + " X"
        case .choice(let words, _): return name + " " + words.joined(separator: "|")
        case .text(let placeholder, _): return name + " " + placeholder
        }
    }

    /// What the value may be, for the help and the error messages.
    public var accepted: String {
        switch kind {
        case .flag: return "no value"
        case .integer: return "a whole number \(rangeText)"
        case .decimal: return "a number \(rangeText)"
        case .choice(let words, _): return words.joined(separator: " or ")
        case .text(_, let expects): return expects
        }
    }

    /// `0…65535`; empty for options without a range.
    public var rangeText: String {
        switch kind {
        case .integer(let range, _): return "\(range.lowerBound)…\(range.upperBound)"
        case .decimal(let range, _): return "\(format(range.lowerBound))…\(format(range.upperBound))"
        default: return ""
        }
    }

    public var defaultText: String? {
        switch kind {
        case .flag, .text: return nil
        case .integer(_, let value): return value.map(String.init)
        case .decimal(_, let value): return format(value)
        case .choice(_, let value): return value
        }
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}
