import CommandLineOptions
import Compat
import Glibc
import LoopTools
import NodeSupport

let runOptions = CommandOptions(
    command: "run",
    summary: "A raw loop: a heartbeat every second and a UDP echo read callback on 127.0.0.1, "
        + "until SIGINT, SIGTERM or SIGHUP (or --seconds).",
    options: [
        .integer("--port", 0...65535, default: 0, "UDP port of the echo; 0 takes any free one"),
        .integer("--seconds", 0...31_536_000, default: 0, "stop by itself after this many seconds; 0: never"),
    ])

/// `loop-harness run`, the main job before the RPC node: the default loop, a heartbeat sleep
/// callback and a UDP echo read callback on 127.0.0.1.
func runRawLoop(_ args: Arguments) throws -> Int32 {
    let options = try args.parse(runOptions)
    let backend = try options.backend()
    let json = options.json
    ProcessSignals.prepare(for: backend)
    let loop = try Loop.make(backend)
    let socket = try LoopbackSocket(port: UInt16(options.int("--port")))
    var echoed = 0
    try loop.registerRead(fd: socket.fd) { fd in echoed += socket.echoAll() }
    var beats = 0
    try loop.registerSleep(every: 1000) {
        beats += 1
        if json {
            say(
                JSON.object([
                    ("event", .string("heartbeat")), ("beat", .int(beats)), ("echoed", .int(echoed)),
                    ("cpuPercent", .number(loop.cpuUsage)),
                ]).description)
        } else {
            say("heartbeat \(beats): echoed \(echoed) datagrams, cpu \(Int(loop.cpuUsage.rounded()))%")
        }
    }
    let seconds = options.int("--seconds")
    if seconds > 0 { try stopLoop(loop, afterSeconds: seconds) }
    if json {
        say(
            JSON.object([
                ("event", .string("serving")), ("backend", .string(loop.kind.rawValue)),
                ("port", .int(Int(socket.port))), ("pid", .int(Int(getpid()))),
            ]).description)
    } else {
        say("loop-harness: backend \(loop.kind), echo on 127.0.0.1:\(socket.port), pid \(getpid())")
    }

    let reason = try loop.run()
    if json {
        var fields: [(String, JSON)] = [("event", .string("stopped")), ("reason", .string(reason.kind))]
        if let signo = reason.signalNumber { fields.append(("signal", .int(Int(signo)))) }
        fields += [
            ("echoed", .int(echoed)),
            (
                "loop",
                .object(loop.counters.fields.map { ($0.0, .int($0.1)) } + [("cpuPercent", .number(loop.cpuUsage))])
            ),
        ]
        say(JSON.object(fields).description)
    } else {
        say("stopped: \(reason)")
        for line in CounterReport.lines(loop: loop.counters) { say(line) }
    }
    try loop.close()
    return 0
}
