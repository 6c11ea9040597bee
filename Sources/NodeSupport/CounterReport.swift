import Compat
import LoopTools
import UdpServer

/// The loop's, the server's and the node's counters for a person: a few short
/// labelled lines instead of one line of every field. Fields are read by name
/// from each counter set's `fields`, so a field added there later still shows
/// (on an "other" line, when not zero); `--json` has the complete set.
public enum CounterReport {
    /// A field shown as "VALUE WORDS"; `always` shows it when it is zero too; a byte
    /// count is shown in brackets after the field before it ("12 datagrams in (3.4 kB)").
    private struct Field {
        let name: String
        let words: String
        var always = false
        var isBytes = false
    }

    private static let traffic: [Field] = [
        Field(name: "datagramsIn", words: "datagrams in", always: true),
        Field(name: "bytesIn", words: "", always: true, isBytes: true),
        Field(name: "datagramsOut", words: "out", always: true),
        Field(name: "bytesOut", words: "", always: true, isBytes: true),
        Field(name: "acksIn", words: "ACKs in"), Field(name: "acksOut", words: "out"),
        Field(name: "cancelAcksIn", words: "cancel ACKs in"), Field(name: "cancelAcksOut", words: "cancel ACKs out"),
        Field(name: "resends", words: "resends", always: true),
        Field(name: "requestsResent", words: "requests sent whole again"),
        Field(name: "replyPokes", words: "late replies asked for"),
    ]
    private static let transactions: [Field] = [
        Field(name: "requestsSent", words: "requests sent", always: true),
        Field(name: "requestsCompleted", words: "completed", always: true),
        Field(name: "handlerCalls", words: "requests handled", always: true),
        Field(name: "repliesSent", words: "replies", always: true),
        Field(name: "errorRepliesSent", words: "error replies"), Field(name: "timeouts", words: "timed out"),
        Field(name: "noSlotRequests", words: "refused for lack of slots"),
        Field(name: "unhandledRequests", words: "of no known type"),
        Field(name: "outgoingSlots", words: "outgoing in progress"),
        Field(name: "incomingSlots", words: "incoming in progress"),
    ]
    private static let drops: [Field] = [
        Field(name: "corrupt", words: "corrupt"), Field(name: "duplicates", words: "duplicates"),
        Field(name: "strayAcks", words: "stray ACKs"), Field(name: "strayReplies", words: "stray replies"),
        Field(name: "noSlotDrops", words: "for lack of slots"),
        Field(name: "shutdownDrops", words: "while shutting down"),
        Field(name: "memoryDrops", words: "over the memory cap"),
        Field(name: "peerShareDrops", words: "over their address's share"),
        Field(name: "lateDuplicates", words: "late copies"),
        Field(name: "unauthorized", words: "unauthorized (not member, local or admin)"),
        Field(name: "evictions", words: "stalled requests evicted"),
        Field(name: "repliesAbandoned", words: "replies to strangers given up"),
    ]
    private static let socket: [Field] = [
        Field(name: "sendsBlocked", words: "sends blocked"), Field(name: "sendErrors", words: "send errors"),
        Field(name: "receiveErrors", words: "receive errors"),
        Field(name: "writeCallbacksRegistered", words: "write callbacks"),
        Field(name: "callbacksHeldBack", words: "callbacks held back in quickpoll"),
    ]
    /// Shown elsewhere or derived: the total of the drops.
    private static let serverDerived: Set<String> = ["dropped"]

    private static let loopFields: [Field] = [
        Field(name: "polls", words: "polls", always: true),
        Field(name: "sleepCallbacks", words: "sleep callbacks", always: true),
        Field(name: "jobsCompleted", words: "worker jobs", always: true),
        Field(name: "wakeups", words: "wake-ups", always: true),
        Field(name: "quickpolls", words: "quickpolls"), Field(name: "quickpollsRefused", words: "quickpolls refused"),
        Field(name: "staleEvents", words: "stale events"),
    ]
    private static let callbackFields = ["callbacks0", "callbacks1", "callbacks2"]
    /// Shown as `name=value` when not zero.
    private static let signalFields = ["sigchlds", "sigqueues", "sigpipes", "sigios", "sigothers"]
    /// Left to --json: registrations still open at the end (not a figure of the run), and
    /// the timer ticks, which count the backend's design (1000 a second on legacy) more than the work.
    private static let loopIgnored: Set<String> = ["registrations", "alarms", "vtalarms"]

