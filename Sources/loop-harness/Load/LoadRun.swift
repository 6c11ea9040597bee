import Cluster
import Compat
import LoopTools
import UdpServer

/// The figures of one phase of a load run (or of the whole run).
struct LoadFigures {
    var name: String
    var sent = 0
    /// Answered with the echo intact.
    var completed = 0
    /// Attempts beyond each request's first.
    var retried = 0
    /// No host answered within the give-up time (or an error no host would change).
    var failed = 0
    /// Answered with bytes that are not the echo.
    var corrupt = 0
    var latencies = Sample()
    var startedNs: Int64
    var endedNs: Int64?

    var seconds: Double { Double((endedNs ?? monotonicNanoseconds()) - startedNs) / 1e9 }

    var json: JSON {
        .object([
            ("name", .string(name)), ("sent", .int(sent)), ("completed", .int(completed)), ("retried", .int(retried)),
            ("failed", .int(failed)), ("corrupt", .int(corrupt)),
            ("p50Ms", latencies.count > 0 ? .number(latencies.percentile(50)) : .null),
            ("p99Ms", latencies.count > 0 ? .number(latencies.percentile(99)) : .null),
            ("seconds", .number(seconds)),
        ])
    }
}

/// A run of `loop-harness load`: paces requests, keeps the figures per phase and per
/// host, and checks each request ends once and intact.
final class LoadRun {
    let request: LoadRequest
    let loop: Loop
    let failover: FailoverClient
    let rate: Int
    let maxInFlight: Int
    private(set) var phases: [LoadFigures]
    private var total: LoadFigures
    private var hostLatencies: [Sample]
    /// Requests sent and not yet ended, by serial: an ending for a serial not here ran twice.
    private var inFlight: Set<UInt64> = []
    private(set) var duplicateCompletions = 0
    private var nextSerial: UInt64 = 0
    private var pacing: Registration?
    private var sendingStartedNs: Int64 = 0
    private var stopping = false
    private var failures: [String: Int] = [:]

    init(loop: Loop, failover: FailoverClient, rate: Int, request: LoadRequest, maxInFlight: Int) {
        self.loop = loop
        self.failover = failover
        self.rate = rate
        self.request = request
        self.maxInFlight = maxInFlight
        let now = monotonicNanoseconds()
        self.phases = [LoadFigures(name: "start", startedNs: now)]
        self.total = LoadFigures(name: "total", startedNs: now)
        self.hostLatencies = Array(repeating: Sample(), count: failover.pings.table.count)
    }

    /// Starts sending; `seconds` > 0 stops it after that long.
    func start(seconds: Int) throws {
        let now = monotonicNanoseconds()
        sendingStartedNs = now
        phases[phases.count - 1].startedNs = now
        total.startedNs = now
        // Every ms: the requests due by now at `rate`, so the rate holds whatever the loop's tick.
        pacing = try loop.registerSleep(every: 1) { [unowned self] in
            self.sendDue()
            if seconds > 0 && monotonicNanoseconds() - self.sendingStartedNs >= Int64(seconds) * 1_000_000_000 {
                self.stopSending()
            }
        }
    }

    func startPhase(_ name: String) {
        guard !stopping else { return }
        let now = monotonicNanoseconds()
        phases[phases.count - 1].endedNs = now
        phases.append(LoadFigures(name: name, startedNs: now))
    }

    /// No more requests; the loop stops once those in flight have ended.
    func stopSending() {
        guard !stopping else { return }
        stopping = true
        if let pacing { try? loop.unregister(pacing) }
        pacing = nil
        phases[phases.count - 1].endedNs = monotonicNanoseconds()
        if failover.inFlight == 0 { loop.stop() }
    }

    private func sendDue() {
        let elapsedNs = monotonicNanoseconds() - sendingStartedNs
        // At most a second's worth at once: after a stall the rate resumes instead of bursting.
        let due = min(Int(Double(elapsedNs) / 1e9 * Double(rate)) - total.sent, rate)
        for _ in 0..<max(0, due) where failover.inFlight < maxInFlight {
            send()
        }
    }

    private func send() {
        nextSerial += 1
        let serial = nextSerial
        let (payload, type, expected) = request.message(serial: serial)
        let phase = phases.count - 1
        phases[phase].sent += 1
        total.sent += 1
        inFlight.insert(serial)
        failover.send(payload, type: type) { [unowned self] outcome in
            self.ended(serial, phase: phase, expected: expected, outcome)
        }
    }

    private func ended(_ serial: UInt64, phase: Int, expected: [UInt8], _ outcome: FailoverOutcome) {
        guard inFlight.remove(serial) != nil else {
            duplicateCompletions += 1
            return
        }
        let retried = outcome.attempts - 1
        phases[phase].retried += retried
        total.retried += retried
        switch outcome.result {
        case .success(let reply) where reply == expected:
            phases[phase].completed += 1
            total.completed += 1
            phases[phase].latencies.add(outcome.latencyMs)
            total.latencies.add(outcome.latencyMs)
            if let host = outcome.answeredBy { hostLatencies[host].add(outcome.latencyMs) }
        case .success:
            phases[phase].corrupt += 1
            total.corrupt += 1
        case .failure(let error):
            phases[phase].failed += 1
            total.failed += 1
            failures["\(error)", default: 0] += 1
        }
        if stopping && failover.inFlight == 0 { loop.stop() }
    }

