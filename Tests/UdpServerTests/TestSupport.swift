import Glibc
import LoopTools
import TestSupport
import Testing

@testable import UdpServer

/// Every test that makes a loop lives under this suite: loops touch process-wide
/// signal state and only one legacy loop may exist at a time, so they run one at a time,
/// and never beside another target's loop suite (`.processExclusive`).
@Suite(.serialized, .processExclusive) struct UdpServerLoopTests {}

/// Two started servers on one loop: `client` sends, `server` answers. Both are
/// shut down urgently at the end, before the loop closes.
func withServers<R>(
    _ kind: LoopBackendKind,
    client clientConfiguration: UdpServerConfiguration = .loopback,
    server serverConfiguration: UdpServerConfiguration = .loopback,
    _ body: (Loop, UdpServer, UdpServer) throws -> R
) throws -> R {
    try withLoop(kind) { loop in
        let client = UdpServer(loop: loop, configuration: clientConfiguration)
        let server = UdpServer(loop: loop, configuration: serverConfiguration)
        try client.start()
        try server.start()
        defer {
            client.shutdown(urgent: true)
            server.shutdown(urgent: true)
        }
        return try body(loop, client, server)
    }
}

extension UdpServer {
    var address: PeerAddress { .loopback(port: port) }

    /// Answers every request of `type` with its payload.
    func echo(type: UInt8, transform: @escaping ([UInt8]) -> [UInt8] = { $0 }) {
        registerHandler(type: type) { [unowned self] request in
            do { try sendReply(transform(request.payload), to: request) } catch {
                Issue.record("reply failed: \(error)")
            }
        }
    }
}

extension UdpServerConfiguration {
    static func loopback(_ adjust: (inout UdpServerConfiguration) -> Void) -> UdpServerConfiguration {
        var c = UdpServerConfiguration.loopback
        adjust(&c)
        return c
    }
}

/// Counts callback invocations per request, to prove each runs exactly once.
final class Ledger {
    private(set) var calls: [Int: Int] = [:]
    private(set) var results: [Int: RpcResult] = [:]
    private(set) var order: [Int] = []

    func callback(_ index: Int) -> (RpcResult) -> Void {
        { [self] result in
            calls[index, default: 0] += 1
            results[index] = result
            order.append(index)
        }
    }

    var completed: Int { calls.count }
    func isDone(_ count: Int) -> Bool { calls.count >= count }

    /// Every one of `0..<count` called back exactly once, none else.
    func expectExactlyOnce(_ count: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(calls.count == count, "callbacks: \(calls.count) of \(count)", sourceLocation: sourceLocation)
        let repeated = calls.filter { $0.value != 1 }
        #expect(repeated.isEmpty, "called more than once: \(repeated)", sourceLocation: sourceLocation)
        #expect(calls.keys.allSatisfy { (0..<count).contains($0) }, sourceLocation: sourceLocation)
    }

    func reply(_ index: Int) -> [UInt8]? {
        if case .success(let bytes) = results[index] { return bytes }
        return nil
    }

    func error(_ index: Int) -> RpcError? {
        if case .failure(let error) = results[index] { return error }
        return nil
    }
}

/// Deterministic bytes that differ by seed and by position: a pseudo-random block
/// of 65,521 bytes (prime, so no two datagrams of a message start at the same
/// phase) repeated, so misplaced or mixed-up datagrams show. Fast for huge sizes.
func pattern(_ count: Int, seed: Int) -> [UInt8] {
    let period = 65_521
    return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var x = UInt32(truncatingIfNeeded: seed &* 2_654_435_761 &+ 1)
        for i in 0..<min(count, period) {
            x ^= x << 13
            x ^= x >> 17
            x ^= x << 5
            buffer[i] = UInt8(truncatingIfNeeded: x)
        }
        var filled = min(count, period)
        while filled < count {
            let chunk = min(filled, count - filled)
            UnsafeMutableRawPointer(buffer.baseAddress! + filled).copyMemory(
                from: buffer.baseAddress!, byteCount: chunk)
            filled += chunk
        }
        initialized = count
    }
}

/// Byte-wise equality at memcmp speed (huge messages in a debug build).
func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, a.count) == 0 } }
}

/// A plain UDP socket on 127.0.0.1 that the loop does not watch: a silent peer,
/// or a hand-driven one that sends arbitrary bytes.
final class RawSocket {
    let fd: Int32
    let port: UInt16

    /// Bound to `ip` (any 127/8 address is this host): a second address on one machine.
    init(receiveBufferSize: Int32? = nil, ip: UInt32 = 0x7f00_0001) {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        precondition(fd >= 0)
        if var size = receiveBufferSize {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var address = PeerAddress(ip: ip, port: 0).socketAddress
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                precondition(bind(fd, $0, length) == 0)
                precondition(getsockname(fd, $0, &length) == 0)
            }
        }
        self.fd = fd
        self.ip = ip
        port = UInt16(bigEndian: address.sin_port)
    }

    let ip: UInt32
    var address: PeerAddress { PeerAddress(ip: ip, port: port) }

    func send(_ bytes: [UInt8], to peer: PeerAddress) {
        var destination = peer.socketAddress
        let sent = withUnsafePointer(to: &destination) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(sent == bytes.count, "sendto: \(errno)")
    }

    /// The next datagram waiting, if any (never blocks).
    func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return n >= 0 ? Array(buffer[0..<n]) : nil
    }

    /// Reads and discards everything waiting; returns how many datagrams.
    @discardableResult
    func drain() -> Int {
        var n = 0
        while receive() != nil { n += 1 }
        return n
    }

    deinit { close(fd) }
}

/// A data datagram, header and payload, as a peer would send it.
func dataDatagram(
    type: UInt8, number: UInt32, messageSize: UInt32, transactionId: UInt32,
    fromInitiator: Bool = true, nice: Bool = false, hadError: Bool = false,
    payload: [UInt8]
) -> [UInt8] {
    DatagramHeader(
        kind: .data(messageSize: messageSize), messageType: type, isNice: nice,
        datagramNumber: number, isFromInitiator: fromInitiator, hadError: hadError,
        transactionId: transactionId
    ).encoded + payload
}
