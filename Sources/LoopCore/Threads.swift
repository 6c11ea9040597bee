import Glibc

/// Starts a detached-free POSIX thread running `body`; returns its handle for `join`.
/// `blocking` signals are blocked in the new thread from its first instruction
/// (the creator's mask is inherited, so it is changed around `pthread_create`).
package func startThread(blocking signals: [Int32] = [], _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var block = sigset_t()
    sigemptyset(&block)
    for s in signals { sigaddset(&block, s) }
    var saved = sigset_t()
    pthread_sigmask(SIG_BLOCK, &block, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }

    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    var thread = pthread_t()
    let rc = pthread_create(
        &thread, nil,
        { raw in
            let box = Unmanaged<AnyObject>.fromOpaque(raw!).takeRetainedValue() as! Box
            box.body()
            return nil
        }, context)
    precondition(rc == 0, "pthread_create failed: \(rc)")
    return thread
}

package func joinThread(_ thread: pthread_t) {
    pthread_join(thread, nil)
}
