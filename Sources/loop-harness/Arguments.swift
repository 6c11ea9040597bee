import Compat

/// Minimal `--name value` / `--flag` parsing; the package takes no dependencies.
struct Arguments {
    let command: String
    private var rest: [String]

    init(_ argv: [String]) {
        command = argv.count > 1 && !argv[1].hasPrefix("-") ? argv[1] : ""
        rest = Array(argv.dropFirst(command.isEmpty ? 1 : 2))
    }

    func flag(_ name: String) -> Bool { rest.contains(name) }

    func value(_ name: String) -> String? {
        guard let i = rest.firstIndex(of: name), i + 1 < rest.count else { return nil }
        return rest[i + 1]
    }

    func int(_ name: String, default fallback: Int) throws -> Int {
        guard let raw = value(name) else { return fallback }
        guard let v = Int(raw) else { throw UsageError("\(name) takes a whole number, not '\(raw)'") }
        return v
    }

    /// `--backend epoll|legacy`, else `LOOP_BACKEND`, else the build's default.
    func backend() throws -> LoopBackendKind {
        if let raw = value("--backend") {
            guard let kind = LoopBackendKind(rawValue: raw) else {
                throw UsageError("--backend takes epoll or legacy, not '\(raw)'")
            }
            return kind
        }
        return try LoopBackendKind.fromEnvironment()
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
