import CommandLineOptions
import Compat
import Glibc
import LoopTools

let usage = """
    usage: loop-harness <command> [options]      (loop-harness <command> --help: its options)

    commands:
      demo        a node and a client in one process: pings, 1 MiB echoes, a worker job, stats,
                  a timeout, then save-and-exit. Exits non-zero if any step fails.
      serve       an RPC node (127.0.0.1 unless --bind): ping, echo, stats, work and save-and-exit
                  (trusted peers only: --trust); stats printed on exit (SIGINT/SIGTERM/SIGHUP);
                  --http PORT adds the admin console (a status page and Save & Exit);
                  --hosts FILE --id N makes it host N of a cluster (pings, a hosts table)
      ping        echo requests to a node: RTT p50/p99, throughput, errors
      stats       a running node's counters (JSON)
      shutdown    ask a node to save and exit
      fetch       GET URLs over the TcpServer's client: status, bytes and time per URL
      load        echo requests at a steady rate to a cluster's hosts (--hosts FILE), with failover;
                  sent, completed, retried, failed and latency, per phase and per host
      attack      flood a running node from 127.0.0.2 while pinging it; forged sources (scripts/attack)
      compare     the side-by-side scenarios on both backends in this process, one table; exits
                  non-zero when a scenario diverges beyond its tolerance
      fuzz        random loop programs on epoll, legacy and the reference model, compared callback
                  for callback; every kind of divergence shrunk to a minimal script; exits 1 on any
      run         a raw loop: heartbeat and a UDP echo read callback
      help [COMMAND]  this text, or a command's options
      --version   the version

    options for every command:
      --backend epoll|legacy   override the build's default (also LOOP_BACKEND)
      --json                   machine-readable output, errors included
      --datagram-size N        RPC datagram size (default 16400, the loopback size)
      --help                   the command's options

    exit status: 0 success, 1 failure, 2 usage error
    """

let version = "loop-harness 1.1.0 (this build's default backend: \(LoopBackendKind.buildDefault))"

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
    case "run": return try runEcho(arguments)
    case "attack": return try runAttackCommand(arguments)
    case "fetch": return try runFetch(arguments)
    case "load": return try runLoad(arguments)
    case "help", "--help", "-h": return try runHelp(arguments)
    case "--version":
        guard arguments.rest.isEmpty else { throw CommandLineError.usage("loop-harness: --version takes nothing after it") }
        say(version)
        return 0
    // No command at all used to start the raw loop, which never stops: `run` says so now.
    case "": throw CommandLineError.usage(usage)
    default:
        let what = arguments.command.hasPrefix("-") ? "the command comes first, not '\(arguments.command)'"
                                                    : "unknown command '\(arguments.command)'"
        throw CommandLineError.usage("loop-harness: \(what) (see loop-harness help)")
    }
}

/// `loop-harness help [COMMAND]`: the usage, or that command's `--help`.
func runHelp(_ arguments: Arguments) throws -> Int32 {
    switch arguments.rest.count {
    case 0:
        say(usage)
        return 0
    case 1 where !arguments.rest[0].hasPrefix("-"):
        return try dispatch(Arguments(["loop-harness", arguments.rest[0], "--help"]))
    default:
        throw CommandLineError.usage("loop-harness: help takes at most one command name (see loop-harness help)")
    }
}

runCommandLine(program: "loop-harness", Arguments(CommandLine.arguments), dispatch)
