import Compat
import Glibc
import UdpServer

/// The timings of `PingServer`.
public struct PingConfiguration: Sendable, Equatable {
    /// How often the sleep callback launches pings: the original's `pingSpacer`
    /// (100 ms, and never more than 1000).
    public var intervalMs = 100
    /// No reply for this long and a host is dead: the original's `deadHostTimeout` (4000 ms).
    public var deadAfterMs = 4_000
    /// Pings in flight at once, over all hosts: the original's `s_outstandingPings < 5`.
    public var maxOutstanding = 5
    /// How long a going-down note waits for each host's acknowledgement: the original's 3 s.
    public var goingDownTimeoutMs = 3_000

    /// The original's timings.
    public init() {}

    /// The values `intervalMs` may take.
    public static let intervalRange = 1...1_000
    /// The values `deadAfterMs` may take.
    public static let deadAfterRange = 10...3_600_000

    /// Whether each value is in its range (the range is in the error).
    package func validated() throws(PingConfigurationError) -> PingConfiguration {
        guard Self.intervalRange.contains(intervalMs) else { throw .intervalOutOfRange(intervalMs) }
        guard Self.deadAfterRange.contains(deadAfterMs) else { throw .deadAfterOutOfRange(deadAfterMs) }
        guard deadAfterMs > intervalMs else { throw .deadAfterNotAboveInterval(deadAfterMs, intervalMs) }
        guard maxOutstanding >= 1 else { throw .maxOutstandingBelowOne(maxOutstanding) }
        guard goingDownTimeoutMs >= 1 else { throw .goingDownTimeoutBelowOne(goingDownTimeoutMs) }
        return self
    }
}

/// A `PingConfiguration` value out of range.
public enum PingConfigurationError: Error, Equatable, CustomStringConvertible {
    /// `intervalMs` is outside `PingConfiguration.intervalRange`.
    case intervalOutOfRange(Int)
    /// `deadAfterMs` is outside `PingConfiguration.deadAfterRange`.
    case deadAfterOutOfRange(Int)
    /// `deadAfterMs` (first) is not longer than `intervalMs` (second).
    case deadAfterNotAboveInterval(Int, Int)
    /// `maxOutstanding` is below 1.
    case maxOutstandingBelowOne(Int)
    /// `goingDownTimeoutMs` is below 1.
    case goingDownTimeoutBelowOne(Int)

    public var description: String {
        switch self {
        case .intervalOutOfRange(let ms):
            return "a ping interval of \(ms) ms is outside \(PingConfiguration.intervalRange)"
        case .deadAfterOutOfRange(let ms):
            return "a dead-host timeout of \(ms) ms is outside \(PingConfiguration.deadAfterRange)"
        case .deadAfterNotAboveInterval(let dead, let interval):
            return "a dead-host timeout of \(dead) ms must be longer than the ping interval (\(interval) ms)"
        case .maxOutstandingBelowOne(let n): return "at most \(n) pings in flight: at least 1 is needed"
        case .goingDownTimeoutBelowOne(let ms): return "a going-down timeout of \(ms) ms: at least 1 is needed"
        }
    }
}

/// What `PingServer` counts beyond the hosts table.
public struct PingServerStats: Sendable, Equatable {
    /// Ping requests answered (from members and from anyone else).
    public var pingsAnswered = 0
    /// Ping requests whose payload was not a `PingInfo`: an EINVAL error reply.
    public var malformedPings = 0
    /// Going-down notes from an address that is not the member's own: EPERM, and ignored,
    /// or anyone could declare the cluster dead.
    public var refusedNotes = 0
    /// Pings left unanswered while going down.
    public var pingsDiscarded = 0

    /// Every counter by name, for a status page.
    public var fields: [(String, Int)] {
        [
            ("pingsAnswered", pingsAnswered), ("malformedPings", malformedPings), ("refusedNotes", refusedNotes),
            ("pingsDiscarded", pingsDiscarded),
        ]
    }
}

