import Glibc
import Synchronization

/// Starts child processes the way a program with a loop must: with
/// `ProcessSignals.childMask` (not the loop's blocked admin signals) and the
/// default disposition for every signal a loop owns (not an ignored SIGTERM).
///
/// glibc's `system()` and `popen()` run their shell with the caller's mask,
/// and `posix_spawn` without attributes and Foundation's `Process` do too: in a
/// process running an epoll loop such a child ignores SIGTERM, SIGINT and
/// SIGHUP. Use these instead, pass `spawnAttributes` to your own
/// `posix_spawn`, or wrap a call you do not control in `withChildSignalMask`.
public enum ChildProcesses {
    /// Descriptors the child gets as its stdin, stdout and stderr (nil: inherited).
    public struct StandardStreams: Sendable {
        /// The child's stdin.
        public var input: Int32?
        /// The child's stdout.
        public var output: Int32?
        /// The child's stderr.
        public var error: Int32?
        /// The streams given; the others are inherited.
        public init(input: Int32? = nil, output: Int32? = nil, error: Int32? = nil) {
            self.input = input
            self.output = output
            self.error = error
        }
    }

    /// Starts `path` with `arguments` (without argv[0], which is `path`); returns its pid.
    /// `environment` nil passes this process's environment; `signalMask` nil gives
    /// the child `ProcessSignals.childMask`.
    public static func spawn(
        _ path: String, arguments: [String] = [], environment: [String]? = nil,
        streams: StandardStreams = StandardStreams(),
        closing inheritedFDs: [Int32] = [],
        signalMask: sigset_t? = nil
    ) throws(SystemError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (fd, target) in [(streams.input, Int32(0)), (streams.output, 1), (streams.error, 2)] {
            if let fd { posix_spawn_file_actions_adddup2(&actions, fd, target) }
        }
        for fd in inheritedFDs { posix_spawn_file_actions_addclose(&actions, fd) }
        var attributes = posix_spawnattr_t()
        try spawnAttributes(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        if var signalMask { posix_spawnattr_setsigmask(&attributes, &signalMask) }

        let argv = [path] + arguments
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for p in cArguments { free(p) } }
        var child: pid_t = 0
        let rc: Int32
        if let environment {
            var cEnvironment = environment.map { strdup($0) } + [nil]
            defer { for p in cEnvironment { free(p) } }
            rc = posix_spawnp(&child, path, &actions, &attributes, &cArguments, &cEnvironment)
        } else {
            rc = posix_spawnp(&child, path, &actions, &attributes, &cArguments, environ)
        }
        guard rc == 0 else { throw SystemError("posix_spawn \(path)", errno: rc) }
        return child
    }

    /// `system(command)`, with the child's signals set up as above: runs
    /// `/bin/sh -c command`, waits for it and returns its wait status. Unlike
    /// glibc's `system()` it does not ignore SIGINT/SIGQUIT in the caller meanwhile.
    public static func system(_ command: String) throws(SystemError) -> Int32 {
        let pid = try spawn("/bin/sh", arguments: ["-c", command])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw SystemError("waitpid", errno: errno) }
        }
        return status
    }

    /// Initialises `attributes` with the child mask and default dispositions for
    /// the loop-owned signals; for callers of `posix_spawn` who build their own
    /// file actions. The caller destroys them.
    public static func spawnAttributes(_ attributes: inout posix_spawnattr_t) throws(SystemError) {
        let rc = posix_spawnattr_init(&attributes)
        guard rc == 0 else { throw SystemError("posix_spawnattr_init", errno: rc) }
        var mask = ProcessSignals.childMask
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signo in loopOwnedSignals { sigaddset(&defaults, signo) }
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    }

    /// Runs `body` (a call that starts children: Foundation's `Process.run()`,
    /// `popen`, glibc's `system`) with the calling thread's mask set to
    /// `ProcessSignals.childMask`, so the children inherit that.
    ///
    /// While the mask is open, a signal sent to the process could land on this
    /// thread and take its default action (terminate). So each signal opened here
    /// whose disposition is the default gets a catching stand-in for as long as
    /// any thread has such a window open (nested and concurrent calls share it);
    /// what it catches is raised again when a window closes: to this thread when
    /// a loop here reads it, else to the process. A child's `exec` resets caught
    /// signals to the default.
    @discardableResult
    public static func withChildSignalMask<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        var saved = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &saved)
        var child = ProcessSignals.childMask
        var opened: [Int32] = []
        for signo in Int32(1)..<Int32(64) where sigismember(&saved, signo) == 1 && sigismember(&child, signo) == 0 {
            if StandIns.open(signo) { opened.append(signo) }
        }
        pthread_sigmask(SIG_SETMASK, &child, nil)
        defer {
            pthread_sigmask(SIG_SETMASK, &saved, nil)
            for signo in opened { StandIns.close(signo) }
            // Taken only now, with the mask back: a nested window's catch stays for the outer one.
            let caught = caughtWhileOpen.exchange(0, ordering: .sequentiallyConsistent)
            for signo in Int32(1)..<Int32(64) where caught & (1 << UInt64(signo)) != 0 {
                if ThreadSignalMask.callingThreadClaimsBlocked(signo) {
                    pthread_kill(pthread_self(), signo)
                } else {
                    kill(getpid(), signo)
                }
            }
        }
        return try body()
    }
}

/// The catching stand-ins of `withChildSignalMask`, shared by every open window:
/// installed by the first window that opens a signal, removed by the last.
private enum StandIns {
    struct Held {
        var count: Int
        var previous: sigaction
    }
    static let held = Lock<[Int32: Held]>([:])

    /// Counts a window on `signo`; false when the signal needs no stand-in
    /// (its disposition is not the default, or it cannot be caught).
    static func open(_ signo: Int32) -> Bool {
        guard signo != SIGKILL, signo != SIGSTOP else { return false }
        return held.withLock { held in
            if held[signo] != nil {
                held[signo]!.count += 1
                return true
            }
            var current = sigaction()
            guard sigaction(signo, nil, &current) == 0, current.__sigaction_handler.sa_handler == nil else {
                return false
            }
            _ = caughtWhileOpen.load(ordering: .relaxed) // initialised before any handler may touch it
            var catcher = sigaction()
            catcher.__sigaction_handler.sa_handler = { signo in
                caughtWhileOpen.bitwiseOr(1 << UInt64(signo), ordering: .sequentiallyConsistent)
            }
            catcher.sa_flags = SA_RESTART
            sigemptyset(&catcher.sa_mask)
            sigaction(signo, &catcher, nil)
            held[signo] = Held(count: 1, previous: current)
            return true
        }
    }

    static func close(_ signo: Int32) {
        held.withLock { held in
            guard var h = held[signo] else { return }
            h.count -= 1
            if h.count == 0 {
                sigaction(signo, &h.previous, nil)
                held[signo] = nil
            } else {
                held[signo] = h
            }
        }
    }
}

/// Signals caught by `withChildSignalMask`'s stand-in handler, one bit each.
private let caughtWhileOpen = Atomic<UInt64>(0)
