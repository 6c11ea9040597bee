import Compat
import UdpServer

/// The timings of `FailoverClient`.
public struct FailoverConfiguration: Sendable, Equatable {
    /// One attempt on one host may go this long without progress before the request moves on.
    public var attemptTimeoutMs = 1_000
    /// A request that has not succeeded on any host this long after it was sent fails.
    public var giveUpMs = 30_000
    /// How often requests waiting for a live host look again.
    public var waitCheckMs = 10

    /// The defaults: 1 s an attempt, 30 s a request, a 10 ms wait check.
    public init() {}
}

/// Why a request sent through `FailoverClient` failed.
public enum FailoverError: Error, Equatable, CustomStringConvertible {
    /// No host answered within `giveUpMs`; the last attempt's error, if there was an attempt.
    case gaveUp(attempts: Int, lastError: RpcError?)
    /// An error no other host would change (the message is too large, the client is shutting down).
    case notRetriable(RpcError)

    public var description: String {
        switch self {
        case .gaveUp(let attempts, let last):
            return "gave up after \(attempts) attempt\(attempts == 1 ? "" : "s")"
                + (last.map { " (last: \($0))" } ?? "")
        case .notRetriable(let error): return "\(error)"
        }
    }
}

/// How a request sent through `FailoverClient` ended: exactly once per request.
public struct FailoverOutcome: Sendable {
    /// The reply, or why no host gave one.
    public let result: Result<[UInt8], FailoverError>
    /// Attempts made, the last included.
    public let attempts: Int
    /// The host whose reply ended it, if one did.
    public let answeredBy: Int?
    /// From the first send to the end, ms.
    public let latencyMs: Double
}

/// What one host did with the attempts sent to it.
public struct FailoverHostStats: Sendable, Equatable {
    /// Attempts sent to it.
    public var attempts = 0
    /// Attempts it answered.
    public var answered = 0
    /// Attempts that timed out on it.
    public var timedOut = 0
    /// Error replies and cancel ACKs: the host refused the request.
    public var refused = 0
}

/// What `FailoverClient` counts.
public struct FailoverStats: Sendable, Equatable {
    /// Requests sent with `send`.
    public var requests = 0
    /// Requests that ended with a reply.
    public var succeeded = 0
    /// Requests that ended with an error.
    public var failed = 0
    /// Attempts beyond each request's first.
    public var retried = 0
    /// An attempt that ended for a request already ended: must stay 0 (each request ends once).
    public var duplicateCompletions = 0
    /// Times a request found no live host and waited for one.
    public var waitedForHost = 0
}

/// Requests to a cluster with failover, as the original's `Multicast` does: each
/// request goes to the next live host in turn; an attempt that times out or is refused
/// marks that host suspect and the same request goes to another live host, until one
/// answers or `giveUpMs` passes. Liveness comes from a `PingServer` (the client pings
/// every host); a suspect host is used again once a later ping reply shows it answering.
/// At most one attempt of a request is in flight at a time, so a request's completion
/// runs exactly once, after its last attempt has ended.
public final class FailoverClient {
    /// The loop whose thread runs the client and every callback.
    public let loop: Loop
    /// The RPC server the requests travel on.
    public let server: UdpServer
    /// The ping server whose hosts table says which hosts are alive.
    public let pings: PingServer
    /// The timings given at creation.
    public let configuration: FailoverConfiguration
    /// What the client has counted so far.
    public private(set) var stats = FailoverStats()
    /// Per host ID.
    public private(set) var hostStats: [FailoverHostStats]

    private struct Pending {
        let payload: [UInt8]
        let type: UInt8
        let startedAt: Int64
        let startedNs: Int64
        var attempts = 0
        var lastError: RpcError?
        var lastHost: Int?
        /// The attempt in flight, if any.
        var attemptID: UInt64?
        let completion: (FailoverOutcome) -> Void
    }

    private var pending: [UInt64: Pending] = [:]
    /// Requests with no attempt in flight, waiting for a usable host, oldest first.
    private var waiting: [UInt64] = []
    private var nextRequestID: UInt64 = 0
    private var nextAttemptID: UInt64 = 0
    /// Round-robin position over the hosts.
    private var cursor = 0
    /// When each host was last found failing: it is suspect until a ping reply after that.
    private var suspectSince: [Int: Int64] = [:]
    private var waitRegistration: Registration?

    /// A client sending over `server` to the hosts `pings` watches.
    public init(
        loop: Loop, server: UdpServer, pings: PingServer, configuration: FailoverConfiguration = FailoverConfiguration()
    ) {
        self.loop = loop
        self.server = server
        self.pings = pings
        self.configuration = configuration
        self.hostStats = Array(repeating: FailoverHostStats(), count: pings.table.count)
    }

    /// Requests not yet ended.
    public var inFlight: Int { pending.count }

