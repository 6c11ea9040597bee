import Compat
import Glibc
import LoopTools

let usage = """
    usage: loop-harness <command> [options]

    commands:
      demo        a node and a client in one process: pings, 1 MiB echoes, a worker job, stats,
                  a timeout, then save-and-exit. Exits non-zero if any step fails.
      serve       an RPC node on 127.0.0.1: handlers for ping, echo, stats, work and save-and-exit
                  (loopback peers only); heartbeat; stats printed on exit (SIGINT/SIGTERM/SIGHUP)
                    --port P (default 0: any)  --seconds N  --save PATH (written on save-and-exit)
      ping        echo requests to a node:  --to 127.0.0.1:P  --count N (100)  --size S (64)
                    --concurrency C (1)  --timeout-ms T (5000); prints RTT p50/p99, throughput, errors
      stats       a running node's counters (JSON):  --to 127.0.0.1:P
      shutdown    ask a node to save and exit:  --to 127.0.0.1:P
      compare     the side-by-side scenarios on both backends in this process, one table; exits
                  non-zero when a scenario diverges beyond its tolerance
                    --quick  --only a,b  --tolerance-scale X (0 forces every divergence out)
      fuzz        random loop programs on epoll, legacy and the reference model, compared callback
                  for callback; every kind of divergence shrunk to a minimal script; exits 1 on any
                    --scripts N (1000)  --seed S (1)  --steps K (24)  --show M (3 per kind)
                    --from I (start at script I: reruns one script of a long run)
                    --print (print the scripts instead of running them)
                    --rules port|original (the model's rules)  --raw (no normalization)
      fuzz-process  one process-level script in this process (fuzz runs it):  --script TEXT
      run         (default) a raw loop: heartbeat and a UDP echo read callback  --port P  --seconds N
      child-loop  a bare loop that reports how it was shut down (tests and compare send it signals)
      timer-routing  a loop on a second thread; counts the main thread's interrupted sleeps (tests)
                    --prepared  --accept-unrouted
      fork-check  forks beside a loop with workers; checks both sides (tests)

    options for every command:
      --backend epoll|legacy   override the build's default (also LOOP_BACKEND)
      --json                   machine-readable output
      --datagram-size N        RPC datagram size (default 16400, the loopback size)
      --help                   this text
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
    case "timer-routing": exit(try runTimerRouting(arguments))
    case "fork-check": exit(try runForkCheck(arguments))
    case "compare": exit(try runCompare(arguments))
    case "serve": exit(try runServe(arguments))
    case "ping": exit(try runPingCommand(arguments))
    case "stats": exit(try runAdminCommand(arguments, .stats))
    case "shutdown": exit(try runAdminCommand(arguments, .saveAndExit))
    case "demo": exit(try runDemo(arguments))
    case "fuzz": exit(try runFuzz(arguments))
    case "fuzz-process": exit(try runFuzzProcess(arguments))
    case "attack": exit(try runAttackCommand(arguments))
    default: throw UsageError("unknown command '\(arguments.command)'\n\n\(usage)")
    }
} catch {
    sayError("loop-harness: \(error)")
    exit(2)
}
