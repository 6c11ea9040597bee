import LoopTools

/// A command's name, what it does and the options it declares.
public struct CommandOptions: Sendable {
    /// The executable the command belongs to (`loop-harness`), for the help and the errors.
    public let program: String
    public let command: String
    /// One line: what the command does.
    public let summary: String
    /// More about it, for `--help`: what an option exposes, when the command exits.
    public var details: String
    public let options: [Option]
    /// What the command takes after its options, if anything (`URL…` for fetch); one or more are required.
    public var operands: String?
    /// Options every command of the program takes.
    public let common: [Option]

    public init(
        program: String, command: String, summary: String, details: String = "", options: [Option],
        operands: String? = nil, common: [Option]
    ) {
        self.program = program
        self.command = command
        self.summary = summary
        self.details = details
        self.options = options
        self.operands = operands
        self.common = common
    }

    public var allOptions: [Option] { options + common }

    public func option(named name: String) -> Option? { allOptions.first { $0.name == name } }

    public var help: String {
        let required = options.filter(\.required).map(\.synopsis).joined(separator: " ")
        let takes = (required.isEmpty ? "" : " " + required) + " [options]" + (operands.map { " " + $0 } ?? "")
        var lines = ["usage: \(program) \(command)\(takes)", "", summary]
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
                if option.repeatable { text += " (repeatable)" }
                let name = "  " + option.synopsis
                lines.append(
                    name.count + 1 >= width + 2
                        ? name + "\n" + String(repeating: " ", count: width + 2) + text
                        : name.padded(to: width + 2) + text)
            }
        }
        table("options:", options)
        table("options for every command:", common)
        return lines.joined(separator: "\n")
    }

    /// A usage error of this command, with where to look.
    public func usage(_ message: String) -> CommandLineError {
        .usage("\(program) \(command): \(message) (see \(program) \(command) --help)")
    }
}