/// The original's `PingServer`, in its role of keeping the hosts table: a sleep
/// callback pings the hosts in turn over the RPC server (type 0x11), at most one ping
/// in flight per host and `maxOutstanding` in all; replies give each host its RTT,
/// last-seen time and what it runs; a host silent for `deadAfterMs` is dead. A node
/// that saves and exits tells the others first (`broadcastGoingDown`), and they count
/// it dead at once instead of after the timeout, as the original's shutdown notes do.
///
/// A node (`selfID` set) answers pings with its own `PingInfo`; a client of the cluster
/// (`selfID` nil) only pings, to know which hosts are alive.
public final class PingServer {
    /// The loop whose thread runs the pings and every callback.
    public let loop: Loop
    /// The RPC server the pings travel on (it must be started).
    public let server: UdpServer
    /// The timings, checked at creation.
    public let configuration: PingConfiguration
    /// This node's ID in the hosts file; nil for a client of the cluster.
    public let selfID: Int?
    /// The hosts table: a row per host, in ID order.
    public private(set) var table: [HostStatus]
    /// What the server has counted beyond the table.
    public private(set) var stats = PingServerStats()
    /// Runs after a host turns alive or dead (host ID, alive).
    public var onChange: (Int, Bool) -> Void = { _, _ in }

    private var sleepRegistration: Registration?
    /// The next host the cycle looks at: the original's `m_i`.
    private var nextIndex = 0
    private var outstanding = 0
    private var nextPingID: UInt64 = 0
    private var handles: [Int: RequestHandle] = [:]
    /// Set by `broadcastGoingDown`: pings go unanswered from then on, so that no host counts
    /// this one alive again while it drains (a note it did not get, a ping that crossed the note).
    public private(set) var isGoingDown = false
    /// Non-members that pinged this node lately (clients of the cluster), with when:
    /// they get the going-down note too, so that they stop sending here before the drain.
    private var observers: [PeerAddress: Int64] = [:]
    /// A bound on `observers`: pings from many addresses cannot grow it, or the note's fan-out.
    package static let maxObservers = 64
    /// An unanswered ping's resends: the original's backoff and max wait (PingServer.cpp:571-585).
    package static let resendBackoffMs = 1_000
    package static let resendMaxWaitMs = 2_000

    /// A ping server for `hosts` on `server`; it pings once `start()` is called. Throws when `configuration` is out of range.
    public init(
        loop: Loop, server: UdpServer, hosts: HostsFile, selfID: Int?,
        configuration: PingConfiguration = PingConfiguration()
    ) throws(PingConfigurationError) {
        self.loop = loop
        self.server = server
        self.configuration = try configuration.validated()
        self.selfID = selfID
        self.table = hosts.hosts.map { HostStatus(host: $0, isSelf: $0.id == selfID) }
    }

    /// Answers pings and starts pinging (again, after `broadcastGoingDown`: a node that stayed).
    public func start() throws(LoopError) {
        isGoingDown = false
        server.registerHandler(type: pingMessageType) { [unowned self] request in self.handle(request) }
        // A member alone in its hosts file has no one to ping: no timer, so that it rests.
        guard sleepRegistration == nil, table.contains(where: { !$0.isSelf }) else { return }
        sleepRegistration = try loop.registerSleep(every: configuration.intervalMs) { [unowned self] in self.tick() }
    }

    /// Stops pinging and answering; pings in flight are cancelled.
    public func stop() {
        if let sleepRegistration { try? loop.unregister(sleepRegistration) }
        sleepRegistration = nil
        server.unregisterHandler(type: pingMessageType)
        for handle in handles.values { server.cancel(handle) }
    }

    /// Whether host `id` counts as alive now; false for an ID not in the table.
    public func isAlive(_ id: Int) -> Bool { table.indices.contains(id) && table[id].alive }

    /// The member IDs alive now, in ID order.
    public var aliveIDs: [Int] { table.filter(\.alive).map(\.host.id) }