    /// Sends `payload` as a request of `type`; `completion` runs exactly once, later, on the loop thread.
    public func send(_ payload: [UInt8], type: UInt8, completion: @escaping (FailoverOutcome) -> Void) {
        nextRequestID += 1
        let id = nextRequestID
        stats.requests += 1
        pending[id] = Pending(
            payload: payload, type: type, startedAt: loop.now, startedNs: monotonicNanoseconds(),
            completion: completion)
        launch(id)
    }

    /// Whether `id` may take an attempt now: alive by the pings, and not suspect.
    public func isUsable(_ id: Int) -> Bool {
        guard pings.isAlive(id) else { return false }
        guard let since = suspectSince[id] else { return true }
        if let answered = pings.table[id].lastReplyAt, answered > since {
            suspectSince[id] = nil
            return true
        }
        return false
    }

    private func launch(_ id: UInt64) {
        guard var request = pending[id] else { return }
        let now = loop.now
        let deadline = request.startedAt + Int64(configuration.giveUpMs)
        guard now < deadline else {
            finish(id, .failure(.gaveUp(attempts: request.attempts, lastError: request.lastError)), by: nil)
            return
        }
        guard let host = chooseHost(avoiding: request.lastHost) else {
            stats.waitedForHost += 1
            waiting.append(id)
            armWaitCheck()
            return
        }
        if request.attempts > 0 { stats.retried += 1 }
        request.attempts += 1
        request.lastHost = host
        nextAttemptID += 1
        let attempt = nextAttemptID
        request.attemptID = attempt
        pending[id] = request
        hostStats[host].attempts += 1
        let timeout = Int(min(Int64(configuration.attemptTimeoutMs), deadline - now))
        server.sendRequest(
            request.payload, type: request.type, to: pings.table[host].host.address,
            timeoutMs: max(1, timeout), niceness: 0
        ) { [weak self] result in
            self?.attemptEnded(id, attempt: attempt, host: host, result)
        }
    }

    /// The next usable host after the cursor, preferring one other than `avoiding`.
    private func chooseHost(avoiding: Int?) -> Int? {
        let count = pings.table.count
        guard count > 0 else { return nil }
        var fallback: Int?
        for step in 0..<count {
            let host = (cursor + step) % count
            guard isUsable(host) else { continue }
            if host == avoiding {
                fallback = fallback ?? host
                continue
            }
            cursor = (host + 1) % count
            return host
        }
        return fallback
    }

    private func attemptEnded(_ id: UInt64, attempt: UInt64, host: Int, _ result: RpcResult) {
        guard var request = pending[id], request.attemptID == attempt else {
            stats.duplicateCompletions += 1
            return
        }
        request.attemptID = nil
        switch result {
        case .success(let reply):
            hostStats[host].answered += 1
            pending[id] = request
            finish(id, .success(reply), by: host)
            return
        case .failure(let error):
            request.lastError = error
            pending[id] = request
            switch error {
            case .messageTooLarge, .shuttingDown, .cancelled:
                finish(id, .failure(.notRetriable(error)), by: nil)
                return
            case .noSlots:
                // This client is out of slots, not the host at fault: wait, then try again.
                waiting.append(id)
                armWaitCheck()
                return
            case .timedOut:
                hostStats[host].timedOut += 1
            case .remote, .rejectedByPeer:
                hostStats[host].refused += 1
            }
            suspectSince[host] = loop.now
            launch(id)
        }
    }

    private func finish(_ id: UInt64, _ result: Result<[UInt8], FailoverError>, by host: Int?) {
        guard let request = pending.removeValue(forKey: id) else {
            stats.duplicateCompletions += 1
            return
        }
        switch result {
        case .success: stats.succeeded += 1
        case .failure: stats.failed += 1
        }
        let latency = Double(monotonicNanoseconds() - request.startedNs) / 1e6
        request.completion(
            FailoverOutcome(result: result, attempts: request.attempts, answeredBy: host, latencyMs: latency))
    }

    // MARK: Waiting for a host

    private func armWaitCheck() {
        guard waitRegistration == nil else { return }
        waitRegistration = try? loop.registerSleep(every: configuration.waitCheckMs) { [unowned self] in
            self.retryWaiting()
        }
        // A loop that cannot take the registration (closed): nothing would ever retry them.
        if waitRegistration == nil { failWaiting() }
    }

    private func retryWaiting() {
        let ids = waiting
        waiting.removeAll()
        for id in ids { launch(id) }
        if waiting.isEmpty, let waitRegistration {
            try? loop.unregister(waitRegistration)
            self.waitRegistration = nil
        }
    }

    private func failWaiting() {
        let ids = waiting
        waiting.removeAll()
        for id in ids {
            let request = pending[id]
            finish(id, .failure(.gaveUp(attempts: request?.attempts ?? 0, lastError: request?.lastError)), by: nil)
        }
    }
}
