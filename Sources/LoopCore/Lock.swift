import Glibc

/// A value guarded by a `pthread_mutex_t`.
///
/// Not `Synchronization.Mutex`: on Linux its contended path hands the lock over
/// inside the kernel (a PI futex), which ThreadSanitizer cannot see, so every
/// correctly locked access was reported as a race (a toolchain false positive;
/// the reproduction is in scripts/sanitizers/tsan.supp). A pthread mutex is
/// what TSan models, so the sanitizer keeps checking everything it guards.
final class Lock<State>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var state: State

    init(_ state: State) {
        self.state = state
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R>(_ body: (inout State) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&state)
    }
}
