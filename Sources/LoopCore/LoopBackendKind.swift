/// The two implementations of the loop.
public enum LoopBackendKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// `epoll_wait`, timerfd, eventfd and signalfd.
    case epoll
    /// `select()`, `setitimer` and signal handlers: the original design, kept as fallback.
    case legacy

    public var description: String { rawValue }
}
