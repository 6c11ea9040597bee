import EpollLoop
import Glibc
import LegacyLoop
@_exported import LoopCore

/// The loop every user of this package writes against. Which backend a plain
/// `Loop.make()` gives is fixed at build time: epoll by default, the legacy
/// select/signal loop when built with `-Xswiftc -DLEGACY_LOOP`.
public typealias Loop = EventLoop

extension LoopBackendKind {
    /// The backend this build selects.
    public static var buildDefault: LoopBackendKind {
        #if LEGACY_LOOP
            return .legacy
        #else
            return .epoll
        #endif
    }

    /// `LOOP_BACKEND=epoll|legacy` overrides the build default at run time.
    public static func fromEnvironment(_ variable: String = "LOOP_BACKEND") throws(LoopConfigurationError)
        -> LoopBackendKind
    {
        guard let raw = getenv(variable) else { return buildDefault }
        let value = String(cString: raw)
        if value.isEmpty { return buildDefault }
        guard let kind = LoopBackendKind(rawValue: value.lowercased()) else {
            throw LoopConfigurationError(variable: variable, value: value)
        }
        return kind
    }
}

/// `LOOP_BACKEND` (or the variable named) holds no backend's name.
public struct LoopConfigurationError: Error, CustomStringConvertible {
    /// The environment variable read.
    public let variable: String
    /// What it held.
    public let value: String
    public var description: String {
        "\(variable)=\(value) is not a backend; use one of: "
            + LoopBackendKind.allCases.map(\.rawValue).joined(separator: ", ")
    }
}

extension EventLoop {
    /// A loop on `backend` (the build's default unless told otherwise).
    public static func make(
        _ backend: LoopBackendKind = .buildDefault,
        configuration: LoopConfiguration = LoopConfiguration()
    ) throws(LoopError) -> EventLoop {
        switch backend {
        case .epoll: return try makeEpollLoop(configuration: configuration)
        case .legacy: return try makeLegacyLoop(configuration: configuration)
        }
    }
}
