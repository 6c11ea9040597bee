import Compat
import UdpServer

/// One option a command takes, with what its value may be. The help text and
/// every error message come from here, so a range is stated once.
struct Option {
    enum Kind {
        /// Present or not; takes no value.
        case flag
        /// A whole number within the range.
        case integer(ClosedRange<Int>, default: Int)
        /// A decimal number within the range.
        case decimal(ClosedRange<Double>, default: Double)
        /// One of these words.
        case choice([String], default: String?)
        /// Free text, checked by the command that reads it (an address, a path, a list);
        /// `expects` says what it must be, for the error messages.
        case text(placeholder: String, expects: String)
    }

    let name: String
    let kind: Kind
    let help: String
    var required = false

    static func flag(_ name: String, _ help: String) -> Option {
        Option(name: name, kind: .flag, help: help)
    }

    static func integer(_ name: String, _ range: ClosedRange<Int>, default value: Int, _ help: String) -> Option {
        Option(name: name, kind: .integer(range, default: value), help: help)
    }

    static func decimal(_ name: String, _ range: ClosedRange<Double>, default value: Double, _ help: String) -> Option {
        Option(name: name, kind: .decimal(range, default: value), help: help)
    }

    static func choice(_ name: String, _ words: [String], default value: String?, _ help: String) -> Option {
        Option(name: name, kind: .choice(words, default: value), help: help)
    }

    static func text(_ name: String, _ placeholder: String, expects: String? = nil, _ help: String,
                     required: Bool = false) -> Option {
        Option(name: name, kind: .text(placeholder: placeholder, expects: expects ?? placeholder), help: help, required: required)
    }

    /// `--port P`, `--backend epoll|legacy`, `--json`: the option as the help shows it.
    var synopsis: String {
        switch kind {
        case .flag: return name
        case .integer: return name + " N"
        case .decimal: return name + " X"
        case .choice(let words, _): return name + " " + words.joined(separator: "|")
        case .text(let placeholder, _): return name + " " + placeholder
        }
    }

    /// What the value may be, for the help and the error messages.
    var accepted: String {
        switch kind {
        case .flag: return "no value"
        case .integer: return "a whole number \(rangeText)"
        case .decimal: return "a number \(rangeText)"
        case .choice(let words, _): return words.joined(separator: " or ")
        case .text(_, let expects): return expects
        }
    }

    /// `0…65535`; empty for options without a range.
    var rangeText: String {
        switch kind {
        case .integer(let range, _): return "\(range.lowerBound)…\(range.upperBound)"
        case .decimal(let range, _): return "\(format(range.lowerBound))…\(format(range.upperBound))"
        default: return ""
        }
    }

    var defaultText: String? {
        switch kind {
        case .flag, .text: return nil
        case .integer(_, let value): return String(value)
        case .decimal(_, let value): return format(value)
        case .choice(_, let value): return value
        }
    }

    private func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }
}

/// A command's name, what it does and the options it declares.
struct CommandOptions {
    let command: String
    /// One line: what the command does.
    let summary: String
    /// More about it, for `--help`: what an option exposes, when the command exits.
    var details: String = ""
    let options: [Option]
    /// What the command takes after its options, if anything (`URL…` for fetch); one or more are required.
    var operands: String? = nil

    /// Options every command takes.
    static let common: [Option] = [
        .choice("--backend", LoopBackendKind.allCases.map(\.rawValue), default: nil,
                "the loop to use (default: LOOP_BACKEND, else the build's: \(LoopBackendKind.buildDefault))"),
        .flag("--json", "machine-readable output: one JSON object per result, event or error"),
        .integer("--datagram-size", (DatagramHeader.dataHeaderSize + 1)...DatagramGeometry.largestDatagramSize,
                 default: DatagramGeometry.loopbackDatagramSize, "RPC datagram size in bytes (both ends must agree)"),
        .flag("--help", "this text"),
    ]

    var allOptions: [Option] { options + Self.common }

    func option(named name: String) -> Option? { allOptions.first { $0.name == name } }

    var help: String {
        let required = options.filter(\.required).map(\.synopsis).joined(separator: " ")
        let takes = (required.isEmpty ? "" : " " + required) + " [options]" + (operands.map { " " + $0 } ?? "")
        var lines = ["usage: loop-harness \(command)\(takes)", "", summary]
        if !details.isEmpty { lines += ["", details] }
        func table(_ title: String, _ options: [Option]) {
            guard !options.isEmpty else { return }
            lines += ["", title]
            let width = min(30, (options.map(\.synopsis.count).max() ?? 0) + 2)
            for option in options {
                var text = option.help
                let facts = [option.rangeText, option.defaultText.map { "default \($0)" } ?? ""].filter { !$0.isEmpty }
                if !facts.isEmpty { text += " (" + facts.joined(separator: ", ") + ")" }
                if option.required { text += " (required)" }
                let name = "  " + option.synopsis
                lines.append(name.count + 1 >= width + 2 ? name + "\n" + String(repeating: " ", count: width + 2) + text
                                                         : name.padded(to: width + 2) + text)
            }
        }
        table("options:", options)
        table("options for every command:", Self.common)
        return lines.joined(separator: "\n")
    }
}

/// The options given to one command, checked against its declaration.
struct ParsedOptions {
    enum Value {
        case flag
        case integer(Int)
        case decimal(Double)
        case text(String)
    }

