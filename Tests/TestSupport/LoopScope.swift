import Compat
import Glibc
import LoopTools
import Testing

/// A loop of `kind` for the length of `body`, always closed at the end.
///
/// Both ends fail loudly: an error closing the loop is an issue of the test, and so
/// is any descriptor the test left open (the loop's, a server's, a client's), named
/// by what it points at (`checkingDescriptors: false` for a test whose libraries keep
/// descriptors of their own, such as Foundation's `Process`). `configuration` defaults
/// to one that accepts timer signals the test thread cannot route, as every in-process
/// test needs.
public func withLoop<R>(
    _ kind: LoopBackendKind,
    configuration: LoopConfiguration = .unroutedTimerSignalsAccepted,
    checkingDescriptors: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (Loop) throws -> R
) throws -> R {
    let before = checkingDescriptors ? openDescriptors() : [:]
    defer {
        if checkingDescriptors {
            let leaked = openDescriptors().filter { before[$0.key] != $0.value }.sorted { $0.key < $1.key }
            #expect(leaked.isEmpty, "descriptors left open by the test: \(leaked)", sourceLocation: sourceLocation)
        }
    }
    let loop = try Loop.make(kind, configuration: configuration)
    defer {
        do { try loop.close() } catch { Issue.record("closing the loop: \(error)", sourceLocation: sourceLocation) }
    }
    return try body(loop)
}

/// The descriptors open in this process now, each with what it is (`socket:[…]`, a
/// path), less the one the listing itself holds.
public func openDescriptors() -> [Int32: String] {
    guard let dir = opendir("/proc/self/fd") else { return [:] }
    let own = dirfd(dir)
    defer { closedir(dir) }
    var found: [Int32: String] = [:]
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let fd = Int32(name), fd != own else { continue }
        var target = [CChar](repeating: 0, count: 256)
        let n = readlink("/proc/self/fd/\(name)", &target, 255)
        found[fd] = n > 0 ? String(decoding: target[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
    return found
}

/// How many descriptors are open in this process now.
public func openDescriptorCount() -> Int { openDescriptors().count }

/// Whole milliseconds since `start` (a `monotonicNanoseconds()` reading).
public func elapsedMs(since start: Int64) -> Int { Int((monotonicNanoseconds() - start) / 1_000_000) }
