import Glibc

/// Why `run()` returned. `legacyCode` carries the original's shutdown values.
public enum ShutdownReason: Equatable, Sendable, CustomStringConvertible {
    /// `stop()` was called (embedding, tests).
    case stopped
    /// SIGHUP, SIGTERM or SIGINT (SIGINT had no handler in the original; it is treated as SIGTERM).
    case signal(Int32)
    /// SIGPWR.
    case power

    /// 1 = SIGHUP/SIGTERM (and SIGINT), 3 = SIGPWR; 0 for a programmatic stop.
    public var legacyCode: Int {
        switch self {
        case .stopped: return 0
        case .signal: return 1
        case .power: return 3
        }
    }

    /// The signal that asked for this shutdown, if one did.
    public var signalNumber: Int32? {
        switch self {
        case .stopped: return nil
        case .signal(let s): return s
        case .power: return SIGPWR
        }
    }

    public var description: String {
        switch self {
        case .stopped: return "stopped"
        case .signal(let s): return "signal \(signalName(s)) (shutdown \(legacyCode))"
        case .power: return "SIGPWR (shutdown 3)"
        }
    }

    /// The reason a delivered admin signal stands for.
    public static func forSignal(_ signo: Int32) -> ShutdownReason {
        signo == SIGPWR ? .power : .signal(signo)
    }
}

/// The admin signals both loops turn into a shutdown.
package let adminSignals: [Int32] = [SIGHUP, SIGTERM, SIGINT, SIGPWR]

package func signalName(_ signo: Int32) -> String {
    switch signo {
    case SIGHUP: return "SIGHUP"
    case SIGINT: return "SIGINT"
    case SIGTERM: return "SIGTERM"
    case SIGPWR: return "SIGPWR"
    case SIGALRM: return "SIGALRM"
    case SIGVTALRM: return "SIGVTALRM"
    case SIGCHLD: return "SIGCHLD"
    case SIGPIPE: return "SIGPIPE"
    case SIGIO: return "SIGIO"
    default: return "signal \(signo)"
    }
}
