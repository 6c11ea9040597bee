import Glibc
@_spi(LoopInternals) import LoopCore
import Sockets

/// The UDP RPC server: sends requests and calls back with their replies, and
/// runs a handler for each request it receives. Messages of any size up to the
/// configured maximum travel as numbered datagrams, each acknowledged, with at
/// most `ackWindow` unacknowledged in flight, resent on a backoff when ACKs do
/// not come.
///
/// Everything happens on the loop's thread: the socket's read callback, a sleep
/// callback every `pollTimeMs` for resends and timeouts, a write callback while
/// the socket would block, and the loop's bottom half for callbacks held back
/// during quickpoll. Every request's callback runs exactly once, on the loop
/// thread, never from inside `sendRequest` itself.
///
/// Shut the server down (`shutdown`) before dropping it: requests still in
/// progress when it is deinitialised never get their callback.
public final class UdpServer {
    /// The loop whose thread runs the server and every callback it makes.
    public let loop: Loop
    /// The configuration given at creation; `start()` checks it.
    public let configuration: UdpServerConfiguration
    /// How messages to and from every peer not among `ownIPs` are cut (`datagramSize`).
    let geometry: DatagramGeometry
    /// How messages to and from `ownIPs` are cut (`ownAddressDatagramSize`): the original
    /// chooses per peer (UdpSlot.cpp:213-218), and each transaction keeps its peer's.
    let ownGeometry: DatagramGeometry
    /// This server's own addresses: a few, so a scan costs less than a hash.
    let ownIPs: [UInt32]
    /// `configuration.admission`, read for every datagram.
    let admission: UdpAdmission?
    private let configurationError: ConfigurationError?

    /// The bound port (the ephemeral one when configured with 0); 0 before `start()`.
    public var port: UInt16 { boundAddress?.port ?? 0 }
    /// The bound address and port, once started.
    public private(set) var boundAddress: PeerAddress?
    /// No new requests are taken or started.
    public internal(set) var isShuttingDown = false
    /// Shut down, every transaction ended, the socket closed.
    public internal(set) var isDrained = false

    var socket: DatagramSocket?
    /// Registered only while a send would block.
    var writeRegistration: Registration?
    var sleepRegistration: Registration?
    /// The time poll is paused while it has nothing to do (`needsTimePoll`).
    var timePollPaused = false
    /// The loop runs `bottomHalf()` through this while callbacks wait (the original's `needBottom`).
    var bottomHalfRegistration: BottomHalf?

    var slots: [TransactionKey: Transaction] = [:]
    /// Outgoing transactions by request id, for `cancel`.
    var requests: [UInt64: TransactionKey] = [:]
    var handlers = [((IncomingRequest) -> Void)?](repeating: nil, count: 256)
    /// Transactions with something to send, niceness 0 first.
    var sendQueues = [FifoQueue<Transaction>(), FifoQueue<Transaction>()]
    /// Finished work waiting for its callback, niceness 0 first.
    var callbackQueues = [FifoQueue<CallbackItem>(), FifoQueue<CallbackItem>()]
    var finishedTransactions: FinishedTransactions
    /// Incoming slots and bytes by peer address, and what may be evicted.
    var ledger = IncomingLedger()
    var acknowledgingPeers: AcknowledgingPeers
    var dropLog = DropLog()
    var drainedCallbacks: [() -> Void] = []
    var counters = UdpServerStats()
    var outgoingCount = 0
    var incomingCount = 0
    var bufferedIncomingBytes = 0

    var random: SplitMix64
    var nextTransactionId: UInt32
    var nextRequestID: UInt64 = 0
    var nextSerial: UInt64 = 0

    /// Where `recvmmsg` puts the datagrams of one read.
    let receiveBatch: ReceiveBatch
    /// Where outgoing datagrams are assembled until they leave together.
    let sendBatch: SendBatch
    /// Loop callbacks and sending calls under way (nested ones count): datagrams
    /// committed meanwhile wait in `sendBatch` for the outermost to finish.
    var sendScopeDepth = 0
    /// The socket refused a send with `EAGAIN`: nothing more is tried until the
    /// write callback says there is room (or the next timer scan).
    var socketIsFull = false
    /// Datagrams a filter delayed, sent after the next one.
    var heldDatagrams: [(bytes: [UInt8], destination: PeerAddress, header: DatagramHeader)] = []
    var isSending = false

    enum CallbackItem {
        case reply((RpcResult) -> Void, RpcResult)
        case request(Transaction)
        case drained(() -> Void)
    }

