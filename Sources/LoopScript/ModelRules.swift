/// The legacy loop's rules and the port's declared differences, each a named switch the
/// reference model follows (`ReferenceModel`): a declared difference is one rule, not a tolerance.
public struct ModelRules: Sendable, Equatable, CustomStringConvertible {
    /// Which registrations of a ready fd run in which pass.
    public enum Passes: String, Sendable { case perRegistration, byChainHead }
    /// Events of a registration that went away (and maybe came back) earlier in the batch.
    public enum StaleEvents: String, Sendable { case dropped, delivered }
    /// The order of ready fds within a pass.
    public enum Order: String, Sendable { case registrationList, liveList, reversedList }
    /// When the sleep chain is scanned.
    public enum SleepScan: String, Sendable { case earliestDue, everyMinTick }
    /// What a quickpoll inside a callback does to the chain that callback belongs to.
    public enum NestedQuickPoll: String, Sendable { case chainContinues, chainCut }

    /// Port (MIGRATION.md "Niceness passes"): niceness-0 registrations of every ready fd
    /// in pass 1, niceness > 0 ones in pass 2. Original: the chain's head decides the
    /// pass of the whole chain, and pass 2 runs every registration of it.
    public var passes = Passes.perRegistration
    /// Port (MIGRATION.md "Stale events"): dropped. Original: an fd in the select
    /// result has its current chain called, whatever happened to it since.
    public var staleEvents = StaleEvents.dropped
    /// The order in which fds got their first registration of the kind, a removed
    /// fd's place taken by the last (the original's `s_readFds`). Port: the order as
    /// it stands when the pass begins. Original: the list walked while callbacks
    /// change it (a removal can move an fd not yet visited into a visited place).
    /// `reversedList` exists to plant a divergence and see the differ catch it.
    public var order = Order.registrationList
    /// Port (MIGRATION.md "Minimum tick"): every `minTick` ms but not before some
    /// callback is due. Original: whenever `minTick` ms have passed since the last scan.
    public var sleepScan = SleepScan.earliestDue
    /// Port: the chain goes on. Original: a quickpoll resets the global "next
    /// registration" pointer of the chain walk, and the rest of the chain waits a poll.
    public var nestedQuickPoll = NestedQuickPoll.chainContinues

    public init(
        passes: Passes = .perRegistration, staleEvents: StaleEvents = .dropped, order: Order = .registrationList,
        sleepScan: SleepScan = .earliestDue, nestedQuickPoll: NestedQuickPoll = .chainContinues
    ) {
        self.passes = passes
        self.staleEvents = staleEvents
        self.order = order
        self.sleepScan = sleepScan
        self.nestedQuickPoll = nestedQuickPoll
    }

    /// What the port promises.
    public static let port = ModelRules()
    /// The original's rules where the port declares a difference.
    public static let original = ModelRules(
        passes: .byChainHead, staleEvents: .delivered, order: .liveList,
        sleepScan: .everyMinTick, nestedQuickPoll: .chainCut)

    public var description: String {
        "passes=\(passes.rawValue) stale=\(staleEvents.rawValue) order=\(order.rawValue) "
            + "sleepScan=\(sleepScan.rawValue) nestedQuickPoll=\(nestedQuickPoll.rawValue)"
    }
}
