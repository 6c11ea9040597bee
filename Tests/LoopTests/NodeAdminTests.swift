import Compat
import Glibc
import LoopTools
import NodeSupport
import TestSupport
import Testing
import UdpServer

extension LoopConformance {
    /// Who may stop a node, and how it saves: `TrustedPeers`, `AtomicFile`, and the
    /// node (`serve --trust`, `serve --save`) with its clients as whole processes.
    @Suite struct NodeAdmin {
        // MARK: TrustedPeers

        @Test func trustedPeersParseStrictlyAndMatchByPrefix() throws {
            let peers = try TrustedPeers(parsing: "10.0.0.0/8,192.168.1.7,172.16.0.0/12")
            #expect(peers.contains(PeerAddress.parseIPv4("10.200.3.4")!))
            #expect(peers.contains(PeerAddress.parseIPv4("192.168.1.7")!))
            #expect(!peers.contains(PeerAddress.parseIPv4("192.168.1.8")!))
            #expect(peers.contains(PeerAddress.parseIPv4("172.31.255.255")!))
            #expect(!peers.contains(PeerAddress.parseIPv4("172.32.0.0")!))
            #expect(!peers.contains(PeerAddress.parseIPv4("127.0.0.1")!), "giving a list replaces the loopback default")
            #expect(peers.description == "10.0.0.0/8,192.168.1.7/32,172.16.0.0/12")

            #expect(TrustedPeers.loopback.contains(PeerAddress.parseIPv4("127.0.0.1")!))
            #expect(TrustedPeers.loopback.contains(PeerAddress.parseIPv4("127.255.0.9")!))
            #expect(!TrustedPeers.loopback.contains(PeerAddress.parseIPv4("128.0.0.1")!))
            #expect(try TrustedPeers(parsing: "0.0.0.0/0").contains(PeerAddress.parseIPv4("8.8.8.8")!))

            #expect(throws: TrustListError.emptyEntry) { try TrustedPeers(parsing: "") }
            #expect(throws: TrustListError.emptyEntry) { try TrustedPeers(parsing: "10.0.0.0/8,") }
            #expect(throws: TrustListError.emptyEntry) { try TrustedPeers(parsing: "10.0.0.0/8,,1.2.3.4") }
            #expect(throws: TrustListError.notAnAddress("10.0.0/8")) { try TrustedPeers(parsing: "10.0.0/8") }
            #expect(throws: TrustListError.notAnAddress("256.0.0.0")) { try TrustedPeers(parsing: "256.0.0.0") }
            #expect(throws: TrustListError.notAnAddress("1.2.3.4/8/8")) { try TrustedPeers(parsing: "1.2.3.4/8/8") }
            #expect(throws: TrustListError.badPrefixLength("10.0.0.0/33")) { try TrustedPeers(parsing: "10.0.0.0/33") }
            #expect(throws: TrustListError.badPrefixLength("10.0.0.0/")) { try TrustedPeers(parsing: "10.0.0.0/") }
            #expect(throws: TrustListError.badPrefixLength("10.0.0.0/-8")) { try TrustedPeers(parsing: "10.0.0.0/-8") }
            #expect(throws: TrustListError.hostBitsSet("10.1.0.0/8", "10.0.0.0/8")) {
                try TrustedPeers(parsing: "10.1.0.0/8")
            }
        }

        // MARK: AtomicFile

        @Test func atomicWriteReplacesTheFileWithMode0600() throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/state.json"
            try write("old content, readable by all\n", to: path, mode: 0o644)
            let before = try #require(fileStatus(path))
            try AtomicFile.write(Array("{\"saved\":true}\n".utf8), to: path)
            #expect(try contents(of: path) == "{\"saved\":true}\n")
            let after = try #require(fileStatus(path))
            #expect(after.st_mode & 0o777 == 0o600)
            #expect(after.st_ino != before.st_ino, "a new file renamed over the old, not the old truncated in place")
            #expect(directory.entries() == ["state.json"], "no temporary file left")