    /// Tells every other member this node is going down, so that they count it dead
    /// now: the original's 5-byte shutdown note (PingServer.cpp:2424-2500). `completion`
    /// runs once every note has been acknowledged or has timed out. From now on pings go
    /// unanswered (`discardRequest`): an original counts any reply, even an error, as a sign
    /// of life (PingServer.cpp:648). A client of the cluster (no ID) has no one to tell.
    public func broadcastGoingDown(_ completion: @escaping () -> Void) {
        isGoingDown = true
        if let sleepRegistration { try? loop.unregister(sleepRegistration) }
        sleepRegistration = nil
        guard let selfID else {
            completion()
            return
        }
        let now = loop.now
        let recent = observers.filter { now - $0.value < Int64(configuration.deadAfterMs) }.keys
        // The members that count on this node: those it counts alive, and those that pinged
        // it lately (one just started counts everyone dead until their first replies). A member
        // silent both ways is not waiting, and would hold the exit for the acknowledgement timeout.
        let deadAfter = Int64(configuration.deadAfterMs)
        let others =
            table.filter { status in
                !status.isSelf && (status.alive || status.pingedUsAt.map { now - $0 < deadAfter } ?? false)
            }.map(\.host.address) + recent.sorted { ($0.ip, $0.port) < ($1.ip, $1.port) }
        guard !others.isEmpty else {
            completion()
            return
        }
        var remaining = others.count
        let note = PingMessage.goingDown(hostID: Int32(selfID)).bytes
        for address in others {
            server.sendRequest(
                note, type: pingMessageType, to: address,
                timeoutMs: configuration.goingDownTimeoutMs, niceness: 0
            ) { _ in
                remaining -= 1
                if remaining == 0 { completion() }
            }
        }
    }

    // MARK: Pinging

    /// The original's `sendPingsToAll`: one round of the cycle, stopping early when
    /// `maxOutstanding` pings are in flight; hosts with a ping in flight are skipped.
    func tick() {
        let now = loop.now
        refreshAll(now: now)
        guard !table.isEmpty else { return }
        var looked = 0
        while looked < table.count && outstanding < configuration.maxOutstanding {
            let index = nextIndex
            nextIndex = (nextIndex + 1) % table.count
            looked += 1
            if table[index].isSelf || table[index].pingInFlight != nil { continue }
            ping(index, now: now)
        }
    }

    private func ping(_ index: Int, now: Int64) {
        nextPingID += 1
        let id = nextPingID
        table[index].pingInFlight = (id, now, monotonicNanoseconds())
        table[index].pingsSent += 1
        outstanding += 1
        // The ping's own timeout is the dead-host timeout: by then the host is dead
        // by age anyway, and the next ping goes out on the next tick.
        // A member sends its PingInfo, as the original does; a client the 3-byte ping of a
        // stranger, which an original answers without logging "No host".
        let payload = ownInfo.map { PingMessage.info($0).bytes } ?? PingMessage.probe.bytes
        // Unanswered, it is sent again after 1 s, then every 2 s, as the original's
        // (PingServer.cpp:571-585: backoff 1000 ms, max wait 2000 ms), not every 200 ms.
        let handle = server.sendRequest(
            payload, type: pingMessageType, to: table[index].host.address,
            timeoutMs: configuration.deadAfterMs, niceness: 0,
            backoffMs: Self.resendBackoffMs, maxWaitMs: Self.resendMaxWaitMs
        ) { [weak self] result in
            self?.pingEnded(index, id: id, result)
        }
        handles[index] = handle
    }

