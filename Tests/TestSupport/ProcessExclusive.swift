import Testing

/// Runs a suite (or a test) alone in the test process: while it runs, no other suite
/// or test that carries this trait runs, whichever test target it is in.
///
/// Swift Testing runs the suites of all test targets in parallel in one process, and
/// `.serialized` orders only the tests inside one suite. Loops change process-wide
/// state (signal dispositions and masks, interval timers) and only one legacy loop may
/// exist at a time, so every suite that makes a loop carries this trait, and plain
/// `swift test` (parallel) is safe:
///
///     @Suite(.serialized, .processExclusive) struct MyLoopTests {}
///
/// Every top-level suite of this package carries it, the loop-free ones too (without
/// `.serialized`: their own tests may still run in parallel), so that CPU-heavy work
/// such as fuzzing never runs beside the loops' timing tests. A new top-level suite
/// or free test function joins by adding `.processExclusive` to its traits.
///
/// On a suite the lock is held once around the whole suite, nested suites included; on
/// a test function, around each of its test cases. Nesting is harmless: a suite or test
/// inside one that already holds the lock runs without waiting for it again.
public struct ProcessExclusiveTrait: SuiteTrait, TestTrait, TestScoping {
    /// On a suite, one scope around all of it (its tests inherit the exclusion).
    public var isRecursive: Bool { false }

    public func provideScope(
        for test: Test, testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        try await ProcessExclusiveLock.shared.run(function)
    }
}

extension Trait where Self == ProcessExclusiveTrait {
    /// Runs this suite or test alone among everything else marked `.processExclusive`.
    public static var processExclusive: Self { Self() }
}

/// A process-wide lock for async code: waiters suspend (they do not block a thread of
/// the cooperative pool) and are served first come, first served.
actor ProcessExclusiveLock {
    static let shared = ProcessExclusiveLock()

    /// True inside a task that holds the lock (inherited by its child tasks, which is
    /// where Swift Testing runs a suite's tests), so nested scopes do not deadlock.
    @TaskLocal static var isHeld = false

    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    nonisolated func run(_ body: @Sendable () async throws -> Void) async throws {
        if Self.isHeld { return try await body() }
        await acquire()
        do {
            try await Self.$isHeld.withValue(true) { try await body() }
        } catch {
            await release()
            throw error
        }
        await release()
    }

    private func acquire() async {
        guard held else {
            held = true
            return
        }
        // Handed over by release(): `held` stays true for the next owner.
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }
}
