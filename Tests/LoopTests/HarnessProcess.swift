import Compat
import Glibc
import LoopTools
import TestSupport

/// `loop-harness` (or another of the package's executables: `loop-probe`,
/// `loop-bench`) as a child process with its stderr in the same pipe as its
/// stdout (through `sh`, which execs the program, so the pid is the program's):
/// the command-line tests read error messages as well as results.
struct HarnessRun {
    let lines: [String]
    /// The exit status, nil when it did not exit within the wait (it was killed).
    let exitCode: Int32?

    var output: String { lines.joined(separator: "\n") }

    /// Runs `program` to completion, waiting at most `timeoutMs` for its output and exit.
    /// `environment`: shell commands run before it starts (`export LOOP_BACKEND=legacy; `).
    init(
        _ arguments: [String], program: String = ChildProcess.harnessPath, environment: String = "",
        timeoutMs: Int32 = 30_000
    ) throws {
        let child = try HarnessRun.start(arguments, limits: environment, program: program)
        var lines: [String] = []
        let deadline = monotonicNanoseconds() + Int64(timeoutMs) * 1_000_000
        while monotonicNanoseconds() < deadline,
            let line = child.line(
                startingWith: "", timeoutMs: max(1, Int32((deadline - monotonicNanoseconds()) / 1_000_000)))
        {
            lines.append(line)
        }
        self.lines = lines
        exitCode = child.waitForExit(timeoutMs: 5_000).flatMap(exited)
    }

    /// Starts `program`; read its merged output with `line(startingWith:)`.
    static func start(_ arguments: [String], limits: String = "", program: String = ChildProcess.harnessPath) throws
        -> ChildProcess
    {
        try ChildProcess(["-c", limits + "exec \"$0\" \"$@\" 2>&1", program] + arguments, executable: "/bin/sh")
    }
}

/// A `loop-harness serve` of the tests, on an ephemeral port.
final class ServedNode {
    let process: ChildProcess
    let port: UInt16
    /// Lines read while waiting for the ones asked for.
    private(set) var seen: [String] = []

    /// `limits`: shell commands run before the harness starts (`ulimit -f 0; `).
    init(_ arguments: [String], limits: String = "") throws {
        process = try HarnessRun.start(["serve"] + arguments, limits: limits)
        var port: UInt16?
        while port == nil, let line = process.line(startingWith: "", timeoutMs: 30_000) {
            seen.append(line)
            if line.hasPrefix("serving on "), let colon = line.firstIndex(of: ":"),
                let comma = line.firstIndex(of: ",")
            {
                port = UInt16(line[line.index(after: colon)..<comma])
            } else if line.hasPrefix("{\"event\":\"serving\"") {
                port = jsonInt(line, "port").flatMap { UInt16(exactly: $0) }
            }
        }
        guard let port else { throw NodeDidNotStart(output: seen) }
        self.port = port
    }

    var address: String { "127.0.0.1:\(port)" }

    /// The next line starting with `prefix` (others are kept in `seen`).
    func line(startingWith prefix: String, timeoutMs: Int32 = 30_000) -> String? {
        let deadline = monotonicNanoseconds() + Int64(timeoutMs) * 1_000_000
        while monotonicNanoseconds() < deadline,
            let line = process.line(
                startingWith: "", timeoutMs: max(1, Int32((deadline - monotonicNanoseconds()) / 1_000_000)))
        {
            seen.append(line)
            if line.hasPrefix(prefix) { return line }
        }
        return nil
    }

    /// Every remaining line until the node exits (or `timeoutMs`), then its exit code.
    func finish(timeoutMs: Int32 = 30_000) -> Int32? {
        let deadline = monotonicNanoseconds() + Int64(timeoutMs) * 1_000_000
        while monotonicNanoseconds() < deadline,
            let line = process.line(
                startingWith: "", timeoutMs: max(1, Int32((deadline - monotonicNanoseconds()) / 1_000_000)))
        {
            seen.append(line)
        }
        return process.waitForExit(timeoutMs: 5_000).flatMap(exited)
    }

    /// True while the process has not exited.
    var isRunning: Bool { kill(process.pid, 0) == 0 && process.exitStatus == nil && !hasExited() }

    private func hasExited() -> Bool {
        var status: Int32 = 0
        guard waitpid(process.pid, &status, WNOHANG) == process.pid else { return false }
        process.markReaped(status)
        return true
    }
}

struct NodeDidNotStart: Error, CustomStringConvertible {
    let output: [String]
    var description: String { "the node did not start; output: \(output)" }
}

/// The integer after `"key":` in a line of JSON; nil when absent or not a bare number
/// (a number inside a string is not one).
func jsonInt(_ line: String, _ key: String) -> Int? {
    guard let range = line.range(of: "\"\(key)\":") else { return nil }
    let digits = line[range.upperBound...].prefix { $0 == "-" || ("0"..."9").contains($0) }
    return Int(digits)
}
