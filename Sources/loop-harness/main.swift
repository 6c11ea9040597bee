import CommandLineOptions
import Compat
import Glibc
import LoopTools

/// Runs one command. A new command is one more case here.
func dispatch(_ arguments: Arguments) throws -> Int32 {
    switch arguments.command {
    case "demo": return try runDemo(arguments)
    case "serve": return try runServe(arguments)
    case "ping": return try runPingCommand(arguments)
    case "stats": return try runAdminCommand(arguments, .stats)
    case "shutdown": return try runAdminCommand(arguments, .saveAndExit)
    case "compare": return try runCompare(arguments)
    case "fuzz": return try runFuzz(arguments)
    case "run": return try runRawLoop(arguments)
    case "attack": return try runAttackCommand(arguments)
    case "fetch": return try runFetch(arguments)
    case "load": return try runLoad(arguments)
    case "help", "--help", "-h": return try runHelp(arguments)
    case "--version":
        guard arguments.rest.isEmpty else {
            throw CommandLineError.usage("loop-harness: --version takes nothing after it")
        }
        say(version)
        return 0
    // No command at all used to start the raw loop, which never stops: `run` says so now.
    case "": throw CommandLineError.usage(usage)
    default: throw CommandLineError.unknownCommand(arguments.command, of: "loop-harness")
    }
}

runCommandLine(program: "loop-harness", Arguments(CommandLine.arguments), dispatch)
