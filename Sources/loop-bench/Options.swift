import CommandLineOptions
import Compat
import LoopTools

let usage = """
    usage: loop-bench [command] [options]

    commands:
      run          (default) every workload on both backends and the peers; prints the table,
                   writes JSON and a markdown copy of the table
      echo-server  a UDP echo server on one backend (the raw read callback), for the C client
      pipes        the pipes workload on one backend (run by `run` in a pinned child process)
      wakeup       worker-to-loop wake-up latency on one backend (run by `run` in a pinned child)
      idle         an idle loop with one heartbeat until SIGTERM; prints its CPU use and wake-ups
      rpc-server   a UdpServer answering bench requests with 64 bytes, until SIGTERM
      dispatch-order  the cost of dispatching in registration order: N always-ready pipes
                   reported in registration order, then in reverse (a sort every poll), on both
                   backends (or --backend) in this process, with ratios
                     --ready LIST (16,64,200)  --polls K (20000)  --runs R (5, the median is printed)
      rpc-client   keeps --concurrency requests of --size bytes in flight to --port; prints the rate
      scale fds|sleepers|jobs  the cost per event (or job) with N idle descriptors, N sleep
                   callbacks of 1 s, or N jobs at once, on one backend (run by `run` in a pinned child)
                     --counts LIST  --events K  --runs R  --idle-ms MS (sleepers: the idle CPU part)

    run options:
      --quick              tiny iteration counts: every workload once, in seconds (a smoke test)
      --only LIST          comma-separated workloads: udp-echo,rpc,pipes,wakeup,timers,idle,original,scale
      --json PATH          where the results go (default .build-bench/bench-latest.json,
                           with --quick .build-bench/bench-quick.json)
      --markdown PATH      the table as markdown (default: the JSON path with .md)
      --peers DIR          the compiled C peers (default scripts/peers/bin; built by scripts/bench)
      --original-driver PATH  the original workload's namespaces and nodes (default
                           scripts/lib/original_bench.py; needs root and loop-harness beside loop-bench)
      --label TEXT         the command recorded in the output (default: this command line)
      --busy-retries N     run a workload again up to N times while other processes use more than
                           10 % of a CPU during it (default 1, with --quick 0) and keep the quietest
                           attempt; the table records every workload's load and marks the busy ones

    child-mode options:
      --backend epoll|legacy
      --port P             echo-server, rpc-server: UDP port on 127.0.0.1 (default 0: any free port);
                           rpc-client: the server's port
      --seconds N          echo-server, rpc-server: stop by itself after N seconds (a safety net)
      --size B --concurrency C --warmup-ms MS --ms MS              rpc-client
      --samples N --warmup K                                       wakeup
      --pipes LIST --active A --writes W --runs R --warmup K   pipes: as scripts/peers/pipes-libevent
    """

