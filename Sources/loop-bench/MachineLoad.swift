import Compat
import Glibc

/// The CPU time the whole machine spent busy, and the part that was this run's own: the
/// difference is what other processes took while a workload ran, which is what makes a
/// figure of a shared machine unreadable (a run made while another job built reported the raw
/// epoll echo at 1.28 × the C echo).
struct CPUSnapshot {
    /// Seconds every CPU spent in user, nice, system, irq and softirq time (/proc/stat's `cpu`
    /// line; idle, iowait and steal are not work of this machine's processes).
    let machineBusy: Double
    /// Seconds of this process and its reaped children (/proc/self/stat utime, stime, cutime,
    /// cstime): every workload waits for its children, so at a workload's end they are counted.
    let own: Double
    let wall: Int64

    static func now() -> CPUSnapshot {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var busy = 0.0
        if let line = firstLine("/proc/stat"), line.hasPrefix("cpu ") {
            let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
            // user nice system idle iowait irq softirq steal (guest is inside user)
            for i in [0, 1, 2, 5, 6] where i < fields.count { busy += fields[i] }
        }
        var own = 0.0
        if let line = firstLine("/proc/self/stat"), let paren = line.lastIndex(of: ")") {
            // After "pid (comm)": field 3 is the state; utime..cstime are fields 14-17.
            let fields = line[line.index(after: paren)...].split(separator: " ")
            for i in 11...14 where i < fields.count { own += Double(fields[i]) ?? 0 }
        }
        return CPUSnapshot(machineBusy: busy / ticks, own: own / ticks, wall: monotonicNanoseconds())
    }

    private static func firstLine(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 4096)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters()
    }
}

/// What the machine did besides this run while one workload ran.
struct WorkloadLoad: Sendable {
    let workload: String
    let seconds: Double
    /// Other processes' CPU over the workload, in % of one CPU.
    let othersPercent: Double
    /// This run's own, in % of one CPU.
    let ownPercent: Double
    /// 1, or more when a busy attempt was thrown away and the workload run again.
    let attempt: Int

    /// More than this share of a CPU taken by others marks the figures "busy".
    static let busyPercent = 10.0

    var busy: Bool { othersPercent > Self.busyPercent }

    init(_ workload: String, from start: CPUSnapshot, to end: CPUSnapshot, attempt: Int) {
        self.workload = workload
        let wall = Double(end.wall - start.wall) / 1e9
        seconds = wall
        let own = end.own - start.own
        ownPercent = wall > 0 ? own / wall * 100 : 0
        // Tick accounting can make the difference slightly negative on an idle machine.
        othersPercent = wall > 0 ? max(0, (end.machineBusy - start.machineBusy - own) / wall * 100) : 0
        self.attempt = attempt
    }
}
