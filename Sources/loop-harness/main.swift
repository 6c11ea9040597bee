import Compat
import Glibc
import LoopTools

let usage = """
    usage: loop-harness [command] [options]

    commands:
      run         (default) a loop with a heartbeat and a UDP echo on 127.0.0.1; stops on SIGINT/SIGTERM/SIGHUP
      child-loop  a bare loop that reports how it was shut down (used by tests and compare)
      compare     run the side-by-side scenarios on both backends in this process and print one table;
                  exits non-zero when a scenario diverges beyond its tolerance
                  [--json] [--quick] [--only a,b] [--tolerance-scale X (0 forces every divergence out)]

    options:
      --backend epoll|legacy   override the build's default (also LOOP_BACKEND)
      --port P                 UDP port for run (default 0: any free port)
      --seconds N              run: stop by itself after N seconds (default: until a signal)
    """

let arguments = Arguments(CommandLine.arguments)
do {
    if arguments.flag("--help") || arguments.flag("-h") {
        print(usage)
        exit(0)
    }
    switch arguments.command {
    case "", "run": exit(try runEcho(arguments))
    case "child-loop": exit(try runChildLoop(arguments))
    case "compare": exit(try runCompare(arguments))
    default: throw UsageError("unknown command '\(arguments.command)'\n\n\(usage)")
    }
} catch {
    complain("loop-harness: \(error)")
    exit(2)
}