    /// `loop:` then, given a server, `traffic:`, `transactions:`, `drops:` (only reasons
    /// that happened), `socket:` (when anything went wrong there), `admin:` for a node,
    /// and `other:` for fields this report does not know.
    public static func lines(loop: LoopCounters, server: UdpServerStats? = nil, node: NodeCounters? = nil) -> [String] {
        var out = [line("loop:", loopLine(loop))]
        var unknown: [(String, Int)] = []
        if let server {
            let values = Dictionary(server.fields, uniquingKeysWith: { a, _ in a })
            out.append(line("traffic:", render(traffic, values)))
            out.append(line("transactions:", render(transactions, values)))
            let dropped = render(drops, values)
            out.append(line("drops:", dropped.isEmpty ? "none" : dropped))
            let socketText = render(socket, values)
            if !socketText.isEmpty { out.append(line("socket:", socketText)) }
            let known = Set((traffic + transactions + drops + socket).map(\.name)).union(serverDerived)
            unknown += server.fields.filter { !known.contains($0.0) && $0.1 != 0 }
        }
        if let node {
            out.append(
                line("admin:", "\(node.adminRefused) refused (untrusted peers), \(node.savesFailed) failed saves"))
        }
        let loopKnown = Set(loopFields.map(\.name) + callbackFields + signalFields).union(loopIgnored)
        unknown += loop.fields.filter { !loopKnown.contains($0.0) && $0.1 != 0 }
        if !unknown.isEmpty { out.append(line("other:", unknown.map { "\($0.0)=\($0.1)" }.joined(separator: " "))) }
        return out
    }

    /// A line telling a person what to run against a node at `address`.
    public static func nextSteps(_ address: String) -> String {
        line(
            "try:",
            "loop-harness ping --to \(address)   loop-harness stats --to \(address)   "
                + "loop-harness shutdown --to \(address)")
    }

    private static func loopLine(_ counters: LoopCounters) -> String {
        let values = Dictionary(counters.fields, uniquingKeysWith: { a, _ in a })
        let callbacks = callbackFields.map { values[$0] ?? 0 }
        var text =
            "\(counters.backend): " + render(loopFields, values)
            + ", \(callbacks.reduce(0, +)) callbacks (\(callbacks.map(String.init).joined(separator: "/")) by niceness)"
            + ", cpu \(Int(counters.cpuUsage.rounded()))%"
        let signals = signalFields.compactMap { name in values[name].flatMap { $0 != 0 ? "\(name)=\($0)" : nil } }
        if !signals.isEmpty { text += "; signals " + signals.joined(separator: " ") }
        return text
    }

    /// "VALUE WORDS, …"; a byte count goes in brackets after the field before it.
    private static func render(_ fields: [Field], _ values: [String: Int]) -> String {
        var parts: [String] = []
        for field in fields {
            guard let value = values[field.name], value != 0 || field.always else { continue }
            if field.isBytes, let last = parts.popLast() {
                parts.append("\(last) (\(bytesText(value)))")
            } else {
                parts.append("\(value) \(field.words)")
            }
        }
        return parts.joined(separator: ", ")
    }

    private static func bytesText(_ n: Int) -> String {
        switch n {
        case ..<10_000: return "\(n) B"
        case ..<1_000_000: return "\(format(Double(n) / 1e3, 1)) kB"
        default: return "\(format(Double(n) / 1e6, 1)) MB"
        }
    }

    private static func line(_ label: String, _ text: String) -> String { label.padded(to: 14) + text }
}
