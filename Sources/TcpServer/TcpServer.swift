import Compat
import Glibc
import Sockets

/// A whole message read from an incoming connection, for the handler to answer
/// with `TcpServer.reply(_:to:)` — at once or later, from any callback on the loop.
public struct TcpRequest: Sendable {
    /// The connection it came on, which the reply goes back on.
    public let connection: TcpConnectionID
    /// The client's address.
    public let peer: PeerAddress
    /// The whole message, as the framing delimited it.
    public let bytes: [UInt8]
    /// The niceness its connection's callbacks run at.
    public let niceness: Int
}

/// The TCP server of the original loop, written against `Compat` only, so that it
/// runs unchanged on either backend: a listening socket accepting at niceness 0,
/// incoming connections read by a protocol's framing and answered by a handler
/// (keep-alive, a pipelined next request served after the reply, at most
/// `maxRequestsPerTurn` of them a turn of the loop, read at most `maxReadAheadBytes`
/// ahead, all connections' request bytes within `requestBytesBudget`), outgoing
/// exchanges over non-blocking connects (pooled for keep-alive), and the timeouts
/// and least-used closing of `TcpServer.cpp`.
///
/// Every descriptor it opens it closes through the loop (`closeAfterBatch`), so no
/// event of the current batch reaches a reused number. Not thread-safe: the loop's thread only.
public final class TcpServer {
    /// The loop whose thread runs the server and every callback it makes.
    public let loop: Loop
    /// The limits and timeouts given at creation.
    public let configuration: TcpServerConfiguration
    /// Frames incoming requests.
    let framing: any TcpFraming
    /// Called with each whole request; it must lead to exactly one `reply` (or `close`).
    public var onRequest: (TcpRequest) -> Void
    /// What the server has counted so far, and the connections open now.
    public internal(set) var stats = TcpServerStats()
    /// The listening address once `listen` succeeded (its port when 0 was asked for).
    public private(set) var listeningAddress: PeerAddress?

    var listener: Int32 = -1
    var listenerRegistration: Registration?
    /// Accepting stopped for lack of descriptors; the next scan starts it again.
    var acceptPaused = false
    var connections: [TcpConnectionID: TcpConnection] = [:]
    var pool: [PeerAddress: [TcpConnection]] = [:]
    var scanRegistration: Registration?
    /// Incoming connections that served their share of a turn with requests still
    /// buffered, served again at the top of the next poll (`turnHook`).
    var awaitingTurn: [TcpConnection] = []
    var turnHook: BottomHalf?
    var scanPaused = false
    /// Outgoing exchanges waiting for a descriptor the loop can watch (`TcpServer+DescriptorWaits`).
    let descriptorWaits = DescriptorWaits()
    private var nextID: UInt64 = 0
    /// Every read lands here first (no user code runs while it is in use), then in its connection's buffer.
    var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    /// True once `close()` ran: the server takes no more work.
    public private(set) var isClosed = false

    /// A server on `loop` whose incoming requests `framing` delimits; it listens once `listen(on:)` is called.
    public init(loop: Loop, configuration: TcpServerConfiguration = TcpServerConfiguration(), framing: any TcpFraming) {
        self.loop = loop
        self.configuration = configuration
        self.framing = framing
        // Until a handler is set, a request is answered by closing its connection.
        self.onRequest = { _ in }
        self.onRequest = { [unowned self] request in self.close(request.connection) }
    }

    deinit {
        if !isClosed { close() }
    }

    // MARK: Listening and accepting

    /// Listens on `address` (port 0: any free port) and accepts at niceness 0.
    @discardableResult
    public func listen(on address: PeerAddress) throws(TcpError) -> PeerAddress {
        guard !isClosed else { throw .shuttingDown }
        guard listener < 0 else { throw .system(SystemError("listen: already listening", errno: EISCONN)) }
        let socket: (fd: Int32, bound: PeerAddress)
        do { socket = try StreamSocket.listen(on: address, backlog: configuration.listenBacklog) } catch {
            throw .system(error)
        }
        listener = socket.fd
        do {
            try startAccepting()
            try startScanning()
        } catch {
            stopListening()
            throw .refusedByLoop(error)
        }
        listeningAddress = socket.bound
        return socket.bound
    }

