import CommandLineOptions
import Compat
import LoopTools

// The processes the tests, `loop-harness compare` and `loop-harness fuzz` start to
// watch a loop from outside: signals sent to a process whose threads are all the
// loop's, a fork beside running workers, a script run as a program would run it.
// Nothing here is for a person to run; `loop-harness` holds those commands.

let usage = """
    usage: loop-probe <command> [options]      (loop-probe <command> --help: its options)

    commands (each run as a child process by the tests, compare or fuzz):
      fuzz-process   one process-level script in this process (loop-harness fuzz runs it)
      child-loop     a bare loop that reports how it was shut down (tests and compare send it signals)
      timer-routing  a loop on a second thread; counts the main thread's interrupted sleeps
      fork-check     forks beside a loop with workers; checks both sides
      two-loops      an epoll and a legacy loop in one process; one closes, a SIGTERM follows
      help [COMMAND] this text, or a command's options

    options for every command:
      --backend epoll|legacy   override the build's default (also LOOP_BACKEND)
      --json                   machine-readable output, errors included
      --help                   the command's options

    exit status: 0 success, 1 failure, 2 usage error
    """

extension CommandOptions {
    /// A `loop-probe` command, taking the options every probe takes.
    init(command: String, summary: String, options: [Option]) {
        self.init(
            program: "loop-probe", command: command, summary: summary, options: options,
            common: [.backend, .json, .help])
    }
}

func dispatch(_ arguments: Arguments) throws -> Int32 {
    switch arguments.command {
    case "fuzz-process": return try runFuzzProcess(arguments)
    case "child-loop": return try runChildLoop(arguments)
    case "timer-routing": return try runTimerRouting(arguments)
    case "fork-check": return try runForkCheck(arguments)
    case "two-loops": return try runTwoLoops(arguments)
    case "help", "--help", "-h": return try runHelp(program: "loop-probe", usage: usage, arguments, dispatch: dispatch)
    case "": throw CommandLineError.usage(usage)
    default: throw CommandLineError.unknownCommand(arguments.command, of: "loop-probe")
    }
}

runCommandLine(program: "loop-probe", Arguments(CommandLine.arguments), dispatch)
