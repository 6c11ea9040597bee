import Compat
import Glibc
import LoopScript
import LoopTools

/// `loop-harness fuzz-process --backend B --script TEXT`: runs one process-level
/// script in this process, as a program would (signals prepared in `main`, the
/// loop on the main thread), prints its trace, then closes the loop and unblocks
/// every signal, so that an admin signal the loop handed back ends the process.
func runFuzzProcess(_ args: Arguments) throws -> Int32 {
    let backend = try args.backend()
    guard let text = args.value("--script") else { throw UsageError("fuzz-process needs --script TEXT") }
    let script = try Script(parsing: text)
    ProcessSignals.prepare(for: backend)
    let clock = ManualClock()
    let loop = try Loop.make(backend, configuration: ScriptRunner.configuration(LoopConfiguration(), clock: clock))
    let trace = try ScriptRunner(loop: loop, clock: clock).run(script)
    for line in trace.lines { say(line) }
    fflush(nil)
    var all = sigset_t()
    sigfillset(&all)
    pthread_sigmask(SIG_UNBLOCK, &all, nil)
    return 0
}
