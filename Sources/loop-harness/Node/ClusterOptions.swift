import Cluster
import CommandLineOptions

/// The options `serve --hosts` and `load` share, and what they read from them.
let pingIntervalOption = Option.integer(
    "--ping-interval-ms", PingConfiguration.intervalRange,
    default: PingConfiguration().intervalMs,
    "how often pings go out (the original's ping spacer)")
let deadAfterOption = Option.integer(
    "--dead-after-ms", PingConfiguration.deadAfterRange,
    default: PingConfiguration().deadAfterMs,
    "a host silent this long is dead (the original's dead-host timeout)")

extension ParsedOptions {
    /// The hosts file named by `--hosts`; anything wrong with it is a usage error naming every bad line.
    func hostsFile() throws(CommandLineError) -> HostsFile {
        do {
            return try HostsFile.load(path: string("--hosts") ?? "")
        } catch {
            throw declaration.usage("\(error)")
        }
    }

    /// `--ping-interval-ms` and `--dead-after-ms`, checked together.
    func pingConfiguration() throws(CommandLineError) -> PingConfiguration {
        var configuration = PingConfiguration()
        configuration.intervalMs = int("--ping-interval-ms")
        configuration.deadAfterMs = int("--dead-after-ms")
        do {
            return try configuration.validated()
        } catch {
            throw declaration.usage("\(error)")
        }
    }
}
