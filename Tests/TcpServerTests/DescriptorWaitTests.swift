import Glibc
import LoopCore
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

/// An HTTP server on a thread of its own (not on the loop, whose descriptor limit it
/// must not share): one connection at a time, each answered `ok` and closed.
private final class ThreadedOrigin {
    let listener: Int32
    let port: UInt16
    private var thread: pthread_t?

    init() {
        let (fd, port) = loopbackListener(nonBlocking: false, backlog: 1024)
        (listener, self.port) = (fd, port)
        thread = startThread {
            let reply = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".utf8)
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return // shut down: the test is over
                }
                var request: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !request.suffix(4).elementsEqual([0x0d, 0x0a, 0x0d, 0x0a]) {
                    let n = recv(connection, &buffer, buffer.count, 0)
                    if n <= 0 { break }
                    request += buffer[0..<n]
                }
                _ = reply.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(connection)
            }
        }
    }

    /// Stops accepting (a shut-down listener fails `accept`), joins the thread, closes.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        if let thread { joinThread(thread) }
        thread = nil
        close(listener)
    }
}

/// Every free descriptor number below 1024 but the last `leaving` names one end of a
/// pipe, as in a process that holds many files: a socket opened now is numbered past
/// select's limit. Raises the soft RLIMIT_NOFILE so that such numbers exist.
private final class LowDescriptorsTaken {
    private(set) var taken: [Int32] = []
    private var savedLimit = rlimit()
    let raised: Bool

    init(leaving: Int) {
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &savedLimit)
        var limit = savedLimit
        limit.rlim_cur = min(max(limit.rlim_cur, 4096), limit.rlim_max)
        raised = limit.rlim_cur >= 2048 && setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0
        guard raised else { return }
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0)
        let free = (0..<Int32(1024)).filter { fcntl($0, F_GETFD) == -1 }
        for fd in free.dropLast(leaving) where fd != ends[0] && fd != ends[1] {
            // EBUSY: another thread is opening that very number; it is not free after all.
            if dup2(ends[0], fd) == fd { taken.append(fd) }
        }
        // The pipe's own numbers are low too: they end up naming its read end as well.
        for end in ends {
            if let source = taken.first, end < 1024, dup2(source, end) == end { taken.append(end) } else { close(end) }
        }
    }

    func release() {
        for fd in taken { close(fd) }
        taken = []
        if raised { setrlimit(Int32(RLIMIT_NOFILE.rawValue), &savedLimit) }
    }
}

extension TcpServerLoopTests {
    @Suite struct DescriptorWaits {
        /// With only a few descriptor numbers below 1024 free, 300 fetches at once all
        /// succeed: on the legacy loop those whose socket would be numbered past select's
        /// limit wait for a lower number (freed as others finish) instead of failing with
        /// "descriptor 1024 is out of range"; on epoll there is no limit and none waits.
        @Test(arguments: LoopBackendKind.allCases)
        func fetchesPastTheSelectLimitWaitForALowerDescriptor(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let origin = ThreadedOrigin()
                defer { origin.stop() }
                try withClient(loop) { tcp in
                    let client = HttpClient(tcp: tcp)
                    let url = try HttpURL("http://127.0.0.1:\(origin.port)/")
                    let lows = LowDescriptorsTaken(leaving: 3)
                    defer { lows.release() }
                    try #require(lows.raised, "cannot raise RLIMIT_NOFILE past 2048 here")
                    let count = 300
                    var fetched = 0
                    var failures: [String] = []
                    for _ in 0..<count {
                        do {
                            try client.get(url, timeoutMs: 20_000) { result in
                                switch result {
                                case .success(let reply) where reply.status == 200 && reply.body == Array("ok".utf8):
                                    fetched += 1
                                case .success(let reply): failures.append("status \(reply.status)")
                                case .failure(let error): failures.append(error.description)
                                }
                            }
                        } catch {
                            failures.append("thrown: \(error)")
                        }
                    }
                    try runUntil(loop, timeoutMs: 30_000) { fetched + failures.count == count }
                    let failed = failures.count
                    #expect(failed == 0, "first failure: \(failures.first ?? "")")
                    #expect(fetched == count)
                    let waited = tcp.descriptorWaits.waited
                    if kind == .legacy {
                        #expect(waited > 0, "none waited: the test did not reach the limit")
                    } else {
                        #expect(waited == 0)
                    }
                    #expect(tcp.stats.outgoingOpen == 0 && tcp.descriptorWaits.queue.isEmpty)
                }
            }
        }

        /// With no number below the limit ever free, a waiting exchange still ends once:
        /// with `.timedOut` when its silence timeout passes, with `.deadlinePassed` at its
        /// deadline, and with `.shuttingDown` when the server closes. On epoll they are fetched.
        @Test(arguments: LoopBackendKind.allCases)
        func waitingExchangesEndOnce(kind: LoopBackendKind) throws {
            try withLoop(kind) { loop in
                let origin = ThreadedOrigin()
                defer { origin.stop() }
                let url = try HttpURL("http://127.0.0.1:\(origin.port)/")
                var results: [Int: Result<HttpFetched, TcpError>] = [:]
                var calls = 0
                let lows = LowDescriptorsTaken(leaving: 0)
                defer { lows.release() }
                try #require(lows.raised, "cannot raise RLIMIT_NOFILE past 2048 here")
                let tcp = TcpServer(loop: loop, configuration: .testing(), framing: LineFraming())
                let client = HttpClient(tcp: tcp)
                try client.get(url, timeoutMs: 300) {
                    calls += 1
                    results[0] = $0
                }
                try client.get(url, timeoutMs: 5_000, deadlineMs: 400) {
                    calls += 1
                    results[1] = $0
                }
                try client.get(url, timeoutMs: 20_000) {
                    calls += 1
                    results[2] = $0
                }
                try runUntil(loop) { results[0] != nil && results[1] != nil }
                try runFor(loop, ms: 100)
                tcp.close()
                try runFor(loop, ms: 50)
                #expect(calls == 3 && results.count == 3)
                if kind == .legacy {
                    #expect(
                        results[0].map { if case .failure(.timedOut) = $0 { true } else { false } } == true,
                        "\(results)")
                    #expect(results[1].map { if case .failure(.deadlinePassed) = $0 { true } else { false } } == true)
                    #expect(results[2].map { if case .failure(.shuttingDown) = $0 { true } else { false } } == true)
                    #expect(tcp.descriptorWaits.waited == 3, "\(results)")
                } else {
                    #expect(results.values.allSatisfy { (try? $0.get().status) == 200 }, "\(results)")
                }
            }
        }
    }
}
