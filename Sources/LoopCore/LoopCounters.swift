/// One consistent-enough snapshot of everything the loop counts.
public struct LoopCounters: Sendable, Equatable, CustomStringConvertible {
    /// The backend of the loop that counted.
    public var backend: LoopBackendKind
    /// Real-timer ticks (SIGALRM, or the 1 ms timerfd's expirations).
    public var alarms = 0
    /// Quickpoll-timer ticks (SIGVTALRM, or the 10 ms timerfd's expirations).
    public var vtAlarms = 0
    /// Quickpolls run.
    public var quickPolls = 0
    /// Quickpolls refused because one was already running.
    public var quickPollsRefused = 0
    /// SIGCHLDs caught (legacy: worker wake-ups and children).
    public var sigChlds = 0
    /// Queued signals (`sigqueue`) caught, each a wake-up.
    public var sigQueues = 0
    /// SIGPIPEs counted (and so kept from terminating the process).
    public var sigPipes = 0
    /// SIGIOs counted.
    public var sigIOs = 0
    /// Other signals that reached a handler of the loop.
    public var sigOthers = 0
    /// Wake-ups that reached the loop (eventfd reads, or SIGCHLD/sigqueue deliveries).
    public var wakeups = 0
    /// Loop iterations, quickpolls included.
    public var polls = 0
    /// Callbacks run, by niceness 0, 1, 2.
    public var callbacks: [Int] = [0, 0, 0]
    /// Sleep callbacks run.
    public var sleepCallbacks = 0
    /// One-shot timers run (`EventLoop.after`).
    public var timerCallbacks = 0
    /// Worker-job completions run.
    public var jobsCompleted = 0
    /// Events dropped because their registration went away within the batch.
    public var staleEvents = 0
    /// Registrations live now (read, write, sleep and pending timers).
    public var registrations = 0
    /// The CPU-usage average, in percent (`EventLoop.cpuUsage`).
    public var cpuUsage: Double = 0

    package init(backend: LoopBackendKind) { self.backend = backend }

    /// Name/value pairs in a fixed order, for tables and JSON.
    public var fields: [(String, Int)] {
        [
            ("alarms", alarms), ("vtalarms", vtAlarms), ("quickpolls", quickPolls),
            ("quickpollsRefused", quickPollsRefused), ("sigchlds", sigChlds), ("sigqueues", sigQueues),
            ("sigpipes", sigPipes), ("sigios", sigIOs), ("sigothers", sigOthers), ("wakeups", wakeups),
            ("polls", polls), ("callbacks0", callbacks[0]), ("callbacks1", callbacks[1]),
            ("callbacks2", callbacks[2]), ("sleepCallbacks", sleepCallbacks),
            ("timerCallbacks", timerCallbacks), ("jobsCompleted", jobsCompleted), ("staleEvents", staleEvents),
            ("registrations", registrations),
        ]
    }

    public var description: String {
        "backend=\(backend) " + fields.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
            + " cpu=\(Int(cpuUsage.rounded()))%"
    }

}
