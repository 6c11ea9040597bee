import Glibc
import LoopCore

/// A program (by default `loop-harness`) run as a child process, its stdout read through a pipe.
/// Signals sent with kill(2) reach a process where every thread is the
/// harness's own, which the test runner's threads would otherwise get in the way of.
public final class ChildProcess {
    public let pid: pid_t
    private let output: Int32
    private var buffer: [UInt8] = []
    public private(set) var exitStatus: Int32?

    /// The harness is built next to the test bundle and the other executables.
    public static var harnessPath: String { siblingPath("loop-harness") }

    /// The probes (`child-loop`, `fuzz-process`, …) the tests, compare and fuzz start, built there too.
    public static var probePath: String { siblingPath("loop-probe") }

    /// `name` in the directory of the running executable or test bundle.
    public static func siblingPath(_ name: String) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        let exe = String(decoding: buf[0..<max(n, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        return dir + "/" + name
    }

    public init(_ arguments: [String], executable: String = ChildProcess.harnessPath) throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw SystemError("pipe", errno: errno) }
        defer { close(fds[1]) }
        do {
            // The child starts as a program started from a shell does: nothing blocked, default
            // dispositions, whatever the runner's threads (which block almost everything) have.
            var empty = sigset_t()
            sigemptyset(&empty)
            pid = try ChildProcesses.spawn(
                executable, arguments: arguments, streams: .init(output: fds[1]),
                closing: [fds[0]], signalMask: empty)
        } catch {
            close(fds[0])
            throw error
        }
        output = fds[0]
    }

    /// The next line that starts with `prefix`, waiting at most `timeoutMs`.
    public func line(startingWith prefix: String, timeoutMs: Int32 = 10_000) -> String? {
        let deadline = monotonicNanoseconds() + Int64(timeoutMs) * 1_000_000
        while true {
            while let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                if line.hasPrefix(prefix) { return line }
            }
            let left = Int32((deadline - monotonicNanoseconds()) / 1_000_000)
            guard left > 0 else { return nil }
            var p = pollfd(fd: output, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, left) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(output, &chunk, chunk.count)
            if n <= 0 { return nil }
            buffer += chunk[0..<n]
        }
    }

    /// Records a status the caller reaped itself with `waitpid`.
    public func markReaped(_ status: Int32) { exitStatus = status }

    /// Waits for exit up to `timeoutMs`; kills the child if it does not exit.
    @discardableResult
    public func waitForExit(timeoutMs: Int64 = 10_000) -> Int32? {
        let deadline = monotonicNanoseconds() + timeoutMs * 1_000_000
        var status: Int32 = 0
        while monotonicNanoseconds() < deadline {
            if waitpid(pid, &status, WNOHANG) == pid {
                exitStatus = status
                return status
            }
            usleep(2000)
        }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        return nil
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        close(output)
    }
}

/// WIFEXITED / WEXITSTATUS / WIFSIGNALED / WTERMSIG, which Swift does not import.
public func exited(_ status: Int32) -> Int32? { status & 0x7f == 0 ? (status >> 8) & 0xff : nil }
public func killedBy(_ status: Int32) -> Int32? {
    let sig = status & 0x7f
    return sig != 0 && sig != 0x7f ? sig : nil
}