    /// A server on `loop`; it binds and reads nothing until `start()`.
    public init(loop: Loop, configuration: UdpServerConfiguration = UdpServerConfiguration()) {
        self.loop = loop
        self.configuration = configuration
        admission = configuration.admission
        do {
            (geometry, ownGeometry, ownIPs) = try configuration.validated()
            configurationError = nil
        } catch {
            (geometry, ownGeometry, ownIPs) = (.lan, .lan, [])
            configurationError = error
        }
        finishedTransactions = FinishedTransactions(capacity: max(1, configuration.maxSlots) * 4)
        acknowledgingPeers = AcknowledgingPeers(
            capacity: max(1, configuration.maxSlots) * 4,
            memoryMs: Int64(configuration.incomingTimeoutMs))
        let seed = configuration.randomSeed ?? UInt64(bitPattern: monotonicNanoseconds()) ^ UInt64(getpid())
        random = SplitMix64(seed: seed)
        // A random first id makes a restarted peer unlikely to reuse ids the other side remembers
        // (the original starts at 0, UdpServer.cpp:279); never `maxTransactionId`, which the
        // original never issues.
        nextTransactionId = UInt32(truncatingIfNeeded: random.next() % UInt64(DatagramHeader.maxTransactionId))
        let perCall = configurationError == nil ? configuration.datagramsPerSystemCall : 1
        // Room for the larger of the two sizes, whichever peer a datagram is for or from.
        let largest = max(geometry.datagramSize, ownGeometry.datagramSize)
        receiveBatch = ReceiveBatch(
            capacity: min(perCall, max(1, configuration.maxDatagramsPerRead)), datagramSize: largest)
        sendBatch = SendBatch(capacity: perCall, datagramSize: largest)
    }

    deinit {
        if socket != nil { closeSocket() }
        if let bottomHalfRegistration { try? loop.removeBottomHalf(bottomHalfRegistration) }
    }

    /// Binds the socket and registers with the loop.
    public func start() throws(UdpServerError) {
        if let configurationError { throw .configuration(configurationError) }
        guard boundAddress == nil, !isShuttingDown else { throw .alreadyStarted }
        guard let ip = PeerAddress.parseIPv4(configuration.bindAddress) else {
            throw .invalidBindAddress(configuration.bindAddress)
        }
        let socket: DatagramSocket
        do {
            socket = try DatagramSocket.bind(
                PeerAddress(ip: ip, port: configuration.port),
                receiveBufferSize: configuration.receiveBufferSize,
                sendBufferSize: configuration.sendBufferSize)
        } catch {
            if error.errno == EADDRINUSE { throw .addressInUse("\(configuration.bindAddress):\(configuration.port)") }
            throw .system(error)
        }
        self.socket = socket
        boundAddress = socket.address
        do {
            try loop.registerRead(fd: socket.fd, niceness: 0) { [weak self] _ in
                self?.readPoll()
            }
            let poll = try loop.registerSleep(every: configuration.pollTimeMs, niceness: 0) { [weak self] in
                self?.timePoll()
            }
            sleepRegistration = poll
            // Nothing to time yet: the poll runs only while there is (see `needsTimePoll`).
            try loop.pauseSleep(poll)
            timePollPaused = true
            bottomHalfRegistration = try loop.addBottomHalf(
                needed: { [weak self] in self?.needsBottomHalf ?? false }, run: { [weak self] in self?.bottomHalf() })
        } catch {
            closeSocket()
            boundAddress = nil
            throw .loop(error)
        }
    }

    // MARK: Requests

