import CLoopShim
import Glibc
import Synchronization

/// The signal-mask changes loops make to their own thread, recorded so that
/// each loop undoes exactly its own change and nothing else.
///
/// A loop *claims* signals: for each, whether it wants it blocked. The first
/// claim on a signal remembers the thread's state before it (the base); while
/// several loops on one thread claim a signal, the newest claim decides; when
/// the last claim on a signal is released, the base comes back. Signals no
/// claim names are never touched, so a signal the embedder blocks or unblocks
/// after `make()` keeps the embedder's setting, and loops closed out of
/// creation order leave the thread as each remaining loop needs it.
///
/// Every change is also noted process-wide (`shim_library_mask_note`) so that
/// child processes start with the mask the program had before the library.
package enum ThreadSignalMask {
    package struct Claim: Sendable {
        fileprivate let token: UInt64
        fileprivate let thread: UInt64
        fileprivate let forkGeneration: Int32
        /// Signals and whether this claim wants them blocked.
        package let wishes: [Int32: Bool]
    }

    private struct Held {
        let token: UInt64
        let wishes: [Int32: Bool]
    }

    private struct ThreadRecord {
        var forkGeneration: Int32
        /// Blocked-or-not before the first claim, per claimed signal.
        var base: [Int32: Bool] = [:]
        /// Per claimed signal, the state the library left it in when that differs
        /// from the base (what the process-wide tally counts for this thread).
        var deviation: [Int32: Bool] = [:]
        /// Oldest first.
        var claims: [Held] = []
    }

    /// Keyed by `shim_thread_token()`.
    private static let records = Lock<[UInt64: ThreadRecord]>([:])
    private static let nextToken = Atomic<UInt64>(1)

    /// Applies `wishes` to the calling thread's mask and records them.
    package static func claim(_ wishes: [Int32: Bool]) -> Claim {
        let thread = shim_thread_token()
        let generation = shim_fork_generation()
        let token = nextToken.add(1, ordering: .relaxed).newValue
        records.withLock { records in
            var record = records[thread] ?? ThreadRecord(forkGeneration: generation)
            // A record copied from the parent by fork describes threads this process does not have.
            if record.forkGeneration != generation { record = ThreadRecord(forkGeneration: generation) }
            let current = currentMask()
            for (signo, _) in wishes where record.base[signo] == nil {
                record.base[signo] = isMember(signo, current)
            }
            record.claims.append(Held(token: token, wishes: wishes))
            for (signo, blocked) in wishes { set(signo, blocked: blocked, in: &record) }
            records[thread] = record
        }
        return Claim(token: token, thread: thread, forkGeneration: generation, wishes: wishes)
    }

    /// Whether a loop on the calling thread has `signo` blocked to read it itself.
    package static func callingThreadClaimsBlocked(_ signo: Int32) -> Bool {
        let thread = shim_thread_token()
        let generation = shim_fork_generation()
        return records.withLock { records in
            guard let record = records[thread], record.forkGeneration == generation else { return false }
            return record.claims.last(where: { $0.wishes[signo] != nil })?.wishes[signo] == true
        }
    }

    /// Undoes `claim`: each signal it named goes to the newest remaining claim's
    /// wish, or back to its base. From another thread (a loop freed elsewhere) or
    /// another process (a forked child) only the claim is dropped: a thread's mask
    /// can be changed by that thread alone, so the base and the tally stay as they
    /// are (children spawned from that thread still get the program's mask, and a
    /// later claim and release there settles it).
    package static func release(_ claim: Claim) {
        let here =
            shim_thread_token() == claim.thread
            && shim_fork_generation() == claim.forkGeneration
        records.withLock { records in
            guard var record = records[claim.thread], record.forkGeneration == claim.forkGeneration,
                let index = record.claims.firstIndex(where: { $0.token == claim.token })
            else { return }
            record.claims.remove(at: index)
            if here {
                for signo in claim.wishes.keys {
                    set(signo, blocked: effectiveState(signo, record: record), in: &record)
                    if !record.claims.contains(where: { $0.wishes[signo] != nil }) { record.base[signo] = nil }
                }
            }
            records[claim.thread] = record.claims.isEmpty && record.deviation.isEmpty ? nil : record
        }
    }

    /// The newest claim's wish for `signo`, or the base when none names it.
    private static func effectiveState(_ signo: Int32, record: ThreadRecord) -> Bool {
        for held in record.claims.reversed() {
            if let wish = held.wishes[signo] { return wish }
        }
        return record.base[signo] ?? false
    }

    /// Puts `signo` in the wanted state and keeps the process-wide tally: a signal
    /// counts as blocked (or unblocked) by the library while the library holds it
    /// away from its base.
    private static func set(_ signo: Int32, blocked: Bool, in record: inout ThreadRecord) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signo)
        pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nil)
        let old = record.deviation[signo]
        let new: Bool? = blocked == record.base[signo] ? nil : blocked
        guard old != new else { return }
        if let old { shim_library_mask_note(signo, old ? -1 : 0, old ? 0 : -1) }
        if let new { shim_library_mask_note(signo, new ? 1 : 0, new ? 0 : 1) }
        record.deviation[signo] = new
    }

    private static func currentMask() -> sigset_t {
        var mask = sigset_t()
        pthread_sigmask(SIG_SETMASK, nil, &mask)
        return mask
    }

    private static func isMember(_ signo: Int32, _ mask: sigset_t) -> Bool {
        var m = mask
        return sigismember(&m, signo) == 1
    }
}
