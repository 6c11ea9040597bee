import Compat
import Glibc
import LoopTools

let options = Options(CommandLine.arguments)
do {
    if options.flag("--help") || options.flag("-h") {
        print(usage)
        exit(0)
    }
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
} catch {
    sayError("loop-bench: \(error)")
    exit(2)
}
