import CommandLineOptions
import Compat
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
      (the processes the tests, compare and fuzz start to watch a loop from outside are loop-probe's)
      --version   the version

    options for every command:
      --backend epoll|legacy   override the build's default (also LOOP_BACKEND)
      --json                   machine-readable output, errors included
      --datagram-size N        RPC datagram size to every peer (default: 16400 to this node's
                               own addresses, 1462 to every other, as the original)
      --help                   the command's options

    exit status: 0 success, 1 failure, 2 usage error
    """

let version = "loop-harness 1.1.0 (this build's default backend: \(LoopBackendKind.buildDefault))"

/// `loop-harness help [COMMAND]`: the usage, or that command's `--help`.
func runHelp(_ arguments: Arguments) throws -> Int32 {
    try runHelp(program: "loop-harness", usage: usage, arguments, dispatch: dispatch)
}