    let declaration: CommandOptions
    private var values: [String: Value] = [:]
    /// The arguments that are not options, for a command that declares `operands`.
    private(set) var operands: [String] = []

    /// Strict: an unknown option, a missing value, a stray argument, a value not of the
    /// option's kind or out of its range, an option given twice, or a required one
    /// missing is a `.usage` error naming the option and what it takes.
    init(parsing arguments: [String], for declaration: CommandOptions) throws(CommandLineError) {
        self.declaration = declaration
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("-") && argument.count > 1 else {
                guard declaration.operands != nil else { throw declaration.usage("unexpected argument '\(argument)'") }
                operands.append(argument)
                continue
            }
            // `--name=value` as well as `--name value`.
            var name = argument
            var inlineValue: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            if name == "-h" { name = "--help" }
            guard let option = declaration.option(named: name) else {
                throw declaration.usage("unknown option \(name)")
            }
            if name == "--help" { throw .helpRequested(declaration.help) }
            guard values[name] == nil else { throw declaration.usage("\(name) is given twice") }
            if case .flag = option.kind {
                guard inlineValue == nil else { throw declaration.usage("\(name) takes no value") }
                values[name] = .flag
                continue
            }
            // A value may start with one dash (a negative number, refused by its range with
            // a clear message), never with two: that is the next option, so this one's value is missing.
            let raw: String
            if let inlineValue {
                raw = inlineValue
            } else if index < arguments.endIndex && !arguments[index].hasPrefix("--") {
                raw = arguments[index]
                index += 1
            } else {
                throw declaration.usage("\(name) needs a value: \(option.accepted)")
            }
            values[name] = try Self.value(raw, of: option, in: declaration)
        }
        // --help anywhere wins over a missing required option.
        if let wanted = declaration.operands, operands.isEmpty {
            throw declaration.usage("\(wanted) is required")
        }
        if let missing = declaration.options.first(where: { $0.required && values[$0.name] == nil }) {
            throw declaration.usage("\(missing.synopsis) is required")
        }
    }

    private static func value(_ raw: String, of option: Option, in declaration: CommandOptions) throws(CommandLineError) -> Value {
        func refuse() -> CommandLineError {
            declaration.usage("\(option.name) takes \(option.accepted), not '\(raw)'")
        }
        switch option.kind {
        case .flag:
            return .flag
        case .integer(let range, _):
            // Int(_:) is nil for digits beyond Int's range too: that is out of range, said the same way.
            guard let number = Int(raw), range.contains(number) else { throw refuse() }
            return .integer(number)
        case .decimal(let range, _):
            guard let number = Double(raw), number.isFinite, range.contains(number) else { throw refuse() }
            return .decimal(number)
        case .choice(let words, _):
            guard words.contains(raw) else { throw refuse() }
            return .text(raw)
        case .text:
            guard !raw.isEmpty else { throw refuse() }
            return .text(raw)
        }
    }

    var command: String { declaration.command }
    var json: Bool { flag("--json") }

    func flag(_ name: String) -> Bool {
        guard case .flag = declared(name).kind else { preconditionFailure("\(name) is not a flag of \(command)") }
        return values[name] != nil
    }

    /// Whether the option was on the command line (not merely defaulted).
    func given(_ name: String) -> Bool {
        _ = declared(name)
        return values[name] != nil
    }

    /// The value given, else the declared default.
    func int(_ name: String) -> Int {
        guard case .integer(_, let fallback) = declared(name).kind else { preconditionFailure("\(name) is not an integer option of \(command)") }
        if case .integer(let value) = values[name] { return value }
        return fallback
    }

    func decimal(_ name: String) -> Double {
        guard case .decimal(_, let fallback) = declared(name).kind else { preconditionFailure("\(name) is not a decimal option of \(command)") }
        if case .decimal(let value) = values[name] { return value }
        return fallback
    }

    /// A text or choice option's value, else a choice's default; nil when neither.
    func string(_ name: String) -> String? {
        let option = declared(name)
        if case .text(let value) = values[name] { return value }
        if case .choice(_, let fallback) = option.kind { return fallback }
        return nil
    }

    /// A text option's value through `convert`; a value it refuses (nil or a thrown
    /// error, whose description is added) is a usage error. Nil when not given.
    func converted<T>(_ name: String, _ convert: (String) throws -> T?) throws(CommandLineError) -> T? {
        guard let raw = string(name) else { return nil }
        let option = declared(name)
        do {
            if let value = try convert(raw) { return value }
            throw declaration.usage("\(name) takes \(option.accepted), not '\(raw)'")
        } catch let error as CommandLineError {
            throw error
        } catch {
            throw declaration.usage("\(name) takes \(option.accepted), not '\(raw)': \(error)")
        }
    }

    /// `--backend`, else `LOOP_BACKEND`, else the build's default.
    func backend() throws(CommandLineError) -> LoopBackendKind {
        if let raw = string("--backend"), let kind = LoopBackendKind(rawValue: raw) { return kind }
        do {
            return try LoopBackendKind.fromEnvironment()
        } catch {
            throw declaration.usage("\(error)")
        }
    }

    private func declared(_ name: String) -> Option {
        guard let option = declaration.option(named: name) else { preconditionFailure("\(command) declares no \(name)") }
        return option
    }
}

extension CommandOptions {
    /// A usage error of this command, with where to look.
    func usage(_ message: String) -> CommandLineError {
        .usage("loop-harness \(command): \(message) (see loop-harness \(command) --help)")
    }
}
