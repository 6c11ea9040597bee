import LoopCore

/// Random loop programs. It keeps a rough picture of what each slot holds so
/// that most steps do something, and leaves enough to chance (closed numbers,
/// reused numbers, dup onto registered ones, callbacks that tear down their own
/// fd) that the corners get visited. Never emits `run` without a pending stop,
/// and keeps socket writes out of callbacks (an AF_UNIX queue's writability
/// depends on buffer accounting the script language does not model).
public struct ScriptGenerator {
    private var rng: SplitMix64
    private enum Held { case pipeRead, pipeWrite, socket, file }
    private var held: [Int: Held] = [:]
    private var nextRegistration = 0
    private var nextJob = 0
    private var registrations: [Int] = []
    private var stopPending = false

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    private mutating func startScript() {
        held = [:]
        nextRegistration = 0
        nextJob = 0
        registrations = []
        stopPending = false
    }

    /// One script of about `steps` top-level steps; the generator's state starts afresh.
    public mutating func script(steps: Int) -> Script {
        startScript()
        var out: [Step] = []
        for _ in 0..<max(1, steps) { out.append(topLevel()) }
        out.append(.runOnce)
        out.append(.runOnce)
        return Script(out)
    }

    /// A process-level script: signals and storms, a child process, a second loop,
    /// shutdown requests taken or left for `close()` to hand back, among a few
    /// ordinary registrations so that signals arrive while callbacks are due.
    public mutating func processScript(steps: Int) -> Script {
        startScript()
        var out: [Step] = []
        var pending = false
        for _ in 0..<max(1, steps) {
            let r = Int.random(in: 0..<100, using: &rng)
            switch r {
            case 0..<20:
                let signal = pick(ProcessSignal.allCases)
                let storm = chance(30)
                if [.HUP, .INT, .TERM, .PWR].contains(signal) { pending = true }
                out.append(.signal(signal, count: storm ? Int.random(in: 2...500, using: &rng) : 1))
            case 20..<30: out.append(.takeShutdown)
            case 30..<35:
                if pending || stopPending {
                    out.append(.run)
                    pending = false
                    stopPending = false
                } else {
                    stopPending = true
                    out.append(.stop)
                }
            case 35..<42: out.append(.signalCounts)
            case 42..<48: out.append(.child)
            case 48..<54: out.append(.secondLoop)
            case 54..<70: out.append(.runOnce)
            case 70..<76: out.append(.clock(Int.random(in: 1...60, using: &rng)))
            default: out.append(topLevel())
            }
        }
        // A process-level script has a process-level step, or it would run in-process.
        if !out.contains(where: \.isProcessLevel) {
            out.insert(.signal(pick(ProcessSignal.allCases), count: 1), at: Int.random(in: 0...out.count, using: &rng))
        }
        out.append(.runOnce)
        return Script(out)
    }

