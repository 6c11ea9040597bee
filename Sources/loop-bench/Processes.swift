import Glibc
import LoopTools

/// Starts `arguments[0]` (an absolute path) with the rest as its arguments,
/// pinned to `cpu` when the machine has taskset and that CPU. The Glibc
/// module does not export sched_setaffinity; a child pinned at exec is all
/// the benchmark needs.
func spawn(_ arguments: [String], cpu: Int? = nil) throws -> ChildProcess {
    if let cpu, canPin, cpu < Machine.current.cpus, let taskset = tasksetPath {
        return try ChildProcess(["-c", String(cpu)] + arguments, executable: taskset)
    }
    return try ChildProcess(Array(arguments.dropFirst()), executable: arguments[0])
}

extension ChildProcess {
    /// The `key=value` fields of the first line that starts with `tag`.
    func expect(_ tag: String, timeoutMs: Int) throws(BenchError) -> [String: String] {
        guard let line = line(startingWith: tag + " ", timeoutMs: Int32(timeoutMs)) else {
            throw BenchError("pid \(pid) printed no '\(tag)' line within \(timeoutMs) ms")
        }
        return fields(of: line)
    }

    /// Asks the child to stop (its loop turns SIGTERM into a shutdown).
    func terminate() { kill(pid, SIGTERM) }
}

/// `key=value` tokens of a report line; tokens without `=` are ignored.
func fields(of line: String) -> [String: String] {
    var result: [String: String] = [:]
    for token in line.split(separator: " ") {
        guard let eq = token.firstIndex(of: "=") else { continue }
        result[String(token[..<eq])] = String(token[token.index(after: eq)...])
    }
    return result
}

private let tasksetPath: String? = {
    let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
    for dir in path.split(separator: ":") where access("\(dir)/taskset", X_OK) == 0 {
        return "\(dir)/taskset"
    }
    return nil
}()

/// Whether children are pinned (reported with the results).
var canPin: Bool { tasksetPath != nil && Machine.current.cpus >= 2 }

/// This executable, so `run` can start its own server modes.
func selfExecutablePath() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return n > 0
        ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension Dictionary where Key == String, Value == String {
    /// A numeric field, or nil.
    func number(_ key: String) -> Double? { self[key].flatMap(Double.init) }
}
