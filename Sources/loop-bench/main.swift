import CommandLineOptions
import Compat
import Glibc
import LoopTools

// `loop-bench --help` (or `help`, `-h`) is the whole usage; `loop-bench COMMAND --help` that command's options.
if CommandLine.arguments.count > 1, ["--help", "-h", "help"].contains(CommandLine.arguments[1]) {
    print(usage)
    exit(0)
}
do {
    let options = try Options(Arguments(CommandLine.arguments, defaultCommand: "run"))
    switch options.command {
    case "run": exit(try runAll(options))
    case "echo-server": exit(try runEchoServer(options))
    case "pipes": exit(try runPipesChild(options))
    case "idle": exit(try runIdleChild(options))
    case "scale": exit(try runScaleChild(options))
    case "wakeup": exit(try runWakeupChild(options))
    case "dispatch-order": exit(try runDispatchOrderChild(options))
    case "rpc-server": exit(try runRpcServer(options))
    case "rpc-client": exit(try runRpcClient(options))
    default: throw UsageError("unknown command '\(options.command)'\n\n\(usage)")
    }
} catch CommandLineError.helpRequested(let text) {
    print(text)
    exit(0)
} catch CommandLineError.usage(let message) {
    sayError(message)
    exit(2)
} catch {
    sayError("loop-bench: \(error)")
    exit(2)
}
