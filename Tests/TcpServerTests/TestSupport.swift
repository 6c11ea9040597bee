import Glibc
import LoopTools
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

/// Every test that makes a loop lives under this suite: loops touch process-wide
/// signal state and only one legacy loop may exist at a time, so they run one at a time,
/// and never beside another target's loop suite (`.processExclusive`).
@Suite(.serialized, .processExclusive) struct TcpServerLoopTests {}

/// A TcpServer listening on 127.0.0.1 (any port) on a fresh loop; closed before the loop.
func withTcpServer<R>(
    _ kind: LoopBackendKind, _ configuration: TcpServerConfiguration = .testing(),
    framing: any TcpFraming = LineFraming(), sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (Loop, TcpServer) throws -> R
) throws -> R {
    try withLoop(kind, sourceLocation: sourceLocation) { loop in
        let server = TcpServer(loop: loop, configuration: configuration, framing: framing)
        defer { server.close() }
        try server.listen(on: .loopback(port: 0))
        return try body(loop, server)
    }
}

/// An HttpServer listening on 127.0.0.1 (any port) on a fresh loop; closed before the loop.
func withHttpServer<R>(
    _ kind: LoopBackendKind, _ configuration: TcpServerConfiguration = .testing(),
    limits: HttpLimits = HttpLimits(), sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (Loop, HttpServer) throws -> R
) throws -> R {
    try withLoop(kind, sourceLocation: sourceLocation) { loop in
        let server = HttpServer(loop: loop, configuration: configuration, limits: limits)
        defer { server.close() }
        try server.listen(on: .loopback(port: 0))
        return try body(loop, server)
    }
}

extension TcpServerConfiguration {
    /// Timeouts long enough that a loaded machine never trips them (tests about
    /// timeouts set their own), a fast scan, and room for a storm in the backlog.
    static func testing(_ adjust: (inout TcpServerConfiguration) -> Void = { _ in }) -> TcpServerConfiguration {
        var c = TcpServerConfiguration()
        c.timeoutMs = 20_000
        c.idleTimeoutMs = 20_000
        c.requestDeadlineMs = 20_000
        c.scanIntervalMs = 50
        c.listenBacklog = 512
        adjust(&c)
        return c
    }
}

extension TcpServer {
    var port: UInt16 { listeningAddress!.port }
    var address: PeerAddress { listeningAddress! }

    /// Answers every request with `transform` of its bytes.
    func echo(_ transform: @escaping ([UInt8]) -> [UInt8] = upper) {
        onRequest = { [unowned self] request in
            #expect(reply(transform(request.bytes), to: request))
        }
    }
}

extension HttpServer {
    var port: UInt16 { tcp.port }
}

/// ASCII upper case: what the echo servers answer with, so a reply differs from its request.
func upper(_ bytes: [UInt8]) -> [UInt8] { bytes.map { (0x61...0x7a).contains($0) ? $0 - 0x20 : $0 } }

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// One message a line: `\n` ends it. A line `quit` is the last on its connection.
struct LineFraming: TcpFraming {
    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        guard let newline = bytes.firstIndex(of: 0x0a) else { return .incomplete }
        let line = bytes[bytes.startIndex..<newline]
        return .complete(length: newline + 1 - bytes.startIndex, reusable: !line.elementsEqual("quit".utf8))
    }
    var timedOutReply: [UInt8] { Array("timed out\n".utf8) }
    var oversizedReply: [UInt8] { Array("too large\n".utf8) }
}

/// A length-prefixed message (4 bytes big-endian, then the bytes): a reply of any size.
struct LengthPrefixFraming: TcpFraming {
    func frame(_ bytes: ArraySlice<UInt8>, atEnd: Bool) -> TcpFrame {
        guard bytes.count >= 4 else { return .incomplete }
        let s = bytes.startIndex
        let length = Int(bytes[s]) << 24 | Int(bytes[s + 1]) << 16 | Int(bytes[s + 2]) << 8 | Int(bytes[s + 3])
        return bytes.count >= 4 + length ? .complete(length: 4 + length, reusable: true) : .incomplete
    }
}

/// A plain TCP client the loop does not watch, driven from the test: non-blocking,
/// every read and write by hand, bound to any 127/8 source address.
final class TestClient {
    let fd: Int32
    /// Bytes read and not yet taken.
    var received: [UInt8] = []
    /// The server closed (end of stream) or reset the connection.
    private(set) var peerClosed = false
    private(set) var resetByPeer = false
    /// Bytes `send` could not write yet; `pump` carries on.
    private var unsent: [UInt8] = []

    /// Connects to 127.0.0.1:`port` from `ip` (port chosen by the kernel); waits at most 5 s.
    init(port: UInt16, from ip: UInt32 = 0x7f00_0001, receiveBufferSize: Int32? = nil) throws {
        let fd = socket(
            AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", errno: errno) }
        self.fd = fd
        if var size = receiveBufferSize {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var source = PeerAddress(ip: ip, port: 0).socketAddress
        var destination = PeerAddress.loopback(port: port).socketAddress
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &source) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw SystemError("bind", errno: errno) }
        let connected = withUnsafePointer(to: &destination) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        if connected != 0 {
            guard errno == EINPROGRESS || errno == EINTR else { throw SystemError("connect", errno: errno) }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let deadline = monotonicNanoseconds() + 5_000_000_000
            while true {
                let ready = poll(&entry, 1, 100)
                if ready > 0 { break }
                if ready < 0 && errno != EINTR { throw SystemError("poll", errno: errno) }
                guard monotonicNanoseconds() < deadline else {
                    throw SystemError("connect: timed out", errno: ETIMEDOUT)
                }
            }
            let error = socketError()
            guard error == 0 else { throw SystemError("connect", errno: error) }
        }
    }

