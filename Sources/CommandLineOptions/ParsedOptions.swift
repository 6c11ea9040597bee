import Compat

/// The options given to one command, checked against its declaration.
public struct ParsedOptions {
    public enum Value {
        case flag
        case integer(Int)
        case decimal(Double)
        case text(String)
    }

    public let declaration: CommandOptions
    private var values: [String: Value] = [:]
    /// Every value of a repeatable option, in order.
    private var repeated: [String: [String]] = [:]
    /// The arguments that are not options, for a command that declares `operands`.
    public private(set) var operands: [String] = []

    /// Strict: an unknown option, a missing value, a stray argument, a value not of the
    /// option's kind or out of its range, an option given twice, or a required one
    /// missing is a `.usage` error naming the option and what it takes.
    public init(parsing arguments: [String], for declaration: CommandOptions) throws(CommandLineError) {
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
            guard values[name] == nil || option.repeatable else { throw declaration.usage("\(name) is given twice") }
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
            let value = try Self.value(raw, of: option, in: declaration)
            values[name] = value
            if option.repeatable, case .text(let text) = value { repeated[name, default: []].append(text) }
        }
        // --help anywhere wins over a missing required option.
        if let wanted = declaration.operands, operands.isEmpty {
            throw declaration.usage("\(wanted) is required")
        }
        if let missing = declaration.options.first(where: { $0.required && values[$0.name] == nil }) {
            throw declaration.usage("\(missing.synopsis) is required")
        }
    }

    private static func value(_ raw: String, of option: Option, in declaration: CommandOptions) throws(CommandLineError)
        -> Value
    {
        func refuse() -> CommandLineError {
            declaration.usage("\(option.name) takes \(option.accepted), not '\(raw)'")
        }
        switch option.kind {
        case .flag:
            return .flag
        case .integer(let range, _):
            // Digits, with a minus for a negative number: not "+5" or " 5", which Int(_:) takes.
            // Int(_:) is nil for digits beyond Int's range too: that is out of range, said the same way.
            guard Self.isPlainNumber(raw, decimals: false), let number = Int(raw), range.contains(number) else {
                throw refuse()
            }
            return .integer(number)
        case .decimal(let range, _):
            // Plain decimals only: Double(_:) also takes "+1", "1e3", "0x1p3" and "nan".
            guard Self.isPlainNumber(raw, decimals: true), let number = Double(raw), number.isFinite,
                range.contains(number)
            else { throw refuse() }
            return .decimal(number)
        case .choice(let words, _):
            guard words.contains(raw) else { throw refuse() }
            return .text(raw)
        case .text:
            guard !raw.isEmpty else { throw refuse() }
            return .text(raw)
        }
    }

    /// `-?DIGITS`, or with `decimals` also `-?DIGITS.DIGITS`.
    private static func isPlainNumber(_ raw: String, decimals: Bool) -> Bool {
        let unsigned = raw.hasPrefix("-") ? raw.dropFirst() : Substring(raw)
        let parts = unsigned.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 1 || (decimals && parts.count == 2) else { return false }
        return parts.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy { (0x30...0x39).contains($0) } }
    }

    public var command: String { declaration.command }
    public var json: Bool { flag("--json") }

    public func flag(_ name: String) -> Bool {
        guard case .flag = declared(name).kind else { preconditionFailure("\(name) is not a flag of \(command)") }
        return values[name] != nil
    }

    /// Whether the option was on the command line (not merely defaulted).
    public func given(_ name: String) -> Bool {
        _ = declared(name)
        return values[name] != nil
    }

    /// The value given, else the declared default.
    public func int(_ name: String) -> Int {
        guard case .integer(_, let fallback?) = declared(name).kind else {
            preconditionFailure("\(name) is not an integer option of \(command) with a default")
        }
        return int(name, default: fallback)
    }

    /// The value given, else `fallback`: for an option whose default depends on the
    /// other arguments (`scale fds` and `scale jobs` count differently).
    public func int(_ name: String, default fallback: Int) -> Int {
        guard case .integer = declared(name).kind else {
            preconditionFailure("\(name) is not an integer option of \(command)")
        }
        if case .integer(let value) = values[name] { return value }
        return fallback
    }

    public func decimal(_ name: String) -> Double {
        guard case .decimal(_, let fallback) = declared(name).kind else {
            preconditionFailure("\(name) is not a decimal option of \(command)")
        }
        if case .decimal(let value) = values[name] { return value }
        return fallback
    }

    /// A text or choice option's value, else a choice's default; nil when neither.
    public func string(_ name: String) -> String? {
        let option = declared(name)
        if case .text(let value) = values[name] { return value }
        if case .choice(_, let fallback) = option.kind { return fallback }
        return nil
    }

    /// Every value a repeatable text option was given, in order; empty when not given.
    public func strings(_ name: String) -> [String] {
        precondition(declared(name).repeatable, "\(name) is not a repeatable option of \(command)")
        return repeated[name] ?? []
    }

    /// A text option's value through `convert`; a value it refuses (nil or a thrown
    /// error, whose description is added) is a usage error. Nil when not given.
    public func converted<T>(_ name: String, _ convert: (String) throws -> T?) throws(CommandLineError) -> T? {
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
    public func backend() throws(CommandLineError) -> LoopBackendKind {
        if let raw = string("--backend"), let kind = LoopBackendKind(rawValue: raw) { return kind }
        do {
            return try LoopBackendKind.fromEnvironment()
        } catch {
            throw declaration.usage("\(error)")
        }
    }

    private func declared(_ name: String) -> Option {
        guard let option = declaration.option(named: name) else {
            preconditionFailure("\(command) declares no \(name)")
        }
        return option
    }
}