    private func startAccepting() throws(LoopError) {
        listenerRegistration = try loop.registerRead(fd: listener, niceness: 0) { [unowned self] _ in self.acceptReady()
        }
    }

    /// The sleep callback behind every timeout (the original's `readTimeoutPoll`),
    /// registered once and paused while it has nothing to time.
    func startScanning() throws(LoopError) {
        if scanRegistration == nil {
            scanRegistration = try loop.registerSleep(every: configuration.scanIntervalMs, niceness: 0) {
                [unowned self] in
                self.scanTimeouts()
            }
        }
        updateScanning()
    }

    /// The scan runs only while there is something to time: an open connection, or
    /// accepting paused (the scan resumes it). An idle listener costs no wake-ups.
    func updateScanning() {
        guard let scan = scanRegistration else { return }
        let needed = !connections.isEmpty || acceptPaused
        guard needed == scanPaused else { return }
        scanPaused = !needed
        if needed { try? loop.resumeSleep(scan) } else { try? loop.pauseSleep(scan) }
    }

    private func stopListening() {
        if let r = listenerRegistration { try? loop.unregister(r) }
        listenerRegistration = nil
        if listener >= 0 {
            do { try loop.closeAfterBatch(fd: listener) } catch { closeDescriptor(listener) }
        }
        listener = -1
    }

    /// Accepts until the queue is empty or the budget is spent (the rest wait for the next poll).
    private func acceptReady() {
        let started = monotonicMilliseconds()
        var acceptedAny = false
        while listener >= 0 && !acceptPaused {
            switch StreamSocket.accept(listener) {
            case .accepted(let fd, let peer):
                acceptedAny = true
                adopt(fd: fd, peer: peer)
            case .wouldBlock:
                return
            case .outOfDescriptors:
                // accept(2) takes a descriptor before it looks at the queue: after an accept in
                // this call, EMFILE does not say that another connection waits (an empty queue
                // fails the same way), and an idle socket would be closed for nothing. The
                // listener's readiness at the next poll says whether one does.
                if acceptedAny { return }
                // Level-triggered readiness would call again at once: make room, or stop
                // accepting until the next scan instead of spinning on a queue we cannot take.
                if !closeLeastUsed() { pauseAccepting() }
                // The socket given up is closed when this batch ends (`closeAfterBatch`): an
                // accept now would fail again and close one more socket each time round, every
                // idle one within the budget. The listener stays readable; the next poll takes it.
                return
            case .failed(let e):
                // A failure of one queued connection: go on with the next. Any other failure
                // (EINVAL once the listener is shut down, ENOBUFS, ENOMEM) would repeat at once,
                // and looping on it never reached the budget check: the loop hung in this
                // callback. Accepting stops until the next scan instead.
                if !StreamSocket.isPerConnectionAcceptError(e) {
                    pauseAccepting()
                    return
                }
            }
            if monotonicMilliseconds() - started >= configuration.acceptBudgetMs { return }
        }
    }

    private func pauseAccepting() {
        acceptPaused = true
        stats.acceptPauses += 1
        if let r = listenerRegistration { try? loop.unregister(r) }
        listenerRegistration = nil
        updateScanning()
    }

    func resumeAcceptingIfPaused() {
        guard acceptPaused, listener >= 0 else { return }
        acceptPaused = false
        do { try startAccepting() } catch { acceptPaused = true }
    }

    /// Takes an accepted socket: over the limit the least used one gives way; a
    /// socket the loop cannot watch is answered with the refusal and closed.
    private func adopt(fd: Int32, peer: PeerAddress) {
        stats.accepted += 1
        if stats.incomingOpen >= configuration.maxIncomingSockets && !closeLeastUsed() {
            stats.refusedAtLimit += 1
            refuse(fd)
            return
        }
        let connection = makeConnection(
            fd: fd, peer: peer, isIncoming: true,
            niceness: configuration.incomingNiceness, state: .reading)
        do {
            try watchReads(connection)
        } catch {
            forget(connection)
            stats.refusedDescriptors += 1
            refuse(fd)
        }
    }

