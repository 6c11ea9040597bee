/// Every registration of one loop: the chains of each descriptor and the
/// dispatch orders, the sleep schedule, the owners that make a registration
/// idempotent, and the pool's count (the original's `MAX_SLOTS`).
///
/// Bookkeeping only. The loop tells the backend about interest changes between
/// the steps here, and releases the callbacks: a table method never calls out,
/// so a callback that re-enters the loop always finds the table consistent.
struct RegistrationTable {
    /// The pool size: registrations beyond it are refused.
    let capacity: Int
    /// Indexed by fd; nil while the fd has no read or write registration.
    private(set) var descriptors: [DescriptorEntry?] = []
    private(set) var readOrder = DispatchOrder(.read)
    private(set) var writeOrder = DispatchOrder(.write)
    /// The sleep callbacks by due time; those due are called newest first, as the
    /// original walks its chain from the head.
    var sleepers = SleepSchedule()
    var timers = OneShotTimers()
    var children = ChildWatches()
    private var sleeperOwners: [AnyHashable: Registration] = [:]
    private var nextGeneration: UInt32 = 0
    /// Registrations holding a slot of the pool, sleep callbacks included.
    private(set) var live = 0
    /// Read and write registrations with niceness > 0: without any, pass 2 has nothing to do.
    private(set) var background = 0

    init(capacity: Int) { self.capacity = capacity }

    @inline(__always)
    func entry(_ fd: Int32) -> DescriptorEntry? {
        fd >= 0 && Int(fd) < descriptors.count ? descriptors[Int(fd)] : nil
    }

    /// Takes a slot of the pool for a registration about to be made.
    mutating func reserve() throws(LoopError) {
        guard live < capacity else { throw .noEmptySlots(limit: capacity) }
        live += 1
    }

    /// Gives back a slot whose registration was refused (by the backend).
    mutating func cancelReservation() {
        live -= 1
    }

    // MARK: Descriptors

    /// The registration of `kind` on `fd` made with `owner`, if any.
    func registration(fd: Int32, kind: Registration.Kind, owner: AnyHashable) -> Registration? {
        guard let entry = entry(fd) else { return nil }
        return (kind == .read ? entry.reads : entry.writes).first { $0.owner == owner }
    }

    /// An entry for a descriptor that has none, under a generation of its own.
    /// It joins the table with its first registration (`added`).
    mutating func makeEntry() -> DescriptorEntry {
        nextGeneration &+= 1
        if nextGeneration == 0 { nextGeneration = 1 } // 0 marks the backends' own descriptors
        return DescriptorEntry(generation: nextGeneration)
    }

    /// `r`, already at the head of its chain in `entry` and accepted by the backend,
    /// joins the table: the dispatch order when it opens its chain, the table with
    /// the entry when the entry is new.
    mutating func added(_ r: Registration, to entry: DescriptorEntry, opensChain: Bool, isNewEntry: Bool) {
        if r.niceness > 0 { background += 1 }
        if opensChain {
            if r.kind == .read { readOrder.append(entry) } else { writeOrder.append(entry) }
        }
        if isNewEntry {
            let fd = Int(r.fd)
            if descriptors.count <= fd {
                descriptors.append(contentsOf: repeatElement(nil, count: fd + 1 - descriptors.count))
            }
            descriptors[fd] = entry
        }
    }

    /// Takes a read or write registration out of its chain (and an emptied chain
    /// out of its dispatch order, an emptied entry out of the table). Returns the
    /// entry and its interest before and after, for the backend, or nil when the
    /// fd has no entry any more.
    mutating func removeDescriptorRegistration(_ r: Registration)
        -> (entry: DescriptorEntry, old: Interest, new: Interest)?
    {
        live -= 1
        if r.niceness > 0 { background -= 1 }
        guard let entry = entry(r.fd) else { return nil }
        let old = entry.interest
        if r.kind == .read {
            entry.reads.removeAll { $0 === r }
            if entry.reads.isEmpty { readOrder.remove(entry) }
        } else {
            entry.writes.removeAll { $0 === r }
            if entry.writes.isEmpty { writeOrder.remove(entry) }
        }
        let new = entry.interest
        if new.isEmpty { descriptors[Int(r.fd)] = nil }
        return (entry, old, new)
    }

    // MARK: Sleep callbacks

    /// The sleep callback registered with `owner`, if any (paused ones included).
    func sleeper(ownedBy owner: AnyHashable) -> Registration? { sleeperOwners[owner] }

    /// A sleep callback whose slot is reserved joins the schedule.
    mutating func addSleeper(_ r: Registration) {
        sleepers.insert(r)
        if let owner = r.owner { sleeperOwners[owner] = r }
    }

    /// Its due time leaves with it: a scan then would find nothing due and still
    /// restart the minTick interval, delaying the others by up to minTick.
    mutating func removeSleeper(_ r: Registration) {
        live -= 1
        sleepers.remove(r)
        if let owner = r.owner, sleeperOwners[owner] === r { sleeperOwners[owner] = nil }
    }

    /// A timer cancelled, or taken out to fire.
    mutating func removeTimer(_ r: Registration) {
        live -= 1
        timers.remove(r)
    }

    // MARK: Closing

    /// Empties the table and hands back what it held, for the loop to detach and
    /// release once its own state is consistent.
    mutating func removeAll() -> (entries: [DescriptorEntry?], sleepers: [Registration]) {
        let taken = (descriptors, sleepers.all + timers.removeAll())
        descriptors = []
        readOrder.removeAll()
        writeOrder.removeAll()
        sleepers.removeAll()
        sleeperOwners = [:]
        live = 0
        background = 0
        return taken
    }
}
