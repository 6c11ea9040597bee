import Compat
import Glibc
import Sockets

/// A whole message read from an incoming connection, for the handler to answer
/// with `TcpServer.reply(_:to:)` — at once or later, from any callback on the loop.
public struct TcpRequest: Sendable {
    public let connection: TcpConnectionID
    public let peer: PeerAddress
    public let bytes: [UInt8]
    public let niceness: Int
}

/// The TCP server of the original loop, written against `Compat` only, so that it
/// runs unchanged on either backend: a listening socket accepting at niceness 0,
/// incoming connections read by a protocol's framing and answered by a handler
/// (keep-alive, a pipelined next request served after the reply), outgoing
/// exchanges over non-blocking connects (pooled for keep-alive), and the timeouts
/// and least-used closing of `TcpServer.cpp`.
///
/// Every descriptor it opens it closes through the loop (`closeAfterBatch`), so no
/// event of the current batch reaches a reused number. Not thread-safe: the loop's thread only.
public final class TcpServer {
    public let loop: Loop
    public let configuration: TcpServerConfiguration
    /// Frames incoming requests.
    let framing: any TcpFraming
    /// Called with each whole request; it must lead to exactly one `reply` (or `close`).
    public var onRequest: (TcpRequest) -> Void
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
    var scanPaused = false
    private var nextID: UInt64 = 0
    /// Every read lands here first (no user code runs while it is in use), then in its connection's buffer.
    private var readBuffer = [UInt8](repeating: 0, count: 64 * 1024)
    public private(set) var isClosed = false

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
        listenerRegistration = try loop.registerRead(fd: listener, niceness: 0) { [unowned self] _ in self.acceptReady() }
    }

    /// The sleep callback behind every timeout (the original's `readTimeoutPoll`),
    /// registered once and paused while it has nothing to time.
    func startScanning() throws(LoopError) {
        if scanRegistration == nil {
            scanRegistration = try loop.registerSleep(every: configuration.scanIntervalMs, niceness: 0) { [unowned self] in
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
        let connection = makeConnection(fd: fd, peer: peer, isIncoming: true,
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

    func makeConnection(fd: Int32, peer: PeerAddress, isIncoming: Bool, niceness: Int,
                        state: TcpConnection.State) -> TcpConnection {
        nextID += 1
        let connection = TcpConnection(id: TcpConnectionID(value: nextID), fd: fd, peer: peer, isIncoming: isIncoming,
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

    // MARK: Reading

    func watchReads(_ connection: TcpConnection) throws(LoopError) {
        guard connection.readRegistration == nil, !connection.peerClosed else { return }
        connection.readRegistration = try loop.registerRead(fd: connection.fd, niceness: connection.niceness) {
            [unowned self, connection] _ in self.readable(connection)
        }
    }

    func stopWatchingReads(_ connection: TcpConnection) {
        if let r = connection.readRegistration { try? loop.unregister(r) }
        connection.readRegistration = nil
    }

    /// Reads what is there (up to the message limit), then frames it.
    private func readable(_ connection: TcpConnection) {
        guard connection.isOpen else { return }
        if connection.state == .pooled {
            // An idle pooled connection has nothing to say: readable means closed, or garbage.
            destroy(connection)
            return
        }
        let chunk = readBuffer.count
        reading: while connection.received.count <= configuration.maxMessageBytes {
            let outcome = readBuffer.withUnsafeMutableBytes { StreamSocket.receive(connection.fd, into: $0) }
            switch outcome {
            case .transferred(let n):
                if connection.received.isEmpty { connection.messageStartedAt = loop.now }
                connection.received.append(contentsOf: readBuffer[0..<n])
                connection.lastAction = loop.now
                connection.exchangeBytesIn += n
                stats.bytesIn += n
                // A short read drained the socket; a full one may have left more.
                if n < chunk { break reading }
            case .wouldBlock:
                break reading
            case .endOfStream:
                connection.peerClosed = true
                stopWatchingReads(connection)
                break reading
            case .failed(let e):
                if !connection.received.isEmpty || connection.exchange != nil { stats.truncated += 1 }
                destroy(connection, error: .transferFailed(errno: e))
                return
            }
        }
        serveBuffered(connection)
    }

    /// Frames the bytes read: a whole message goes to the handler (incoming) or the
    /// exchange's completion (outgoing), and the next one is framed once the
    /// connection is reading again — a pipelined request waits for its turn here.
    func serveBuffered(_ connection: TcpConnection) {
        guard !connection.framingInProgress else { return }
        connection.framingInProgress = true
        defer { connection.framingInProgress = false }
        while connection.isOpen && connection.state == .reading {
            let frameWith = connection.exchange?.framing ?? framing
            switch frameWith.frame(connection.received[...], atEnd: connection.peerClosed) {
            case .incomplete:
                if connection.received.count > configuration.maxMessageBytes {
                    refuseMessage(connection, reply: frameWith.oversizedReply)
                } else if connection.peerClosed {
                    if connection.received.isEmpty && connection.exchange == nil {
                        destroy(connection)  // a keep-alive peer that left between messages
                    } else {
                        stats.truncated += 1
                        destroy(connection, error: .closedByPeer)
                    }
                } else {
                    do { try watchReads(connection) } catch { destroy(connection, error: .refusedByLoop(error)) }
                }
                return
            case .complete(let length, let reusable):
                let length = min(max(length, 0), connection.received.count)
                let message = Array(connection.received[0..<length])
                connection.received.removeFirst(length)
                connection.messageStartedAt = connection.received.isEmpty ? nil : loop.now
                if !reusable { connection.closeAfterWrite = true }
                stopWatchingReads(connection)
                if connection.isIncoming {
                    connection.state = .handling
                    stats.requestsIn += 1
                    onRequest(TcpRequest(connection: connection.id, peer: connection.peer, bytes: message,
                                         niceness: connection.niceness))
                } else {
                    completeExchange(connection, reply: message)
                }
            case .refused(let reply):
                refuseMessage(connection, reply: reply)
                return
            }
        }
    }

    /// A message that can never be served: say why (incoming) or fail the exchange, and close.
    func refuseMessage(_ connection: TcpConnection, reply: [UInt8]) {
        stats.refusedMessages += 1
        stopWatchingReads(connection)
        if connection.isIncoming && !reply.isEmpty {
            connection.received = []
            connection.closeAfterWrite = true
            startWriting(connection, reply)
        } else {
            destroy(connection, error: .malformedReply)
        }
    }

    // MARK: Replying

    /// Answers `request` on its connection. False when the connection is gone (the
    /// peer left, a timeout, least-used closing): the reply is dropped and counted.
    /// `thenClose` closes the connection once the reply is written.
    @discardableResult
    public func reply(_ bytes: [UInt8], to request: TcpRequest, thenClose: Bool = false) -> Bool {
        guard let connection = connections[request.connection], connection.state == .handling else {
            stats.repliesDropped += 1
            return false
        }
        if thenClose { connection.closeAfterWrite = true }
        stats.repliesOut += 1
        startWriting(connection, bytes)
        return true
    }

    /// Closes a connection now (a handler that will not answer).
    public func close(_ id: TcpConnectionID) {
        if let connection = connections[id] { destroy(connection) }
    }

    func startWriting(_ connection: TcpConnection, _ bytes: [UInt8]) {
        connection.state = .writing
        connection.pending = bytes
        connection.pendingOffset = 0
        writePending(connection)
    }

    /// Writes until done or the socket would block; the write callback is
    /// registered only while it would (a writable socket is almost always writable).
    func writePending(_ connection: TcpConnection) {
        guard connection.isOpen, connection.state == .writing else { return }
        while connection.pendingOffset < connection.pending.count {
            let outcome = connection.pending.withUnsafeBytes {
                StreamSocket.send(connection.fd, UnsafeRawBufferPointer(rebasing: $0[connection.pendingOffset...]))
            }
            switch outcome {
            case .transferred(let n):
                connection.pendingOffset += n
                connection.lastAction = loop.now
                stats.bytesOut += n
            case .wouldBlock:
                if connection.writeRegistration == nil {
                    stats.writeWaits += 1
                    do {
                        connection.writeRegistration = try loop.registerWrite(fd: connection.fd, niceness: connection.niceness) {
                            [unowned self, connection] _ in self.writePending(connection)
                        }
                    } catch {
                        destroy(connection, error: .refusedByLoop(error))
                    }
                }
                return
            case .endOfStream, .failed:
                let errno: Int32 = if case .failed(let e) = outcome { e } else { EPIPE }
                destroy(connection, error: .transferFailed(errno: errno))
                return
            }
        }
        if let r = connection.writeRegistration { try? loop.unregister(r) }
        connection.writeRegistration = nil
        connection.pending = []
        written(connection)
    }

    /// A message is out: an incoming connection reads the next request (or closes);
    /// an outgoing one reads the reply.
    private func written(_ connection: TcpConnection) {
        if connection.isIncoming {
            if connection.closeAfterWrite {
                destroy(connection)
                return
            }
            connection.state = .reading
            connection.messageStartedAt = connection.received.isEmpty ? nil : loop.now
        } else {
            connection.state = .reading
            connection.exchangeBytesIn = 0
        }
        serveBuffered(connection)
    }

    // MARK: Closing

    /// Ends a connection: unregisters and closes it through the loop, and ends its
    /// exchange (outgoing) with `error`, exactly once.
    func destroy(_ connection: TcpConnection, error: TcpError = .closedByPeer) {
        guard connection.isOpen else { return }
        let wasPooled = connection.state == .pooled
        connection.state = .closed
        connections[connection.id] = nil
        if connection.isIncoming {
            stats.incomingOpen -= 1
        } else {
            stats.outgoingOpen -= 1
            if wasPooled { removeFromPool(connection) }
        }
        connection.readRegistration = nil
        connection.writeRegistration = nil
        connection.received = []
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
                let oldest = connection.lastAction < entry.oldest.lastAction
                    || (connection.lastAction == entry.oldest.lastAction && connection.id.value < entry.oldest.id.value)
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
