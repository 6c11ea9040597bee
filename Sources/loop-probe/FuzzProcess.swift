import CommandLineOptions
import Compat
import Glibc
import LoopScript
import LoopTools

/// `loop-probe fuzz-process --backend B --script TEXT`: runs one process-level
/// script in this process, as a program would (signals prepared in `main`, the
/// loop on the main thread), prints its trace, then closes the loop and unblocks
/// every signal, so that an admin signal the loop handed back ends the process.
let fuzzProcessOptions = CommandOptions(
    command: "fuzz-process",
    summary: "Runs one process-level script in this process, as fuzz does; prints its trace.",
    options: [.text("--script", "TEXT", "the script", required: true)])

func runFuzzProcess(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(fuzzProcessOptions)
    let backend = try options.backend()
    guard let script = try options.converted("--script", { try Script(parsing: $0) }) else {
        throw options.declaration.usage("--script is required")
    }
    ProcessSignals.prepare(for: backend)
    let clock = ManualClock()
    let loop = try Loop.make(backend, configuration: ScriptRunner.configuration(LoopConfiguration(), clock: clock))
    let trace = try ScriptRunner(loop: loop, clock: clock).run(script)
    if options.json {
        say(JSON.object([("trace", .array(trace.lines.map(JSON.string)))]).description)
    } else {
        for line in trace.lines { say(line) }
    }
    fflush(nil)
    var all = sigset_t()
    sigfillset(&all)
    pthread_sigmask(SIG_UNBLOCK, &all, nil)
    return 0
}
