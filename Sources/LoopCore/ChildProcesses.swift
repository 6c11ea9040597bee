import Glibc

/// Starts child processes the way a program with a loop must: with
/// `ProcessSignals.childMask` (not the loop's blocked admin signals) and the
/// default disposition for every signal a loop owns (not an ignored SIGTERM).
///
/// glibc's `system()` and `popen()` run their shell with the caller's mask,
/// and `posix_spawn` without attributes does too: in a process running an
/// epoll loop such a child ignores SIGTERM, SIGINT and SIGHUP. Use these
/// instead, or pass `spawnAttributes` to your own `posix_spawn`.
public enum ChildProcesses {
    /// Descriptors the child gets as its stdin, stdout and stderr (nil: inherited).
    public struct StandardStreams: Sendable {
        public var input: Int32?
        public var output: Int32?
        public var error: Int32?
        public init(input: Int32? = nil, output: Int32? = nil, error: Int32? = nil) {
            self.input = input
            self.output = output
            self.error = error
        }
    }

    /// Starts `path` with `arguments` (without argv[0], which is `path`); returns its pid.
    /// `environment` nil passes this process's environment.
    public static func spawn(_ path: String, arguments: [String] = [], environment: [String]? = nil,
                             streams: StandardStreams = StandardStreams(),
                             closing inheritedFDs: [Int32] = []) throws(SystemError) -> pid_t {
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
}