    /// Sends `message` to `peer` as a request of `type`; `callback` runs exactly
    /// once, later, on the loop thread, with the reply or the reason there is none.
    ///
    /// - Parameters:
    ///   - message: the request's bytes, at most the configuration's maximum message size.
    ///   - type: the message type the peer's handler is registered for.
    ///   - peer: where the request goes.
    ///   - timeoutMs: no progress for this long ends the request with `.timedOut`.
    ///   - niceness: 0 = urgent; > 0 = background (its callback waits outside quickpoll).
    ///   - backoffMs: first resend time, doubled per resend; nil for the defaults.
    ///   - maxWaitMs: cap on the resend time; nil for the defaults.
    ///   - callback: called exactly once, on the loop's thread, with the reply or the failure.
    /// - Returns: a handle that `cancel(_:)` takes.
    @discardableResult
    public func sendRequest(
        _ message: [UInt8], type: UInt8, to peer: PeerAddress,
        timeoutMs: Int = 60_000, niceness: Int = 1,
        backoffMs: Int? = nil, maxWaitMs: Int? = nil,
        callback: @escaping (RpcResult) -> Void
    ) -> RequestHandle {
        precondition(boundAddress != nil, "start() the server before sending requests")
        nextRequestID += 1
        let handle = RequestHandle(id: nextRequestID)
        let level = min(max(niceness, 0), 1)
        counters.requestsSent += 1
        if isShuttingDown {
            callbackQueues[level].append(.reply(callback, .failure(.shuttingDown)))
            return handle
        }
        guard message.count <= geometry.maxMessageSize else {
            callbackQueues[level].append(
                .reply(callback, .failure(.messageTooLarge(size: message.count, limit: geometry.maxMessageSize))))
            return handle
        }
        guard slots.count < configuration.maxSlots else {
            counters.noSlotRequests += 1
            callbackQueues[level].append(.reply(callback, .failure(.noSlots)))
            return handle
        }
        let key = TransactionKey(transactionId: allocateTransactionId(for: peer), peer: peer, initiatedByUs: true)
        let policy = ResendPolicy(
            niceness: level, backoffMs: backoffMs, maxWaitMs: maxWaitMs,
            peerIsLocal: peer.isLocal(to: boundAddress?.ip ?? 0))
        let transaction = Transaction(
            key: key, type: type, niceness: level, timeoutMs: Int64(max(1, timeoutMs)),
            serial: makeSerial(), phase: .sendingRequest, now: currentTime(),
            resendPolicy: policy, geometry: geometry(toward: peer.ip), requestID: handle.id, callback: callback)
        transaction.outgoing = OutgoingMessage(bytes: message, hadError: false, geometry: transaction.geometry)
        resetResendTime(transaction)
        insert(transaction)
        requests[handle.id] = key
        queueForSend(transaction)
        sendPoll()
        return handle
    }

    /// Ends a request with `.cancelled`. False if it already ended.
    @discardableResult
    public func cancel(_ handle: RequestHandle) -> Bool {
        guard let key = requests[handle.id], let transaction = slots[key] else { return false }
        finish(transaction, .failure(.cancelled))
        checkDrained()
        return true
    }

    /// Ends every outgoing request of `type` with `.cancelled`; returns how many.
    @discardableResult
    public func cancelAll(type: UInt8) -> Int {
        let matching = slots.values.filter { $0.isRequester && $0.type == type }.sorted { $0.serial < $1.serial }
        for transaction in matching { finish(transaction, .failure(.cancelled)) }
        checkDrained()
        return matching.count
    }

    // MARK: Handlers and replies

    /// Runs `handler` for each whole request of `type` received, replacing any
    /// earlier handler. The handler must eventually answer with `sendReply` or
    /// `sendErrorReply` (the request otherwise times out at this end).
    /// Requests of a type with no handler get an error reply (`RemoteErrno.noHandler`).
    public func registerHandler(type: UInt8, _ handler: @escaping (IncomingRequest) -> Void) {
        handlers[Int(type)] = handler
    }

    /// Requests of `type` get `RemoteErrno.noHandler` from now on.
    public func unregisterHandler(type: UInt8) {
        handlers[Int(type)] = nil
    }

    /// Answers `request` with `message`. The transaction ends once the requester
    /// has acknowledged all of it.
    public func sendReply(_ message: [UInt8], to request: IncomingRequest) throws(ReplyError) {
        try reply(message, hadError: false, to: request)
        counters.repliesSent += 1
    }

    /// Answers `request` with an error: the requester's callback gets `.remote(errno:)`.
    public func sendErrorReply(errno code: Int32, to request: IncomingRequest) throws(ReplyError) {
        // The errno travels big-endian, like the header words.
        let bytes = withUnsafeBytes(of: code.bigEndian) { Array($0) }
        try reply(bytes, hadError: true, to: request)
        counters.errorRepliesSent += 1
    }

    /// Ends `request` without a reply, as the original's server ends one it discards while
    /// shutting down: the requester hears nothing more, and times out unless a copy it sends
    /// later is answered: the request is forgotten, so a copy is a new request, as at the
    /// original, which keeps no memory of what it discarded.
    public func discardRequest(_ request: IncomingRequest) throws(ReplyError) {
        guard let transaction = slots[request.key], transaction.serial == request.serial,
            transaction.phase == .handling
        else { throw .notPending }
        remove(transaction, remember: false)
        counters.requestsDiscarded += 1
        checkDrained()
    }

    private func reply(_ message: [UInt8], hadError: Bool, to request: IncomingRequest) throws(ReplyError) {
        guard let transaction = slots[request.key], transaction.serial == request.serial,
            transaction.phase == .handling
        else { throw .notPending }
        guard message.count <= geometry.maxMessageSize else {
            throw .messageTooLarge(size: message.count, limit: geometry.maxMessageSize)
        }
        transaction.outgoing = OutgoingMessage(bytes: message, hadError: hadError, geometry: transaction.geometry)
        transaction.phase = .sendingReply
        transaction.lastProgress = currentTime()
        cutTimeoutForShutdown(transaction)
        resetResendTime(transaction)
        queueForSend(transaction)
        sendPoll()
    }

