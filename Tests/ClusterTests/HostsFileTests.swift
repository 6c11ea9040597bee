import Glibc
import TestSupport
import Testing
import UdpServer

@testable import Cluster

@Suite(.processExclusive) struct HostsFileParsing {
    @Test func hostsWithCommentsBlankLinesAndNoConsole() throws {
        let file = try HostsFile.parse(
            """
            # id  address    udp   http
            0     127.0.0.2  7000  8000

            1\t127.0.0.3\t7000\t-   # no console here
            2 10.1.2.3 65535 1\r
            """)
        #expect(
            file.hosts == [
                ClusterHost(id: 0, address: PeerAddress(ip: 0x7f00_0002, port: 7000), httpPort: 8000),
                ClusterHost(id: 1, address: PeerAddress(ip: 0x7f00_0003, port: 7000), httpPort: nil),
                ClusterHost(id: 2, address: PeerAddress(ip: 0x0a01_0203, port: 65535), httpPort: 1),
            ])
        #expect(file.host(at: PeerAddress(ip: 0x7f00_0003, port: 7000))?.id == 1)
        #expect(file.hasMember(ip: 0x0a01_0203) && !file.hasMember(ip: 0x7f00_0001))
    }

    /// One error names every bad line, its number and why; a bad line still takes a host's
    /// place, so the IDs after it are not all reported wrong.
    @Test func everyMalformedLineIsNamed() {
        let text = """
            0 127.0.0.2 7000 8000
            1 127.0.0.3 7000
            x 127.0.0.3 7000 8000
            5 127.0.0.3 7000 8000
            4 127.0.0.300 7000 8000
            5 0.0.0.0 7000 8000
            6 127.0.0.7 0 8000
            7 127.0.0.8 7000 http
            8 127.0.0.2 7000 9000
            9 127.0.0.2 7001 8000
            10 127.0.0.9 7000 8000 extra
            11 255.255.255.255 7000 8000
            12 224.0.0.1 7000 8000
            13 127.0.0.9 +700 8000
            """
        do {
            _ = try HostsFile.parse(text)
            Issue.record("a file with malformed lines was accepted")
        } catch {
            guard case .malformed(let problems) = error else {
                Issue.record("expected malformed lines, got \(error)")
                return
            }
            #expect(problems.map(\.line) == Array(2...14), "\(problems)")
            let reasons = Dictionary(uniqueKeysWithValues: problems.map { ($0.line, $0.reason) })
            #expect(reasons[2]?.contains("3 fields") == true)
            #expect(reasons[3]?.contains("not a number") == true)
            #expect(reasons[4]?.contains("IDs run 0, 1, 2") == true)
            #expect(reasons[5]?.contains("not an IPv4 address") == true)
            #expect(reasons[6]?.contains("cannot be a host's own address") == true)
            #expect(reasons[7]?.contains("UDP port '0'") == true)
            #expect(reasons[8]?.contains("HTTP port 'http'") == true)
            #expect(reasons[9]?.contains("host 0's UDP address too") == true)
            #expect(reasons[10]?.contains("host 0's HTTP address too") == true)
            #expect(reasons[11]?.contains("5 fields") == true)
            #expect(reasons[12]?.contains("broadcast") == true)
            #expect(reasons[13]?.contains("multicast") == true)
            #expect(reasons[14]?.contains("UDP port '+700'") == true)
            #expect(problems[0].text == "1 127.0.0.3 7000")
            #expect("\(error)".contains("13 malformed lines") && "\(error)".contains("line 9: "))
        }
    }

    /// The original's hosts.conf as its own tools write it (the shared original's
    /// make-node-dir.sh, Hostdb.cpp's directives): the RPC server at ip1:udpPort, the
    /// console at ip1:httpPort; the DNS and HTTPS ports, ip2, the directory and a note are
    /// the original's business. Port lines may stand beside them.
    @Test func theOriginalsHostsConfIsReadAsItIs() throws {
        let file = try HostsFile.parse(
            """
            # hosts.conf of the original engine: one host a line
            # hostId dnsPort httpsPort httpPort udpPort ip1 ip2 directory
            0 5998 7000 8000 9000 10.77.0.1 10.77.0.1 /tmp/gb0/
            1 5998 7000 8001 9001 10.77.0.2 10.77.0.2 /tmp/gb1/ noquery nospider
            2 5997 7002 8002 9002 127.0.0.1
            3 127.0.0.1 9003 -
            num-mirrors: 0
            index-splits:1
            working-dir: /var/gigablast/
            port-offset: 0
            """)
        #expect(
            file.hosts == [
                ClusterHost(id: 0, address: PeerAddress(ip: 0x0a4d_0001, port: 9000), httpPort: 8000),
                ClusterHost(id: 1, address: PeerAddress(ip: 0x0a4d_0002, port: 9001), httpPort: 8001),
                ClusterHost(id: 2, address: PeerAddress(ip: 0x7f00_0001, port: 9002), httpPort: 8002),
                ClusterHost(id: 3, address: PeerAddress(ip: 0x7f00_0001, port: 9003), httpPort: nil),
            ])
    }

    /// What the original's format gets wrong is named as a port line's would be, and its
    /// spare and proxy hosts are refused: the port's cluster has members only.
    @Test func theOriginalsMalformedLinesAreNamed() {
        let text = """
            0 5998 7000 8000 9000 10.77.0.1 10.77.0.1 /tmp/gb0/
            2 5998 7000 8001 9001 10.77.0.2 10.77.0.2 /tmp/gb1/
            2 5998 7000 8002 0 10.77.0.3
            3 5998 7000 8003 9003 gk3 gki3 /tmp/gb3/
            4 70000 7000 8004 9004 10.77.0.5
            5 5998 7000 0 9005 10.77.0.6
            6 5998 7000 8000 9000 10.77.0.1
            spare 5998 7000 8007 9007 10.77.0.8
            proxy 5998 7000 8008 9008 10.77.0.9
            num-mirrors: many
            working-dir: relative/
            """
        #expect {
            _ = try HostsFile.parse(text)
        } throws: { error in
            guard case .malformed(let problems) = error as? HostsFileError else { return false }
            let reasons = Dictionary(uniqueKeysWithValues: problems.map { ($0.line, $0.reason) })
            return problems.map(\.line) == Array(2...11)
                && reasons[2]?.contains("IDs run 0, 1, 2") == true
                && reasons[3]?.contains("UDP port '0'") == true
                && reasons[4]?.contains("'gk3' is not an IPv4 address") == true
                && reasons[5]?.contains("DNS port '70000'") == true
                && reasons[6]?.contains("HTTP port '0' is not a port 1…65535") == true
                && reasons[7]?.contains("host 0's UDP address too") == true
                && reasons[8]?.contains("spare host") == true
                && reasons[9]?.contains("proxy host") == true
                && reasons[10]?.contains("num-mirrors: takes a number") == true
                && reasons[11]?.contains("working-dir: takes an absolute directory") == true
        }
    }

    @Test func nothingButCommentsIsNoCluster() {
        #expect(throws: HostsFileError.empty) { try HostsFile.parse("# nobody\n\n   \n") }
        #expect(throws: HostsFileError.empty) { try HostsFile.parse("") }
    }

    @Test func atMostTheOriginalsMaximumOfHosts() throws {
        let line = { (id: Int) in "\(id) 10.0.\(id / 256).\(id % 256) 7000 -" }
        let most = (0..<HostsFile.maxHosts).map(line).joined(separator: "\n")
        #expect(try HostsFile.parse(most).hosts.count == HostsFile.maxHosts)
        do {
            _ = try HostsFile.parse(most + "\n" + line(HostsFile.maxHosts))
            Issue.record("\(HostsFile.maxHosts + 1) hosts were accepted")
        } catch {
            guard case .malformed(let problems) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(
                problems.count == 1 && problems[0].line == HostsFile.maxHosts + 1
                    && problems[0].reason.contains("more than"))
        }
    }

    /// What cannot be read as a hosts file says so, by path: missing, a directory, not
    /// text, too large.
    @Test func unreadableFilesAreNamed() throws {
        let dir = "/tmp/hosts-file-test-\(getpid())"
        mkdir(dir, 0o700)
        defer {
            for name in ["binary", "huge", "good"] { unlink("\(dir)/\(name)") }
            rmdir(dir)
        }
        #expect(throws: HostsFileError.unreadable(path: "\(dir)/missing", errno: ENOENT)) {
            try HostsFile.load(path: "\(dir)/missing")
        }
        #expect(throws: HostsFileError.notAFile(path: dir)) { try HostsFile.load(path: dir) }
        try write([0x30, 0x20, 0xff, 0xfe, 0x0a], to: "\(dir)/binary")
        #expect(throws: HostsFileError.notText(path: "\(dir)/binary")) { try HostsFile.load(path: "\(dir)/binary") }
        try write([UInt8](repeating: 0x23, count: HostsFile.maxFileBytes + 1), to: "\(dir)/huge")
        #expect(throws: HostsFileError.tooLarge(path: "\(dir)/huge", limit: HostsFile.maxFileBytes)) {
            try HostsFile.load(path: "\(dir)/huge")
        }
        try write(Array("0 127.0.0.2 7000 -\n".utf8), to: "\(dir)/good")
        #expect(try HostsFile.load(path: "\(dir)/good").hosts.count == 1)
    }
}

