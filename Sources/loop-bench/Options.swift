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
      --only LIST          comma-separated workloads: udp-echo,rpc,pipes,wakeup,timers,idle,scale
      --json PATH          where the results go (default .build-bench/bench-latest.json,
                           with --quick .build-bench/bench-quick.json)
      --markdown PATH      the table as markdown (default: the JSON path with .md)
      --peers DIR          the compiled C peers (default scripts/peers/bin; built by scripts/bench)
      --label TEXT         the command recorded in the output (default: this command line)

    child-mode options:
      --backend epoll|legacy
      --port P             echo-server, rpc-server: UDP port on 127.0.0.1 (default 0: any free port);
                           rpc-client: the server's port
      --seconds N          echo-server, rpc-server: stop by itself after N seconds (a safety net)
      --size B --concurrency C --warmup-ms MS --ms MS              rpc-client
      --samples N --warmup K                                       wakeup
      --pipes LIST --active A --writes W --runs R --warmup K   pipes: as scripts/peers/pipes-libevent
    """

/// Minimal `--name value` / `--flag` parsing; the package takes no dependencies.
struct Options {
    let command: String
    private let rest: [String]

    init(_ argv: [String]) {
        command = argv.count > 1 && !argv[1].hasPrefix("-") ? argv[1] : "run"
        rest = Array(argv.dropFirst(argv.count > 1 && !argv[1].hasPrefix("-") ? 2 : 1))
    }

    func flag(_ name: String) -> Bool { rest.contains(name) }

    /// Words after the command that are neither options nor their values (`scale fds`).
    var operands: [String] {
        var result: [String] = []
        var i = 0
        while i < rest.count {
            if rest[i].hasPrefix("--") {
                i += rest.count > i + 1 && !rest[i + 1].hasPrefix("--") ? 2 : 1
            } else {
                result.append(rest[i])
                i += 1
            }
        }
        return result
    }

    func value(_ name: String) -> String? {
        guard let i = rest.firstIndex(of: name), i + 1 < rest.count else { return nil }
        return rest[i + 1]
    }

    func int(_ name: String, default fallback: Int) throws(UsageError) -> Int {
        guard let raw = value(name) else { return fallback }
        guard let v = Int(raw) else { throw UsageError("\(name) takes a whole number, not '\(raw)'") }
        return v
    }

    func ints(_ name: String, default fallback: [Int]) throws(UsageError) -> [Int] {
        guard let raw = value(name) else { return fallback }
        var values: [Int] = []
        for part in raw.split(separator: ",") {
            guard let v = Int(part) else { throw UsageError("\(name) takes numbers separated by commas, not '\(raw)'") }
            values.append(v)
        }
        return values
    }

    func backend() throws(UsageError) -> LoopBackendKind {
        guard let raw = value("--backend") else { return .buildDefault }
        guard let kind = LoopBackendKind(rawValue: raw) else {
            throw UsageError("--backend takes epoll or legacy, not '\(raw)'")
        }
        return kind
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
