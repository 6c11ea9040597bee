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
    @Test func roundTripsEveryField() throws {
        for info in [
            PingInfo(kind: .ping, hostID: 0, backend: .epoll, pid: 1, uptimeMs: 0),
            PingInfo(kind: .goingDown, hostID: 511, backend: .legacy, pid: .max, uptimeMs: .max),
            PingInfo(kind: .ping, hostID: nil, backend: .legacy, pid: 4242, uptimeMs: 123_456_789),
        ] {
            #expect(info.bytes.count == PingInfo.size)
            #expect(try PingInfo(parsing: info.bytes) == info)
        }
    }

    @Test func malformedPayloadsAreRefusedWithTheirReason() {
        let good = PingInfo(kind: .ping, hostID: 3, backend: .epoll, pid: 9, uptimeMs: 9).bytes
        func with(_ index: Int, _ value: UInt8) -> [UInt8] {
            var bytes = good
            bytes[index] = value
            return bytes
        }
        #expect(throws: PingInfoError.wrongSize(0)) { try PingInfo(parsing: []) }
        #expect(throws: PingInfoError.wrongSize(18)) { try PingInfo(parsing: good + [0]) }
        #expect(throws: PingInfoError.unknownVersion(2)) { try PingInfo(parsing: with(0, 2)) }
        #expect(throws: PingInfoError.unknownKind(7)) { try PingInfo(parsing: with(1, 7)) }
        #expect(throws: PingInfoError.badHostID(512)) {
            try PingInfo(parsing: with(2, 2) /* 0x0203 */.enumerated().map { $0.offset == 3 ? 0 : $0.element })
        }
        #expect(throws: PingInfoError.badHostID(-2)) {
            try PingInfo(parsing: with(2, 0xff).enumerated().map { $0.offset == 3 ? 0xfe : $0.element })
        }
        #expect(throws: PingInfoError.unknownBackend(2)) { try PingInfo(parsing: with(4, 2)) }
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
