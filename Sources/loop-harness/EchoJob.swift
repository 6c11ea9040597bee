import Compat
import Glibc
import LoopTools

/// The main job before the RPC node: the default loop, a heartbeat sleep
/// callback and a UDP echo read callback on 127.0.0.1.
func runEcho(_ args: Arguments) throws -> Int32 {
    let backend = try args.backend()
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    let socket = try LoopbackSocket(port: UInt16(try args.int("--port", default: 0)))
    var echoed = 0
    try loop.registerRead(fd: socket.fd) { fd in echoed += socket.echoAll() }
    var beats = 0
    try loop.registerSleep(every: 1000) {
        beats += 1
        say("heartbeat \(beats): echoed \(echoed) datagrams, cpu \(Int(loop.cpuUsage.rounded()))%")
        
    }
    let seconds = try args.int("--seconds", default: 0)
    if seconds > 0 {
        let started = loop.now
        try loop.registerSleep(every: 100) { if loop.now - started >= Int64(seconds) * 1000 { loop.stop() } }
    }
    say("loop-harness: backend \(loop.kind), echo on 127.0.0.1:\(socket.port), pid \(getpid())")
    
    let reason = try loop.run()
    say("stopped: \(reason)")
    say("counters: \(loop.counters)")
    try loop.close()
    return 0
}