@Suite(.processExclusive) struct PingInfoWire {
    /// The original's `PingInfo` (Hostdb.h:85) as g++ lays it out on x86-64, written here
    /// field by field from the header as an oracle: natural alignment, little-endian,
    /// the whole padded to the 8 of its first member.
    static func originalLayout(
        time: Int64, hostID: Int32, flags: Int32, udpSlots: Int32, tcpSockets: Int32, version: String
    ) -> [UInt8] {
        var out: [UInt8] = []
        func append<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out += $0 } }
        append(time) // m_localHostTimeMS
        append(hostID) // m_hostId
        for _ in 0..<7 { append(Int32(0)) } // load, mem, cpu, docs, slow reads, CRC, disk
        append(flags) // m_flags
        for _ in 0..<5 { append(Int32(0)) } // corrupt reads … etryagains
        append(udpSlots) // m_udpSlotsInUseIncoming
        append(tcpSockets) // m_tcpSocketsInUse
        append(Int16(0)) // m_currentSpiders
        append(Int16(-1)) // m_dailyMergeCollnum
        for _ in 0..<4 { append(Int16(0)) } // m_hdtemps
        out += Array(version.utf8) + [UInt8](repeating: 0, count: 21 - version.utf8.count) // m_gbVersionStr
        out += [0, 0, 0] // repair mode, kernel errors, recovery level
        while out.count % 8 != 0 { out.append(0) } // sizeof: a multiple of alignof(int64_t)
        return out
    }

    @Test func bytesAreTheOriginalsLayout() throws {
        let info = PingInfo(
            hostID: 3, localTimeMs: 1_796_000_000_123, version: "port legacy 4242", flags: 0x18,
            udpSlotsInUseIncoming: 7, tcpSocketsInUse: 300)
        let oracle = Self.originalLayout(
            time: 1_796_000_000_123, hostID: 3, flags: 0x18, udpSlots: 7, tcpSockets: 300, version: "port legacy 4242")
        #expect(oracle.count == 112)
        #expect(info.bytes == oracle)
        #expect(try PingInfo(parsing: oracle) == info)
        #expect(info.backend == .legacy && info.pid == 4242)
    }

    @Test func anOriginalsVersionNamesNoBackend() throws {
        let original = Self.originalLayout(
            time: 1, hostID: 0, flags: 0x18, udpSlots: 0, tcpSockets: 0, version: "Dec  7 2026 12:00:00")
        let info = try PingInfo(parsing: original)
        #expect(info.version == "Dec  7 2026 12:00:00" && info.backend == nil && info.pid == nil)
        #expect(try PingMessage(original) == .info(info))
    }

    @Test func messagesAreToldApartBySizeAsTheOriginalDoes() throws {
        #expect(try PingMessage([7, 0, 0, 0, 1]) == .goingDown(hostID: 7))
        #expect(PingMessage.goingDown(hostID: 258).bytes == [2, 1, 0, 0, 0])
        #expect(try PingMessage([0, 0, 0]) == .probe)
        #expect(try PingMessage([1, 2, 3, 4]) == .other(size: 4))
        #expect(try PingMessage([]) == .other(size: 0))
    }

    @Test func malformedPayloadsAreRefusedWithTheirReason() throws {
        let good = PingInfo(hostID: 3, localTimeMs: 9, version: "v").bytes
        func withID(_ id: Int32) -> [UInt8] {
            var bytes = good
            withUnsafeBytes(of: id.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
            return bytes
        }
        #expect(throws: PingInfoError.wrongSize(0)) { try PingInfo(parsing: []) }
        #expect(throws: PingInfoError.wrongSize(113)) { try PingInfo(parsing: good + [0]) }
        #expect(throws: PingInfoError.badHostID(512)) { try PingInfo(parsing: withID(512)) }
        #expect(throws: PingInfoError.badHostID(-1)) { try PingInfo(parsing: withID(-1)) }
        var unterminated = good
        for index in 84..<105 { unterminated[index] = 0x20 }
        #expect(throws: PingInfoError.unterminatedVersion) { try PingInfo(parsing: unterminated) }
        let long = PingInfo(hostID: 0, localTimeMs: 0, version: String(repeating: "x", count: 40))
        #expect(try PingInfo(parsing: long.bytes).version.count == 20, "cut to 20 bytes and its NUL")
    }
}

func write(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { throw POSIXError(errno) }
    defer { close(fd) }
    var offset = 0
    while offset < bytes.count {
        let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw POSIXError(errno) }
        offset += n
    }
}

struct POSIXError: Error {
    let code: Int32
    init(_ code: Int32) { self.code = code }
}
