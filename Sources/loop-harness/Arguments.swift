import Compat

/// The command line split into the command and what follows it. Each command
/// reads its options with `parse(_:)`, against the options it declares, so
/// nothing is read that was not declared and nothing given goes unread.
struct Arguments {
    /// The first argument; empty when there is none.
    let command: String
    /// Everything after the command.
    let rest: [String]
    /// `--json` was given: errors go out as one JSON object too.
    let wantsJSON: Bool

    init(_ argv: [String]) {
        command = argv.count > 1 ? argv[1] : ""
        rest = Array(argv.dropFirst(2))
        wantsJSON = argv.dropFirst().contains("--json")
    }

    /// Checks the arguments against `command`'s options (and those of every command).
    /// Throws `.helpRequested` for `--help`, `.usage` for anything it does not accept.
    func parse(_ command: CommandOptions) throws(CommandLineError) -> ParsedOptions {
        try ParsedOptions(parsing: rest, for: command)
    }
}

/// Why a command did not run: its help was asked for, or its arguments are wrong.
enum CommandLineError: Error, CustomStringConvertible {
    /// Print this (the command's help) and exit 0.
    case helpRequested(String)
    /// Exit 2 with this one-line message.
    case usage(String)

    var description: String {
        switch self {
        case .helpRequested(let text): return text
        case .usage(let message): return message
        }
    }
}

/// A command that ran and failed for a reason other than its arguments (exit 1).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
