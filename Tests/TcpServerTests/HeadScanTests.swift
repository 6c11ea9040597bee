import Glibc
import TestSupport
import Testing

@testable import HttpServer
@testable import TcpServer

extension TcpServerLoopTests {
    /// A head dripped a byte at a time costs what its bytes cost: the scan for the blank
    /// line resumes where the last read left it instead of starting over, so an 8 KB head
    /// is examined about once, not 8,000 times (quadratic: 35 µs a byte instead of 14).
    @Suite struct HeadScanning {
        /// A head of `length` (at least 38) bytes, `Host` first, padded with one long field, whole with its blank line.
        static func head(length: Int) -> [UInt8] {
            let start = "GET / HTTP/1.1\r\nHost: test\r\nX-Pad: "
            return bytes(start + String(repeating: "p", count: length - start.utf8.count - 4) + "\r\n\r\n")
        }

        /// Directly on the framing, with the buffer a connection keeps: one byte appended per
        /// call. Every byte is examined once as it arrives and once more for the verdict: at
        /// most 4 × the head's length leaves room (it was 8,000 × for an 8,000-byte head:
        /// 64,000,000 bytes).
        @Test func drippedHeadIsScannedInLinearWork() throws {
            for length in [40, 1_000, 8_000] {
                let framing = HttpRequestFraming(limits: HttpLimits())
                let head = Self.head(length: length)
                var received: [UInt8] = []
                var verdicts: [TcpFrame] = []
                for byte in head {
                    received.append(byte)
                    verdicts.append(framing.frame(received[...], atEnd: false, of: TcpConnectionID(value: 1)))
                }
                #expect(verdicts.dropLast().allSatisfy { $0 == .incomplete })
                #expect(verdicts.last == .complete(length: length, reusable: true))
                #expect(
                    framing.headBytesScanned <= 4 * length,
                    "\(length)-byte head dripped: \(framing.headBytesScanned) bytes examined")
            }
        }

        /// A body dripped a byte at a time is not a reason to parse the head again at each read.
        @Test func drippedBodyDoesNotRescanTheHead() throws {
            let framing = HttpRequestFraming(limits: HttpLimits())
            let head = bytes("POST /a HTTP/1.1\r\nHost: test\r\nContent-Length: 20000\r\n\r\n")
            var received = head
            let connection = TcpConnectionID(value: 1)
            #expect(framing.frame(received[...], atEnd: false, of: connection) == .incomplete)
            for i in 0..<20_000 {
                received.append(UInt8(ascii: "a") + UInt8(i % 26))
                let verdict = framing.frame(received[...], atEnd: false, of: connection)
                #expect(verdict == (i == 19_999 ? .complete(length: received.count, reusable: true) : .incomplete))
            }
            // The head once as it came and once for the verdict (it was once a read: 20,000 times).
            #expect(framing.headBytesScanned <= 4 * head.count, "\(framing.headBytesScanned) bytes examined")
        }

        /// Many connections dripping at once: each keeps its own place.
        @Test func interleavedDrippedHeadsEachCostLinearWork() throws {
            let framing = HttpRequestFraming(limits: HttpLimits())
            let heads = (0..<50).map { Self.head(length: 1_000 + $0) }
            var buffers = [[UInt8]](repeating: [], count: heads.count)
            var completed = 0
            for position in 0..<heads.map(\.count).max()! {
                for (index, head) in heads.enumerated() where position < head.count {
                    buffers[index].append(head[position])
                    let verdict = framing.frame(
                        buffers[index][...], atEnd: false, of: TcpConnectionID(value: UInt64(index)))
                    if position == head.count - 1 {
                        #expect(verdict == .complete(length: head.count, reusable: true))
                        completed += 1
                    } else {
                        #expect(verdict == .incomplete, "connection \(index) at byte \(position)")
                    }
                }
            }
            #expect(completed == heads.count)
            let total = heads.map(\.count).reduce(0, +)
            #expect(framing.headBytesScanned <= 4 * total, "\(framing.headBytesScanned) bytes examined for \(total)")
        }

        /// However the bytes are split into reads, the verdicts are those of the bytes whole:
        /// the resumed scan finds the same blank line, refuses the same garbage at the same
        /// status, and frames pipelined requests the same.
        @Test func verdictsDoNotDependOnHowTheBytesArrive() throws {
            let inputs: [[UInt8]] = [
                bytes(
                    "GET /a HTTP/1.1\r\nHost: test\r\n\r\nPOST /b HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nxyz"
                        + "GET /c HTTP/1.0\r\n\r\n"),
                bytes("GET / HTTP/1.1\r\nHost: test\r\nX: a\rb\r\n\r\n"),
                bytes("GET / HTTP/1.1\nHost: test\n\n"),
                bytes("GET / HTTP/1.1\r\nHost: test\r\nX: \u{1}\r\n\r\n"),
                [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00],
                bytes("\r\n\r\n"),
                bytes("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
                bytes("GET / HTTP/1.1\r\nX: " + String(repeating: "b", count: 9_000) + "\r\n\r\n"),
            ]
            for input in inputs {
                let whole = verdicts(of: input, readSize: input.count)
                for readSize in [1, 2, 3, 7] {
                    #expect(
                        verdicts(of: input, readSize: readSize) == whole,
                        "\(text(Array(input.prefix(40)))) in reads of \(readSize)")
                }
            }
        }

        /// The requests framed (or the refusal) when `input` arrives `readSize` bytes a read.
        private func verdicts(of input: [UInt8], readSize: Int) -> [String] {
            let framing = HttpRequestFraming(limits: HttpLimits())
            var received: [UInt8] = []
            var framed: [String] = []
            var offset = 0
            while offset < input.count {
                received += input[offset..<min(offset + readSize, input.count)]
                offset += readSize
                framing: while true {
                    switch framing.frame(received[...], atEnd: offset >= input.count, of: TcpConnectionID(value: 7)) {
                    case .incomplete:
                        break framing
                    case .complete(let length, let reusable):
                        framed.append("\(text(Array(received[0..<length]))) \(reusable)")
                        received.removeFirst(length)
                    case .refused(let reply):
                        return framed + [text(reply)]
                    }
                }
            }
            return framed
        }

        /// Through real connections on each backend, two dripping at once: every byte is
        /// read on its own (the server has counted it in before the next is sent) and both
        /// requests are served.
        @Test(arguments: LoopBackendKind.allCases)
        func drippedHeadsOverConnectionsCostLinearWork(kind: LoopBackendKind) throws {
            try withHttpServer(kind) { loop, server in
                server.handler = { _, responder in responder.respond(.text(200, "fine")) }
                let length = 8_000
                let head = Self.head(length: length)
                let clients = try (0..<2).map { _ in try TestClient(port: server.port) }
                var sent = 0
                for byte in head {
                    for client in clients {
                        client.send([byte])
                        sent += 1
                        try runUntil(loop, timeoutMs: 10_000) { server.tcp.stats.bytesIn >= sent }
                    }
                }
                for client in clients { #expect(try awaitResponse(loop, client).status == 200) }
                #expect(server.tcp.stats.bytesIn == 2 * length, "one read a byte")
                #expect(
                    server.framing.headBytesScanned <= 4 * 2 * length,
                    "two \(length)-byte heads over \(2 * length) reads: \(server.framing.headBytesScanned) bytes examined"
                )
            }
        }
    }
}