    private func pingEnded(_ index: Int, id: UInt64, _ result: RpcResult) {
        guard let inFlight = table[index].pingInFlight, inFlight.id == id else { return }
        table[index].pingInFlight = nil
        handles[index] = nil
        outstanding -= 1
        let now = loop.now
        switch result {
        case .success:
            // A reply to a ping sent before the host's going-down note is old news. The reply
            // itself is empty, as the original's (PingServer.cpp:1265): what a member says of
            // itself comes in its own pings.
            if let noted = table[index].notedDownAt, inFlight.sentAt <= noted { break }
            table[index].pingReplies += 1
            table[index].rttMs = Double(max(0, monotonicNanoseconds() - inFlight.sentNs)) / 1e6
            table[index].lastReplyAt = now
            table[index].lastSeenAt = now
            table[index].notedDownAt = nil
        case .failure(.timedOut):
            table[index].pingTimeouts += 1
        case .failure(.cancelled):
            break
        case .failure:
            table[index].pingErrors += 1
        }
        refresh(index, now: now)
    }

    private func refreshAll(now: Int64) {
        for index in table.indices { refresh(index, now: now) }
    }

    private func refresh(_ index: Int, now: Int64) {
        if table[index].refresh(now: now, deadAfterMs: Int64(configuration.deadAfterMs)) {
            onChange(table[index].host.id, table[index].alive)
        }
    }

    // MARK: Answering

    /// The original's `handleRequest11`: the sender is looked up by its address; a member's
    /// `PingInfo` goes into its row, its going-down note makes it dead; everyone gets an
    /// empty reply. Where the original crashes on purpose (a member's `PingInfo` naming
    /// another ID, PingServer.cpp:960) the port refuses with EINVAL and counts it.
    private func handle(_ request: IncomingRequest) {
        if isGoingDown {
            // As the original after its notes (its server discards every datagram,
            // UdpServer.cpp:1395): no answer, so that no host, original or port, counts
            // this one alive again while it drains.
            stats.pingsDiscarded += 1
            try? server.discardRequest(request)
            return
        }
        let member = table.firstIndex { !$0.isSelf && $0.host.address == request.peer }
        let message: PingMessage
        do throws(PingInfoError) {
            message = try PingMessage(request.payload)
            if case .info(let info) = message, let member, info.hostID != member {
                throw .notTheSendersID(claimed: info.hostID, sender: member)
            }
        } catch {
            stats.malformedPings += 1
            try? server.sendErrorReply(errno: EINVAL, to: request)
            return
        }
        switch (message, member) {
        case (.goingDown, let member?):
            markGoingDown(member)
        case (.goingDown, nil):
            // Only the member itself, from its own address, may say it is going down.
            stats.refusedNotes += 1
            try? server.sendErrorReply(errno: EPERM, to: request)
            return
        case (.info(let info), let member?):
            table[member].info = info
            table[member].pingedUsAt = loop.now
        case (_, let member?):
            table[member].pingedUsAt = loop.now
        case (_, nil):
            noteObserver(request.peer)
        }
        stats.pingsAnswered += 1
        try? server.sendReply([], to: request)
    }

    private func noteObserver(_ address: PeerAddress) {
        let now = loop.now
        if observers[address] == nil, observers.count >= Self.maxObservers,
            let oldest = observers.min(by: { $0.value < $1.value })
        {
            observers[oldest.key] = nil
        }
        observers[address] = now
    }

    /// The original's reaction to a shutdown note: dead now, and the ping in flight to
    /// it ended (`timeoutDeadHosts`), so that the next ping goes out as soon as it is back.
    private func markGoingDown(_ id: Int) {
        let now = loop.now
        table[id].goingDownNotes += 1
        table[id].notedDownAt = now
        table[id].lastReplyAt = nil
        table[id].lastSeenAt = now
        if let handle = handles[id] { server.cancel(handle) }
        refresh(id, now: now)
    }

    /// What this node says of itself in its pings; nil for a client of the cluster.
    public var ownInfo: PingInfo? {
        guard let selfID else { return nil }
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return PingInfo(
            hostID: selfID, localTimeMs: Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000,
            version: PingInfo.portVersion(backend: loop.kind, pid: getpid()),
            udpSlotsInUseIncoming: Int32(clamping: server.stats.incomingSlots))
    }
}