            // A large write goes out whole (short writes continue).
            let big = [UInt8](repeating: 0x41, count: 3 << 20)
            try AtomicFile.write(big, to: path)
            #expect(fileStatus(path)?.st_size == big.count)
            #expect(directory.entries() == ["state.json"])
        }

        @Test func atomicWriteRefusesASymlinkAndLeavesItsTargetAlone() throws {
            let directory = try TemporaryDirectory()
            let target = directory.path + "/elsewhere"
            let path = directory.path + "/state.json"
            try write("precious\n", to: target, mode: 0o644)
            #expect(symlink(target, path) == 0)
            #expect(throws: SaveError.isSymlink(path)) { try AtomicFile.write(Array("x".utf8), to: path) }
            #expect(try contents(of: target) == "precious\n")
            #expect(fileStatus(target).map { $0.st_mode & 0o777 } == 0o644)
            #expect(directory.entries() == ["elsewhere", "state.json"])
            #expect(SaveError.isSymlink(path).errno == ELOOP)
        }

        @Test func atomicWriteFailuresAreTypedAndLeaveNothingBehind() throws {
            let directory = try TemporaryDirectory()
            // A directory at the path: refused (root could otherwise not replace it either way).
            #expect(throws: SaveError.isDirectory(directory.path)) { try AtomicFile.write([1], to: directory.path) }
            // A directory that does not exist: open fails, root or not.
            let missing = directory.path + "/missing/state.json"
            do {
                try AtomicFile.write([1], to: missing)
                Issue.record("a write into a missing directory succeeded")
            } catch {
                #expect(error.errno == ENOENT)
                #expect(error.description.hasPrefix("save failed: \(missing): "), "\(error)")
            }
            // A path through a regular file.
            try write("x", to: directory.path + "/file", mode: 0o600)
            #expect(throws: SaveError.self) { try AtomicFile.write([1], to: directory.path + "/file/state.json") }
            #expect(directory.entries() == ["file"])
        }

        // MARK: The node

        /// save-and-exit from a peer outside `--trust` is refused with EPERM: the client
        /// says so, the node keeps serving and counts it; with the default trust
        /// (loopback) the same request stops the node.
        @Test(arguments: LoopBackendKind.allCases)
        func adminRequestsOnlyFromTrustedPeers(kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--trust", "10.0.0.0/8"])
            #expect(node.line(startingWith: "save-and-exit only from 10.0.0.0/8") != nil, "\(node.seen)")
            let refused = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", node.address])
            #expect(refused.exitCode == 1, "\(refused.output)")
            #expect(refused.output.contains("refused"), "\(refused.output)")
            #expect(refused.output.contains("Operation not permitted"), "\(refused.output)")
            #expect(node.isRunning)

            let stats = try HarnessRun(["stats", "--backend", kind.rawValue, "--to", node.address])
            #expect(stats.exitCode == 0, "\(stats.output)")
            #expect(jsonInt(stats.output, "adminRefused") == 1, "\(stats.output)")
            kill(node.process.pid, SIGTERM)
            #expect(node.finish() == 0)
            #expect(node.seen.contains { $0.hasPrefix("admin:") && $0.contains("1 refused") }, "\(node.seen)")
            #expect(!node.seen.contains { $0.contains("state saved") })

            let trusting = try ServedNode(["--backend", kind.rawValue])
            let accepted = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", trusting.address])
            #expect(accepted.exitCode == 0, "\(accepted.output)")
            #expect(accepted.output.contains("saved"))
            #expect(trusting.finish() == 0)
            #expect(trusting.seen.contains { $0.hasPrefix("stopped: stopped (state saved)") }, "\(trusting.seen)")
        }

        /// `--bind` beyond loopback is announced (every handler is exposed; admin stays
        /// with the trusted peers), and the node answers there; a bad address is a usage error.
        @Test(arguments: LoopBackendKind.allCases)
        func bindBeyondLoopbackIsAnnounced(kind: LoopBackendKind) throws {
            let node = try ServedNode(["--backend", kind.rawValue, "--bind", "0.0.0.0", "--seconds", "30"])
            #expect(node.seen.last?.hasPrefix("serving on 0.0.0.0:") == true, "\(node.seen)")
            let warning = node.line(startingWith: "listening beyond loopback")
            #expect(warning?.contains("save-and-exit only 127.0.0.0/8") == true, "\(node.seen)")
            let ping = try HarnessRun(["ping", "--backend", kind.rawValue, "--to", node.address, "--count", "5"])
            #expect(ping.exitCode == 0, "\(ping.output)")
            kill(node.process.pid, SIGTERM)
            #expect(node.finish() == 0)

            let bad = try HarnessRun(["serve", "--backend", kind.rawValue, "--bind", "localhost"], timeoutMs: 20_000)
            #expect(bad.exitCode == 2 && bad.output.contains("--bind"), "\(bad.output)")
        }

        /// `--save PATH`: written atomically with mode 0600 and the node's counters; no temporary file remains.
        @Test(arguments: LoopBackendKind.allCases)
        func saveWritesTheStateAtomically(kind: LoopBackendKind) throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/state.json"
            try write("stale\n", to: path, mode: 0o644)
            let node = try ServedNode(["--backend", kind.rawValue, "--save", path])
            let reply = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", node.address])
            #expect(reply.exitCode == 0, "\(reply.output)")
            #expect(node.finish() == 0)
            let saved = try contents(of: path)
            #expect(saved.hasPrefix("{\"backend\":\"\(kind.rawValue)\""), "\(saved)")
            #expect(saved.contains("\"adminRefused\":0"))
            #expect(fileStatus(path).map { $0.st_mode & 0o777 } == 0o600)
            #expect(directory.entries() == ["state.json"])
        }

        /// A symlink at PATH is refused, its target untouched; the requester gets the
        /// errno (ELOOP), the node reports the failure (a JSON event with --json) and keeps serving.
        @Test(arguments: LoopBackendKind.allCases)
        func saveRefusesASymlinkAndKeepsServing(kind: LoopBackendKind) throws {
            let directory = try TemporaryDirectory()
            let target = directory.path + "/target"
            let path = directory.path + "/state.json"
            try write("precious\n", to: target, mode: 0o644)
            #expect(symlink(target, path) == 0)
            let node = try ServedNode(["--backend", kind.rawValue, "--save", path, "--json"])
            let refused = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", node.address, "--json"])
            #expect(refused.exitCode == 1, "\(refused.output)")
            #expect(jsonInt(refused.output, "errno") == Int(ELOOP), "\(refused.output)")
            let event = node.line(startingWith: "{\"event\":\"save failed\"")
            #expect(event.flatMap { jsonInt($0, "errno") } == Int(ELOOP), "\(node.seen)")
            #expect(try contents(of: target) == "precious\n")
            #expect(node.isRunning)
            let stats = try HarnessRun(["stats", "--backend", kind.rawValue, "--to", node.address])
            #expect(jsonInt(stats.output, "savesFailed") == 1, "\(stats.output)")
            kill(node.process.pid, SIGTERM)
            #expect(node.finish() == 0)
            #expect(directory.entries() == ["state.json", "target"])
        }

        /// A save into a directory that does not exist fails (root cannot bypass that):
        /// an error reply, the node keeps serving; once the directory exists the same
        /// request saves and stops it.
        @Test(arguments: LoopBackendKind.allCases)
        func failedSaveCanBeRetried(kind: LoopBackendKind) throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/later/state.json"
            let node = try ServedNode(["--backend", kind.rawValue, "--save", path])
            let failed = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", node.address])
            #expect(failed.exitCode == 1, "\(failed.output)")
            #expect(failed.output.contains("No such file or directory"), "\(failed.output)")
            let report = node.line(startingWith: "save failed: \(path): ")
            #expect(report != nil, "\(node.seen)")
            #expect(node.isRunning)

            #expect(mkdir(directory.path + "/later", 0o700) == 0)
            let retried = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", node.address])
            #expect(retried.exitCode == 0, "\(retried.output)")
            #expect(node.finish() == 0)
            #expect(fileStatus(path).map { $0.st_mode & 0o777 } == 0o600)
            #expect(TemporaryDirectory.entries(of: directory.path + "/later") == ["state.json"])
        }

        /// A write that fails after the temporary file exists (the file-size limit at 0,
        /// which binds root too): an error reply (EFBIG), no temporary file left, the
        /// node still serving (SIGXFSZ does not kill it).
        @Test(arguments: LoopBackendKind.allCases)
        func failedWriteLeavesNoTemporaryFile(kind: LoopBackendKind) throws {
            let directory = try TemporaryDirectory()
            let path = directory.path + "/state.json"
            let node = try ServedNode(["--backend", kind.rawValue, "--save", path])
            // The limit is set once the node serves, not before it starts: a sanitizer's
            // runtime writes a file as the process starts, and would die of SIGXFSZ there.
            // (util-linux's prlimit: Glibc's prlimit() is not visible to Swift.)
            let limit = try ChildProcess(
                ["--pid", "\(node.process.pid)", "--fsize=0:unlimited"], executable: "/usr/bin/prlimit")
            try #require(limit.waitForExit(timeoutMs: 10_000).flatMap(exited) == 0, "prlimit failed")
            let failed = try HarnessRun(["shutdown", "--backend", kind.rawValue, "--to", node.address])
            #expect(failed.exitCode == 1, "\(failed.output)")
            #expect(failed.output.contains("File too large"), "\(failed.output)")
            #expect(node.isRunning)
            #expect(directory.entries() == [], "the temporary file was left behind")
            kill(node.process.pid, SIGTERM)
            #expect(node.finish() == 0)
        }
    }
}

// MARK: Files for the tests

/// A directory of its own under /tmp, removed with everything in it.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/loop-harness-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        path = String(cString: made)
    }

    /// The names in the directory, sorted, without `.` and `..`.
    func entries() -> [String] { Self.entries(of: path) }

    static func entries(of path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    deinit { _ = try? ChildProcesses.system("rm -rf '\(path)'") }
}

func write(_ text: String, to path: String, mode: mode_t) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode)
    guard fd >= 0 else { throw SystemError("open", errno: errno) }
    defer { close(fd) }
    fchmod(fd, mode)
    let bytes = Array(text.utf8)
    guard Glibc.write(fd, bytes, bytes.count) == bytes.count else { throw SystemError("write", errno: errno) }
}

func contents(of path: String) throws -> String {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw SystemError("open", errno: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &chunk, chunk.count)
        guard n > 0 else { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// lstat(2): the link itself, not what it points to.
func fileStatus(_ path: String) -> stat? {
    var status = stat()
    return lstat(path, &status) == 0 ? status : nil
}