    private mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &rng) < percent }
    private mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &rng)] }

    /// Mostly a small set of slots, so numbers collide and get reused.
    private mutating func anySlot() -> Int {
        chance(85) ? Int.random(in: 0..<8, using: &rng) : Int.random(in: scriptSlots, using: &rng)
    }

    private mutating func heldSlot(_ kinds: [Held]? = nil) -> Int {
        let candidates = held.filter { kinds?.contains($0.value) ?? true }.map(\.key).sorted()
        return candidates.isEmpty || chance(10) ? anySlot() : pick(candidates)
    }

    /// Mostly small; sometimes a whole page or nearly one, so that plain writes fill pipes.
    private mutating func writeSize() -> Int {
        let r = Int.random(in: 0..<100, using: &rng)
        return r < 75 ? Int.random(in: 1...100, using: &rng) : r < 90 ? 4096 : Int.random(in: 3000...4096, using: &rng)
    }

    private mutating func niceness() -> Int {
        let r = Int.random(in: 0..<100, using: &rng)
        return r < 50 ? 0 : r < 85 ? 1 : 2
    }

    private mutating func topLevel() -> Step {
        let r = Int.random(in: 0..<100, using: &rng)
        switch r {
        case 0..<7:
            let (a, b) = (anySlot(), anySlot())
            held[a] = .pipeRead
            held[b] = .pipeWrite
            return .pipe(read: a, write: b)
        case 7..<11:
            let (a, b) = (anySlot(), anySlot())
            held[a] = .socket
            held[b] = .socket
            return .socketPair(a, b)
        case 11..<13:
            let a = anySlot()
            held[a] = .file
            return .regularFile(a)
        case 13..<20: return .write(slot: heldSlot([.pipeWrite, .socket]), bytes: writeSize())
        case 20..<22: return .fill(heldSlot([.pipeWrite, .socket]))
        case 22..<27: return .drain(heldSlot([.pipeRead, .socket]))
        case 27..<30:
            let s = heldSlot()
            held[s] = nil
            return .close(s)
        case 30..<32:
            let (from, to) = (heldSlot(), anySlot())
            held[to] = held[from]
            return .dup(from: from, to: to)
        case 32..<47: return watch(depth: 0)
        case 47..<50: return sleep(depth: 0)
        case 50..<51: return after(depth: 0)
        case 51..<56: return registrations.isEmpty ? .runOnce : .unregister(id: pick(registrations))
        case 56..<58: return .unregisterAll(slot: heldSlot())
        case 58..<60:
            let s = heldSlot()
            held[s] = nil
            return .closeAfterBatch(slot: s)
        case 60..<63: return job(depth: 0)
        case 63..<71:
            return .clock(chance(85) ? Int.random(in: 1...60, using: &rng) : -Int.random(in: 1...30, using: &rng))
        case 71..<72:
            stopPending = true
            return .stop
        case 72..<73:
            if stopPending {
                stopPending = false
                return .run
            }
            return .takeShutdown
        default: return .runOnce
        }
    }

    private mutating func watch(depth: Int) -> Step {
        let id = nextRegistration
        nextRegistration += 1
        registrations.append(id)
        let kind: WatchKind = chance(60) ? .read : .write
        let slot = kind == .read ? heldSlot([.pipeRead, .socket, .file]) : heldSlot([.pipeWrite, .socket, .file])
        let n = niceness()
        // Nested registrations mostly carry an owner: a level-triggered callback runs every poll.
        let owner: Int? = chance(depth > 0 ? 80 : 40) ? Int.random(in: 0..<4, using: &rng) : nil
        return .watch(
            id: id, kind: kind, slot: slot, niceness: n, owner: owner,
            body: body(self: id, slot: slot, kind: kind, depth: depth))
    }

    private mutating func sleep(depth: Int) -> Step {
        let id = nextRegistration
        nextRegistration += 1
        registrations.append(id)
        let n = niceness()
        let owner: Int? = chance(depth > 0 ? 80 : 30) ? Int.random(in: 0..<3, using: &rng) : nil
        return .sleep(
            id: id, periodMs: pick([1, 5, 10, 20, 40, 50, 100]), niceness: n, owner: owner,
            body: body(self: id, slot: nil, kind: nil, depth: depth))
    }

    /// Delays around the clock steps (1…60 ms) and 0 (the next full poll), so timers
    /// fire in the same poll as others, after a step back, or are cancelled first.
    private mutating func after(depth: Int) -> Step {
        let id = nextRegistration
        nextRegistration += 1
        registrations.append(id)
        let n = niceness()
        let owner: Int? = chance(depth > 0 ? 60 : 30) ? Int.random(in: 0..<3, using: &rng) : nil
        return .after(
            id: id, ms: pick([0, 0, 1, 5, 10, 20, 30, 60]), niceness: n, owner: owner,
            body: body(self: id, slot: nil, kind: nil, depth: depth))
    }

    private mutating func job(depth: Int) -> Step {
        let id = nextJob
        nextJob += 1
        let n = niceness()
        return .job(id: id, niceness: n, body: body(self: nil, slot: nil, kind: nil, depth: depth))
    }

    private mutating func body(self id: Int?, slot: Int?, kind: WatchKind?, depth: Int) -> [Step] {
        guard depth < 2 else { return [] }
        var steps: [Step] = []
        for _ in 0..<Int.random(in: 0...3, using: &rng) {
            let r = Int.random(in: 0..<100, using: &rng)
            switch r {
            case 0..<25:
                if let slot, kind == .read {
                    steps.append(.drain(slot))
                } else {
                    steps.append(.drain(heldSlot([.pipeRead, .socket])))
                }
            case 25..<35: if let id { steps.append(.unregister(id: id)) }
            case 35..<42: if !registrations.isEmpty { steps.append(.unregister(id: pick(registrations))) }
            case 42..<47: steps.append(.unregisterAll(slot: slot ?? heldSlot()))
            case 47..<52: steps.append(.closeAfterBatch(slot: slot ?? heldSlot()))
            case 52..<62: steps.append(watch(depth: depth + 1))
            case 62..<64: steps.append(sleep(depth: depth + 1))
            case 64..<66: steps.append(after(depth: depth + 1))
            case 66..<70: if nextJob < 8 { steps.append(job(depth: depth + 1)) }
            case 70..<82: steps.append(.quickPoll)
            case 82..<85: steps.append(.stop)
            case 85..<92: steps.append(.write(slot: heldSlot([.pipeWrite]), bytes: writeSize()))
            case 92..<96: steps.append(.close(slot ?? heldSlot()))
            default: steps.append(.dup(from: heldSlot(), to: slot ?? anySlot()))
            }
        }
        return steps
    }
}
