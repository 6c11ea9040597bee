import Compat
import Glibc
import LoopTools

/// The command line split into the command and what follows it. Each command
/// reads its options with `parse(_:)`, against the options it declares, so
/// nothing is read that was not declared and nothing given goes unread.
public struct Arguments: Sendable {
    /// The first argument; empty when there is none (or `defaultCommand` when given).
    public let command: String
    /// Everything after the command.
    public let rest: [String]
    /// `--json` was given: errors go out as one JSON object too.
    public let wantsJSON: Bool

    /// `defaultCommand`: the command when the first argument is an option or missing
    /// (`loop-bench --quick` is `loop-bench run --quick`); nil: no command is then empty.
    public init(_ argv: [String], defaultCommand: String? = nil) {
        if let defaultCommand, argv.count < 2 || argv[1].hasPrefix("-") {
            command = defaultCommand
            rest = Array(argv.dropFirst(1))
        } else {
            command = argv.count > 1 ? argv[1] : ""
            rest = Array(argv.dropFirst(2))
        }
        wantsJSON = argv.dropFirst().contains("--json")
    }

    /// Checks the arguments against `command`'s options (and those of every command).
    /// Throws `.helpRequested` for `--help`, `.usage` for anything it does not accept.
    public func parse(_ command: CommandOptions) throws(CommandLineError) -> ParsedOptions {
        try ParsedOptions(parsing: rest, for: command)
    }
}

/// Why a command did not run: its help was asked for, or its arguments are wrong.
public enum CommandLineError: Error, CustomStringConvertible {
    /// Print this (the command's help) and exit 0.
    case helpRequested(String)
    /// Exit 2 with this one-line message.
    case usage(String)

    public var description: String {
        switch self {
        case .helpRequested(let text): return text
        case .usage(let message): return message
        }
    }
}

/// A command that ran and failed for a reason other than its arguments (exit 1).
public struct CommandFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Runs the command `dispatch` picks and exits with its status: 0 after a help
/// text, 2 after a usage error, 1 after any other error, each error one line on
/// stderr (one JSON object on stdout with --json).
public func runCommandLine(
    program: String, _ arguments: Arguments,
    _ dispatch: (Arguments) throws -> Int32
) -> Never {
    do {
        exit(try dispatch(arguments))
    } catch CommandLineError.helpRequested(let text) {
        say(text)
        exit(0)
    } catch CommandLineError.usage(let message) {
        if arguments.wantsJSON {
            say(JSON.object([("ok", .bool(false)), ("error", .string(message)), ("usage", .bool(true))]).description)
        } else {
            sayError(message)
        }
        exit(2)
    } catch {
        let message = "\(program) \(arguments.command): \(error)"
        if arguments.wantsJSON {
            say(JSON.object([("ok", .bool(false)), ("error", .string(message))]).description)
        } else {
            sayError(message)
        }
        exit(1)
    }
}

extension Option {
    /// `--backend epoll|legacy`, read by `ParsedOptions.backend()`.
    public static let backend = Option.choice(
        "--backend", LoopBackendKind.allCases.map(\.rawValue), default: nil,
        "the loop to use (default: LOOP_BACKEND, else the build's: \(LoopBackendKind.buildDefault))")
    public static let json = Option.flag(
        "--json", "machine-readable output: one JSON object per result, event or error")
    public static let help = Option.flag("--help", "this text")
}

extension CommandLineError {
    /// The error for a first word that is none of `program`'s commands.
    public static func unknownCommand(_ command: String, of program: String) -> CommandLineError {
        let what = command.hasPrefix("-") ? "the command comes first, not '\(command)'" : "unknown command '\(command)'"
        return .usage("\(program): \(what) (see \(program) help)")
    }
}

/// `PROGRAM help [COMMAND]`: `usage`, or that command's `--help` through `dispatch`.
public func runHelp(
    program: String, usage: String, _ arguments: Arguments,
    dispatch: (Arguments) throws -> Int32
) throws -> Int32 {
    switch arguments.rest.count {
    case 0:
        say(usage)
        return 0
    case 1 where !arguments.rest[0].hasPrefix("-"):
        return try dispatch(Arguments([program, arguments.rest[0], "--help"]))
    default:
        throw CommandLineError.usage("\(program): help takes at most one command name (see \(program) help)")
    }
}