    // MARK: Stats

    /// What the server has counted so far, and the slots in use now.
    public var stats: UdpServerStats {
        var s = counters
        s.outgoingSlots = outgoingCount
        s.incomingSlots = incomingCount
        return s
    }

    /// Bytes promised to messages being received now.
    public var bufferedBytes: Int { bufferedIncomingBytes }

    // MARK: Transactions table

    func insert(_ transaction: Transaction) {
        slots[transaction.key] = transaction
        resumeTimePoll()
        if transaction.isRequester {
            outgoingCount += 1
        } else {
            incomingCount += 1
            ledger.added(transaction)
        }
    }

    /// Takes a transaction out of the table; it does nothing more. An incoming request
    /// received whole is remembered as finished unless `remember` is false.
    func remove(_ transaction: Transaction, remember: Bool = true) {
        guard transaction.phase != .finished else { return }
        let receivedWhole = transaction.phase != .receivingRequest
        transaction.phase = .finished
        slots[transaction.key] = nil
        releaseIncoming(transaction)
        transaction.outgoing = nil
        transaction.pendingAcks.removeAll()
        if transaction.isRequester {
            outgoingCount -= 1
            if let id = transaction.requestID { requests[id] = nil }
        } else {
            incomingCount -= 1
            ledger.removed(transaction)
            if remember && receivedWhole {
                let request = transaction.receivedSize.map {
                    FinishedTransactions.Request(type: transaction.type, size: $0)
                }
                let now = currentTime()
                // Expired here, not by the time poll, which stops once nothing is in flight.
                finishedTransactions.expire(before: now - Int64(configuration.finishedMemoryMs))
                finishedTransactions.insert(transaction.key, request: request, at: now)
            }
        }
    }

    /// Ends an outgoing request and queues its callback (at most once: the callback is taken).
    func finish(_ transaction: Transaction, _ result: RpcResult) {
        remove(transaction)
        guard let callback = transaction.callback else { return }
        transaction.callback = nil
        callbackQueues[transaction.niceness].append(.reply(callback, result))
    }

    func releaseIncoming(_ transaction: Transaction) {
        bufferedIncomingBytes -= transaction.reservedBytes
        if !transaction.isRequester { ledger.released(transaction.reservedBytes, for: transaction.key.peer.ip) }
        transaction.reservedBytes = 0
        transaction.incoming = nil
    }

    /// The geometry of every transaction with `ip`: the own addresses' size to one of this
    /// server's own addresses (the original's `isMyIp`), the other size to everyone else.
    /// Both ends apply the rule to each other's address, so they agree.
    func geometry(toward ip: UInt32) -> DatagramGeometry {
        for own in ownIPs where own == ip { return ownGeometry }
        return geometry
    }

    func allocateTransactionId(for peer: PeerAddress) -> UInt32 {
        while true {
            let id = nextTransactionId
            // As the original's `getTransId` (UdpServer.h:320-324): 0 follows 0x3ffffffe.
            nextTransactionId = id + 1 >= DatagramHeader.maxTransactionId ? 0 : id + 1
            if slots[TransactionKey(transactionId: id, peer: peer, initiatedByUs: true)] == nil { return id }
        }
    }

    func makeSerial() -> UInt64 {
        nextSerial += 1
        return nextSerial
    }

    func resetResendTime(_ transaction: Transaction) {
        transaction.resendCount = 0
        transaction.resendTimeMs = resendTime(for: transaction)
    }

    func resendTime(for transaction: Transaction) -> Int {
        transaction.resendPolicy.resendTimeMs(afterResends: transaction.resendCount) { limit in
            Int.random(in: 0..<limit, using: &random)
        }
    }

    /// The loop's clock, read now: `loop.now` is stale outside its callbacks.
    func currentTime() -> Int64 { loop.configuration.clock.milliseconds() }

    /// Slots incoming requests cannot take, so strangers cannot stop this server's own requests.
    var reservedOutgoingSlots: Int { min(configuration.reservedOutgoingSlots, configuration.maxSlots / 4) }

    /// The most incoming slots one peer address may hold.
    var incomingSlotsPerPeer: Int {
        configuration.maxIncomingSlotsPerPeer ?? max(1, (configuration.maxSlots - reservedOutgoingSlots) / 4)
    }

    /// The most buffered incoming bytes one peer address may hold.
    var bufferedBytesPerPeer: Int {
        configuration.maxBufferedBytesPerPeer ?? configuration.maxBufferedIncomingBytes / 2
    }
}
