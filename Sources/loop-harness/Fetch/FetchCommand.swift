import CommandLineOptions
import Compat
import Glibc
import HttpServer
import LoopTools

let fetchOptions = CommandOptions(
    command: "fetch",
    summary:
        "GETs URLs over the TcpServer's client: status, bytes and time per URL. Exits 1 if any URL got no response.",
    details: """
        Plain HTTP/1.1 (no TLS) to an IPv4 address, `localhost` or a name resolved before the
        loop starts. Connections to the same server are kept alive and reused. Redirects are
        reported with their Location, not followed; a 4xx or 5xx is a response, not a failure.
        A URL that cannot be fetched (malformed, refused, reset, timed out, past its deadline, a
        malformed reply) is reported on its own line; the others go on. On the legacy loop a
        connection that would be numbered past select's 1024 waits for a lower number.
        """,
    options: [
        .integer("--concurrency", 1...1024, default: 4, "URLs fetched at once"),
        .integer("--timeout-ms", 1...86_400_000, default: 10_000, "how long a fetch may go without a byte moving, ms"),
        .integer(
            "--deadline-ms", 1...86_400_000, default: nil,
            "how long a fetch may take in all, however steadily bytes move, ms; 10 × --timeout-ms unless given"),
        .integer(
            "--max-bytes", 1...(1 << 30), default: 64 << 20, "the largest response read; a larger one is an error"),
    ],
    operands: "URL…")

/// One URL's outcome.
struct FetchResult {
    let url: String
    var outcome: Result<HttpFetched, FetchFailure>?
    var milliseconds = 0.0
}

struct FetchFailure: Error, CustomStringConvertible {
    let description: String
}

/// `loop-harness fetch URL…`: the spider's half of the TcpServer, on either loop.
func runFetch(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(fetchOptions)
    let backend = try options.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    defer { try? loop.close() }
    var configuration = TcpServerConfiguration()
    configuration.maxMessageBytes = options.int("--max-bytes")
    let client = HttpClient(loop: loop, configuration: configuration)
    defer { client.tcp.close() }
    let timeoutMs = options.int("--timeout-ms")
    // Silence alone never ends a fetch whose server trickles a byte now and then.
    let deadlineMs = options.int("--deadline-ms", default: 10 * timeoutMs)
    var results = options.operands.map { FetchResult(url: $0) }
    var next = 0
    var running = 0
    var finished = 0

    /// Starts fetches until `--concurrency` run; a URL that cannot start is done at once.
    func startMore() {
        while running < options.int("--concurrency") && next < results.count {
            let index = next
            next += 1
            let started = monotonicNanoseconds()
            let url: HttpURL
            do { url = try HttpURL(results[index].url) } catch {
                results[index].outcome = .failure(FetchFailure(description: error.description))
                finished += 1
                continue
            }
            do {
                running += 1
                try client.get(url, timeoutMs: timeoutMs, deadlineMs: deadlineMs) { result in
                    running -= 1
                    finished += 1
                    results[index].milliseconds = Double(monotonicNanoseconds() - started) / 1e6
                    results[index].outcome = result.mapError { FetchFailure(description: $0.description) }
                    startMore()
                    if finished == results.count { loop.stop() }
                }
            } catch {
                running -= 1
                finished += 1
                results[index].outcome = .failure(FetchFailure(description: error.description))
            }
        }
    }
    startMore()
    if finished < results.count { _ = try loop.run() }

    var failed = 0
    for result in results {
        let outcome = result.outcome ?? .failure(FetchFailure(description: "interrupted"))
        switch outcome {
        case .success(let response):
            let location = response.field("location")
            if options.json {
                var fields: [(String, JSON)] = [
                    ("url", .string(result.url)), ("ok", .bool(true)), ("status", .int(response.status)),
                    ("bytes", .int(response.body.count)), ("ms", .number(result.milliseconds)),
                ]
                if let location { fields.append(("location", .string(location))) }
                say(JSON.object(fields).description)
            } else {
                let time = String(format2: result.milliseconds)
                say(
                    "\(response.status)  \(response.body.count) B  \(time) ms  \(result.url)"
                        + (location.map { "  → \($0) (not followed)" } ?? ""))
            }
        case .failure(let failure):
            failed += 1
            if options.json {
                say(
                    JSON.object([
                        ("url", .string(result.url)), ("ok", .bool(false)),
                        ("error", .string(failure.description)),
                    ]).description)
            } else {
                say("error  \(failure.description)  \(result.url)")
            }
        }
    }
    let stats = client.tcp.stats
    if options.json {
        say(
            JSON.object([
                ("fetched", .int(results.count - failed)), ("failed", .int(failed)),
                ("connections", .int(stats.connectsStarted)), ("reused", .int(stats.connectionsReused)),
                ("backend", .string(loop.kind.rawValue)),
            ]).description)
    } else {
        say(
            "\(results.count - failed) of \(results.count) fetched; \(stats.connectsStarted) connects, "
                + "\(stats.connectionsReused) reused, backend \(loop.kind)")
    }
    return failed == 0 ? 0 : 1
}