    deinit { close(fd) }

    func socketError() -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length)
        return value
    }

    /// The client's own address (its port, and the source address it is bound to).
    var localAddress: PeerAddress {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            _ = $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return PeerAddress(address)
    }

    /// Writes what it can now; the rest goes out from later `pump` calls.
    func send(_ bytes: [UInt8]) {
        unsent += bytes
        flush()
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    var hasUnsent: Bool { !unsent.isEmpty }

    private func flush() {
        while !unsent.isEmpty {
            let n = unsent.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                unsent.removeFirst(n)
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK { unsent = [] }
                return
            }
        }
    }

    /// Sends what is left, then reads what is waiting (at most `limit` bytes); never blocks.
    @discardableResult
    func pump(limit: Int = .max) -> Int {
        flush()
        var total = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        while total < limit && !peerClosed {
            let n = recv(fd, &buffer, min(buffer.count, limit - total), Int32(MSG_DONTWAIT))
            if n > 0 {
                received += buffer[0..<n]
                total += n
            } else if n == 0 {
                peerClosed = true
            } else if errno == EINTR {
                continue
            } else {
                if errno != EAGAIN && errno != EWOULDBLOCK {
                    resetByPeer = errno == ECONNRESET
                    peerClosed = true
                }
                break
            }
        }
        return total
    }

    /// Closes the sending side: the server reads the end of the stream.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// The first whole HTTP response in `received`, taken off it.
    func takeHttpResponse(isHead: Bool = false) -> HttpFetched? {
        let framing = HttpResponseFraming(limits: HttpLimits(), isHead: isHead)
        guard case .complete(let length, _) = framing.frame(received[...], atEnd: peerClosed) else { return nil }
        let message = Array(received[0..<length])
        received.removeFirst(length)
        return framing.parse(message)
    }

    /// The first whole line in `received`, taken off it (without its `\n`).
    func takeLine() -> String? {
        guard let newline = received.firstIndex(of: 0x0a) else { return nil }
        let line = text(Array(received[0..<newline]))
        received.removeFirst(newline + 1)
        return line
    }
}

/// Drives the loop until `client` has a whole HTTP response.
func awaitResponse(
    _ loop: Loop, _ client: TestClient, isHead: Bool = false, timeoutMs: Int = 10_000,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> HttpFetched {
    var response: HttpFetched?
    try runUntil(loop, timeoutMs: timeoutMs, sourceLocation: sourceLocation) {
        client.pump()
        response = client.takeHttpResponse(isHead: isHead)
        return response != nil
    }
    return response!
}

/// Drives the loop until `client` has a whole line.
func awaitLine(
    _ loop: Loop, _ client: TestClient, timeoutMs: Int = 10_000,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> String {
    var line: String?
    try runUntil(loop, timeoutMs: timeoutMs, sourceLocation: sourceLocation) {
        client.pump()
        line = client.takeLine()
        return line != nil
    }
    return line!
}

/// Drives the loop until the server has closed `client`'s connection.
func awaitClosed(
    _ loop: Loop, _ client: TestClient, timeoutMs: Int = 10_000,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    try runUntil(loop, timeoutMs: timeoutMs, sourceLocation: sourceLocation) {
        client.pump()
        return client.peerClosed
    }
}

/// `GET target` as a client sends it.
func get(_ target: String = "/", version: String = "HTTP/1.1", _ extra: String = "") -> String {
    "GET \(target) \(version)\r\nHost: test\r\n\(extra)\r\n"
}

/// Counts completions per exchange, to prove each runs exactly once.
final class Completions {
    private(set) var calls: [Int: Int] = [:]
    private(set) var results: [Int: Result<[UInt8], TcpError>] = [:]
    private(set) var order: [Int] = []

    func callback(_ index: Int, then: @escaping (Result<[UInt8], TcpError>) -> Void = { _ in })
        -> (Result<[UInt8], TcpError>) -> Void
    {
        { [self] result in
            calls[index, default: 0] += 1
            results[index] = result
            order.append(index)
            then(result)
        }
    }

    /// Records a `send` that threw: the exchange ended there, and its completion must never run.
    func threw(_ index: Int, _ error: TcpError) {
        calls[index, default: 0] += 1
        results[index] = .failure(error)
    }

    var completed: Int { calls.count }
    func isDone(_ count: Int) -> Bool { calls.count >= count }

    func expectExactlyOnce(_ count: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(calls.count == count, "completions: \(calls.count) of \(count)", sourceLocation: sourceLocation)
        let repeated = calls.filter { $0.value != 1 }
        #expect(repeated.isEmpty, "completed more than once: \(repeated)", sourceLocation: sourceLocation)
    }

    func reply(_ index: Int) -> String? {
        if case .success(let bytes) = results[index] { return text(bytes) }
        return nil
    }

    func error(_ index: Int) -> TcpError? {
        if case .failure(let error) = results[index] { return error }
        return nil
    }
}

extension TcpServer {
    /// `send`, with a throw recorded in `completions` as the exchange's one ending.
    func send(
        _ text: String, to peer: PeerAddress, framing: any TcpFraming = LineFraming(), timeoutMs: Int = 10_000,
        _ completions: Completions, _ index: Int,
        then: @escaping (Result<[UInt8], TcpError>) -> Void = { _ in }
    ) {
        do {
            try send(
                Array(text.utf8), to: peer, framing: framing, timeoutMs: timeoutMs,
                completion: completions.callback(index, then: then))
        } catch {
            completions.threw(index, error)
        }
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
func closedPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = PeerAddress.loopback(port: 0).socketAddress
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            precondition(bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0)
        }
    }
    return UInt16(bigEndian: address.sin_port)
}