/// The options of each command, declared for the strict parser: a typo, a stray word or a
/// value out of range is refused before anything runs. Defaults are the readers' (`int(_:default:)`),
/// as some depend on the workload (`scale fds` counts differently from `scale jobs`).
let benchCommands: [String: CommandOptions] = {
    let backend = Option.choice(
        "--backend", LoopBackendKind.allCases.map(\.rawValue), default: nil,
        "the loop to use (default: the build's, \(LoopBackendKind.buildDefault))")
    let port = Option.integer("--port", 0...65535, default: nil, "UDP port on 127.0.0.1; 0 takes any free one")
    let seconds = Option.integer(
        "--seconds", 0...31_536_000, default: nil, "stop by itself after this many seconds; 0: never")
    let list = "whole numbers separated by commas"
    func count(_ name: String, _ help: String) -> Option { .integer(name, 0...Int(Int32.max), default: nil, help) }
    let datagramsPerCall = count("--datagrams-per-call", "datagrams per recvmmsg/sendmmsg")
    func command(_ name: String, _ summary: String, _ options: [Option], operands: String? = nil) -> (
        String, CommandOptions
    ) {
        (
            name,
            CommandOptions(
                program: "loop-bench", command: name, summary: summary, options: options, operands: operands,
                common: [.help])
        )
    }
    return Dictionary(uniqueKeysWithValues: [
        command(
            "run", "Every workload on both backends and the peers; prints the table, writes JSON and a markdown copy.",
            [
                .flag("--quick", "tiny iteration counts: every workload once, in seconds (a smoke test)"),
                .text("--only", "LIST", expects: "workload names separated by commas", "the workloads to run"),
                .text(
                    "--json", "PATH",
                    "where the results go (default .build-bench/bench-latest.json, with --quick bench-quick.json)"),
                .text("--markdown", "PATH", "the table as markdown (default: the JSON path with .md)"),
                .text("--peers", "DIR", "the compiled C peers (default scripts/peers/bin)"),
                .text(
                    "--original-driver", "PATH",
                    "the original workload's driver (default scripts/lib/original_bench.py)"),
                .text("--label", "TEXT", "the command recorded in the output (default: this command line)"),
                count(
                    "--busy-retries",
                    "run a workload again this many times while other processes use more than 10 % of a CPU "
                        + "during it and keep the quietest attempt (default 1, with --quick 0)"),
            ]),
        command(
            "echo-server", "A UDP echo server on one backend (the raw read callback), for the C client.",
            [backend, port, seconds]),
        command(
            "pipes", "The pipes workload on one backend.",
            [
                backend, .text("--pipes", "LIST", expects: list, "pipe counts (default 100,500,1000,8000)"),
                count("--active", "active pipes (default 100)"), count("--writes", "writes per run (default 1000)"),
                count("--runs", "runs (default 9)"), count("--warmup", "warm-up runs (default 3)"),
            ]),
        command(
            "wakeup", "Worker-to-loop wake-up latency on one backend.",
            [
                backend, count("--samples", "samples (default 1000)"),
                count("--warmup", "warm-up samples (default 50)"),
            ]),
        command("idle", "An idle loop with one heartbeat until SIGTERM; prints its CPU use and wake-ups.", [backend]),
        command(
            "rpc-server", "A UdpServer answering bench requests with 64 bytes, until SIGTERM.",
            [backend, seconds, port, datagramsPerCall]),
        command(
            "dispatch-order", "The cost of dispatching in registration order, on both backends (or --backend).",
            [
                backend, .text("--ready", "LIST", expects: list, "ready pipe counts (default 16,64,200)"),
                count("--polls", "polls per run (default 20000)"),
                count("--runs", "runs; the median is printed (default 5)"),
            ]),
        command(
            "rpc-client", "Keeps --concurrency requests of --size bytes in flight to --port; prints the rate.",
            [
                backend, port, count("--size", "request size in bytes (default 64)"),
                count("--concurrency", "requests in flight (default 1)"), count("--warmup-ms", "warm-up (default 200)"),
                count("--ms", "measured time (default 1000)"), datagramsPerCall,
            ]),
        command(
            "scale",
            "The cost per event (or job) with N idle descriptors, N sleep callbacks or N jobs, on one backend.",
            [
                backend, .text("--counts", "LIST", expects: list, "the Ns"), count("--events", "events per run"),
                count("--runs", "runs (default 3)"), count("--max-ms", "fds: stop a run after this long (default 500)"),
                count("--idle-ms", "sleepers: the idle CPU part (default 2000)"),
            ], operands: "fds|sleepers|jobs"),
    ])
}()

/// One command's options, read with the defaults its workload gives.
struct Options {
    let command: String
    private let parsed: ParsedOptions

    init(_ arguments: Arguments) throws(CommandLineError) {
        command = arguments.command
        guard let declaration = benchCommands[command] else {
            throw .usage("loop-bench: unknown command '\(command)' (see loop-bench --help)")
        }
        parsed = try arguments.parse(declaration)
    }

    func flag(_ name: String) -> Bool { parsed.flag(name) }

    /// Words after the command that are not options (`scale fds`).
    var operands: [String] { parsed.operands }

    func value(_ name: String) -> String? { parsed.string(name) }

    func int(_ name: String, default fallback: Int) throws(CommandLineError) -> Int {
        parsed.int(name, default: fallback)
    }

    func ints(_ name: String, default fallback: [Int]) throws(CommandLineError) -> [Int] {
        try parsed.converted(name) { raw -> [Int]? in
            let parts = raw.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
            return parts.contains(nil) ? nil : parts.compactMap { $0 }
        } ?? fallback
    }

    /// `--backend`, else the build's default (LOOP_BACKEND is not read: a run names each child's).
    func backend() throws(CommandLineError) -> LoopBackendKind {
        value("--backend").flatMap(LoopBackendKind.init(rawValue:)) ?? .buildDefault
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