    /// Sends the refusal (a fresh socket's send buffer is empty: it fits) and closes.
    private func refuse(_ fd: Int32) {
        let reply = configuration.refusalReply
        if !reply.isEmpty {
            _ = reply.withUnsafeBytes { StreamSocket.send(fd, $0) }
        }
        closeDescriptor(fd)
    }

    func makeConnection(
        fd: Int32, peer: PeerAddress, isIncoming: Bool, niceness: Int,
        state: TcpConnection.State
    ) -> TcpConnection {
        nextID += 1
        let connection = TcpConnection(
            id: TcpConnectionID(value: nextID), fd: fd, peer: peer, isIncoming: isIncoming,
            niceness: niceness, state: state, now: loop.now)
        connections[connection.id] = connection
        if isIncoming { stats.incomingOpen += 1 } else { stats.outgoingOpen += 1 }
        updateScanning()
        return connection
    }

    /// Drops a connection that never got a registration (its descriptor is the caller's to close).
    private func forget(_ connection: TcpConnection) {
        connection.state = .closed
        connections[connection.id] = nil
        if connection.isIncoming { stats.incomingOpen -= 1 } else { stats.outgoingOpen -= 1 }
    }

    // MARK: Closing

    /// Ends a connection: unregisters and closes it through the loop, and ends its
    /// exchange (outgoing) with `error`, exactly once.
    func destroy(_ connection: TcpConnection, error: TcpError = .closedByPeer) {
        guard connection.isOpen else { return }
        let wasPooled = connection.state == .pooled
        connection.state = .closed
        connections[connection.id] = nil
        (connection.exchange?.framing ?? framing).connectionClosed(connection.id)
        if connection.isIncoming {
            stats.incomingOpen -= 1
        } else {
            stats.outgoingOpen -= 1
            if wasPooled { removeFromPool(connection) }
        }
        connection.readRegistration = nil
        connection.writeRegistration = nil
        dropReceived(connection)
        connection.pending = []
        do { try loop.closeAfterBatch(fd: connection.fd) } catch {
            // The loop is closed (or this is a forked child): it watches nothing, close it here.
            closeDescriptor(connection.fd)
        }
        if let exchange = connection.exchange {
            connection.exchange = nil
            failExchange(exchange, error, on: connection)
        }
    }

    /// Closes every connection (outstanding exchanges end with `.shuttingDown`), the
    /// listener and the timeout scan. Idempotent; safe from inside any callback.
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        stopListening()
        if let r = scanRegistration { try? loop.unregister(r) }
        scanRegistration = nil
        stopServingTurns()
        endWaitingExchanges()
        for connection in connections.values.sorted(by: { $0.id.value < $1.id.value }) {
            destroy(connection, error: .shuttingDown)
        }
    }

    /// Closes the least used incoming socket that is only reading, from the address
    /// holding the most such sockets (the original's `closeLeastUsed`): one client
    /// hogging the limit loses its own sockets first. False when every socket is busy.
    @discardableResult
    func closeLeastUsed() -> Bool {
        var perAddress: [UInt32: (count: Int, oldest: TcpConnection)] = [:]
        for connection in connections.values where connection.isIdleOrReading {
            if let entry = perAddress[connection.peer.ip] {
                let oldest =
                    connection.lastAction < entry.oldest.lastAction
                        || (connection.lastAction == entry.oldest.lastAction
                            && connection.id.value < entry.oldest.id.value)
                    ? connection : entry.oldest
                perAddress[connection.peer.ip] = (entry.count + 1, oldest)
            } else {
                perAddress[connection.peer.ip] = (1, connection)
            }
        }
        let hog = perAddress.values.max { a, b in
            a.count != b.count ? a.count < b.count : a.oldest.lastAction > b.oldest.lastAction
        }
        guard let victim = hog?.oldest else { return false }
        stats.closedLeastUsed += 1
        destroy(victim)
        return true
    }
}

/// Milliseconds on the monotonic clock, for budgets inside one callback.
func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