    func report(hosts: HostsFile) -> LoadReport {
        total.endedNs = monotonicNanoseconds()
        let duplicates = duplicateCompletions + failover.stats.duplicateCompletions
        let hostRows: [JSON] = hosts.hosts.map { host in
            let stats = failover.hostStats[host.id]
            let latencies = hostLatencies[host.id]
            return .object([
                ("id", .int(host.id)), ("address", .string(host.address.ipString)), ("attempts", .int(stats.attempts)),
                ("completed", .int(stats.answered)), ("timedOut", .int(stats.timedOut)),
                ("refused", .int(stats.refused)),
                ("p50Ms", latencies.count > 0 ? .number(latencies.percentile(50)) : .null),
                ("p99Ms", latencies.count > 0 ? .number(latencies.percentile(99)) : .null),
            ])
        }
        return LoadReport(
            total: total, phases: phases, hostRows: hostRows, unfinished: inFlight.count,
            duplicateCompletions: duplicates, waitedForHost: failover.stats.waitedForHost,
            failures: failures, backend: loop.kind)
    }
}

/// What `loop-harness load` prints.
struct LoadReport {
    let total: LoadFigures
    let phases: [LoadFigures]
    let hostRows: [JSON]
    /// Requests still in flight when a second signal abandoned them.
    let unfinished: Int
    let duplicateCompletions: Int
    let waitedForHost: Int
    let failures: [String: Int]
    let backend: LoopBackendKind

    var ok: Bool {
        total.sent > 0 && total.failed == 0 && total.corrupt == 0 && duplicateCompletions == 0 && unfinished == 0
    }

    var json: JSON {
        .object([
            ("ok", .bool(ok)), ("backend", .string(backend.rawValue)),
            ("sent", .int(total.sent)), ("completed", .int(total.completed)), ("retried", .int(total.retried)),
            ("failed", .int(total.failed)), ("corrupt", .int(total.corrupt)), ("unfinished", .int(unfinished)),
            ("duplicateCompletions", .int(duplicateCompletions)), ("waitedForHost", .int(waitedForHost)),
            ("failures", .object(failures.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ("p50Ms", total.latencies.count > 0 ? .number(total.latencies.percentile(50)) : .null),
            ("p99Ms", total.latencies.count > 0 ? .number(total.latencies.percentile(99)) : .null),
            ("seconds", .number(total.seconds)),
            ("phases", .array(phases.map(\.json))),
            ("hosts", .array(hostRows)),
        ])
    }

    var text: String {
        func ms(_ sample: Sample, _ p: Double) -> String { sample.count > 0 ? format(sample.percentile(p), 2) : "-" }
        var lines = [
            "\(total.sent) sent, \(total.completed) completed, \(total.retried) retried, \(total.failed) failed"
                + (total.corrupt > 0 ? ", \(total.corrupt) corrupt" : "")
                + (unfinished > 0 ? ", \(unfinished) abandoned" : "")
                + (duplicateCompletions > 0 ? ", \(duplicateCompletions) ENDED TWICE" : "")
                + " in \(format(total.seconds, 1)) s (backend \(backend))",
            "latency p50 \(ms(total.latencies, 50)) ms, p99 \(ms(total.latencies, 99)) ms",
        ]
        if !failures.isEmpty {
            lines.append(
                "failures: "
                    + failures.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))
        }
        if phases.count > 1 {
            lines.append("phase                            sent  completed  retried  failed  p50 ms  p99 ms")
            for phase in phases {
                lines.append(
                    pad(phase.name, 30) + padLeft("\(phase.sent)", 7) + padLeft("\(phase.completed)", 11)
                        + padLeft("\(phase.retried)", 9) + padLeft("\(phase.failed)", 8)
                        + padLeft(ms(phase.latencies, 50), 8) + padLeft(ms(phase.latencies, 99), 8))
            }
        }
        lines.append("host  address            attempts  completed  timed out  refused")
        for case .object(let row) in hostRows {
            let value = { (key: String) in row.first { $0.0 == key }.map { ConsolePage.text($0.1) } ?? "" }
            lines.append(
                pad(value("id"), 6) + pad(value("address"), 17) + padLeft(value("attempts"), 10)
                    + padLeft(value("completed"), 11) + padLeft(value("timedOut"), 11) + padLeft(value("refused"), 9))
        }
        return lines.joined(separator: "\n")
    }

    private func pad(_ text: String, _ width: Int) -> String {
        let cut = String(text.prefix(width - 1))
        return cut + String(repeating: " ", count: max(1, width - cut.count))
    }

    private func padLeft(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(1, width - text.count)) + text
    }
}

/// What the load client sends.
enum LoadRequest {
    /// The port's echo of `size` bytes: the serial, then a pattern; the reply must be the same bytes.
    case echo(size: Int)
    /// The cluster's ping of a client (`PingMessage.probe`, type 0x11), which an original node
    /// answers too: the reply must be empty. A migration from the original runs on these.
    case ping

    /// The payload and type of request `serial`, and the reply it must get.
    func message(serial: UInt64) -> (payload: [UInt8], type: UInt8, expected: [UInt8]) {
        switch self {
        case .echo(let size):
            var payload = [UInt8](repeating: 0, count: size)
            for i in 0..<8 { payload[i] = UInt8(truncatingIfNeeded: serial >> (56 - 8 * UInt64(i))) }
            for i in 8..<size { payload[i] = UInt8(truncatingIfNeeded: i &* 31 &+ Int(serial & 0xff)) }
            return (payload, NodeMessage.echo.rawValue, payload)
        case .ping:
            return (PingMessage.probe.bytes, pingMessageType, [])
        }
    }
}
