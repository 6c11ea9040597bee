extension ReferenceModel {
    // MARK: doPoll

    /// `rearmed`: the number had a registration made since its file last changed.
    /// Without one, what a wait reports for it is a declared difference (orphan).
    struct Ready {
        let slot: Int
        let generation: Int
        let readable: Bool
        let writable: Bool
        let rearmed: Bool
    }

    func poll(quick: Bool) {
        polls += 1
        // What select reports: registered numbers whose file is ready for what they are watched for.
        var batch: [Int: Ready] = [:]
        for (slot, e) in entries {
            guard let file = slots[slot] else { continue }
            let (r, w) = readiness(file)
            let readable = r && !e.reads.isEmpty
            let writable = w && !e.writes.isEmpty
            let rearmed = (e.reads + e.writes).contains { !$0.orphaned }
            if readable || writable {
                batch[slot] = Ready(
                    slot: slot, generation: e.generation, readable: readable, writable: writable, rearmed: rearmed)
            }
        }
        now = clock
        dispatchDepth += 1
        completions(urgentOnly: true)
        dispatch(batch, urgent: true)
        completions(urgentOnly: true)
        if !quick {
            dispatch(batch, urgent: false)
            completions(urgentOnly: false)
            now = clock
            // The port's scan rule (MIGRATION.md "Minimum tick"): every minTick, but
            // not before some callback is due; a clock gone back scans at once.
            let due: Bool
            switch rules.sleepScan {
            case .earliestDue:
                let earliestDue = sleepers.map { $0.lastCall + $0.period }.min() ?? Int64.max
                due = now >= max(lastSleepRun + minTick, earliestDue) || now < lastSleepRun
            case .everyMinTick:
                let elapsed = now - lastSleepRun
                due = elapsed < 0 || elapsed >= minTick
            }
            if due {
                runSleepers(urgentOnly: false)
                lastSleepRun = now
                completions(urgentOnly: false)
            }
            // One-shot timers after the sleep callbacks: the due set is fixed first
            // (one registered meanwhile waits for a later poll), earliest first, then
            // registration order; each leaves before its call.
            let dueTimers = timers.filter { $0.lastCall + $0.period <= now }
                .sorted { ($0.lastCall + $0.period, $0.sequence) < ($1.lastCall + $1.period, $1.sequence) }
            if !dueTimers.isEmpty {
                for r in dueTimers where r.active {
                    unregister(r)
                    call(r)
                }
                completions(urgentOnly: false)
            }
        }
        dispatchDepth -= 1
        if dispatchDepth == 0 {
            let closes = pendingCloses
            pendingCloses = []
            for s in closes { put(nil, at: s) }
        }
    }

    func dispatch(_ batch: [Int: Ready], urgent: Bool) {
        for kind in [Reg.Kind.read, .write] {
            switch rules.order {
            case .registrationList, .reversedList:
                var order = kind == .read ? readList : writeList
                if rules.order == .reversedList { order.reverse() }
                for slot in order { visit(slot, kind: kind, batch: batch, urgent: urgent) }
            case .liveList:
                var i = 0
                while i < (kind == .read ? readList : writeList).count {
                    let slot = (kind == .read ? readList : writeList)[i]
                    i += 1
                    visit(slot, kind: kind, batch: batch, urgent: urgent)
                }
            }
        }
    }

    /// Calls the chain of a ready fd, if it is ready for `kind` and has registrations for this pass.
    func visit(_ slot: Int, kind: Reg.Kind, batch: [Int: Ready], urgent: Bool) {
        guard let ready = batch[slot], kind == .read ? ready.readable : ready.writable else { return }
        guard let e = entries[slot] else { return }
        if rules.staleEvents == .dropped && e.generation != ready.generation { return }
        let chain = kind == .read ? e.reads : e.writes
        guard let head = chain.first else { return }
        for r in chain where r.active {
            switch rules.passes {
            case .perRegistration:
                guard (r.niceness == 0) == urgent else { continue }
            case .byChainHead:
                guard (head.niceness == 0) == urgent else { continue }
                if urgent && r.niceness != 0 { continue }
            }
            let quickPollsBefore = quickPolls
            call(r, orphan: r.orphaned || !ready.rearmed)
            if rules.nestedQuickPoll == .chainCut && quickPolls != quickPollsBefore { return }
        }
    }

    func call(_ r: Reg, orphan: Bool = false) {
        let saved = niceness
        niceness = min(r.niceness, 1)
        defer { niceness = saved }
        switch r.kind {
        case .sleep:
            sleepCalls += 1
            note(TraceLine.sleep(id: r.id, quick: inQuickPoll, niceness: niceness, depth: depth))
            run(r.body)
        case .timer:
            note(TraceLine.timer(id: r.id, niceness: niceness, depth: depth))
            run(r.body)
        case .read, .write:
            let pass = inQuickPoll ? "q" : (niceness == 0 ? "p1" : "p2")
            note(
                TraceLine.call(
                    id: r.id, kind: r.watchKind, slot: r.slot, pass: pass, niceness: niceness, depth: depth,
                    orphan: orphan))
            if !orphan { run(r.body) }
        }
    }

    func run(_ body: [Step]) {
        depth += 1
        defer { depth -= 1 }
        for step in body where !step.isTopLevelOnly { perform(step, niceness: niceness) }
    }

    func runSleepers(urgentOnly: Bool) {
        for r in sleepers where r.active && (!urgentOnly || r.niceness == 0) {
            if r.lastCall > now { r.lastCall = now }
            guard r.lastCall + r.period <= now else { continue }
            r.lastCall = now
            let quickPollsBefore = quickPolls
            call(r)
            if rules.nestedQuickPoll == .chainCut && quickPolls != quickPollsBefore { return }
        }
    }

    /// Finished jobs' completions, in batches of up to 16: the niceness-0 ones
    /// first, the others only when not urgent-only; a job finishing meanwhile
    /// (one a completion submitted) waits for the next batch.
    func completions(urgentOnly: Bool) {
        while true {
            var batch = Array(finishedUrgent.prefix(16))
            finishedUrgent.removeFirst(batch.count)
            if !urgentOnly {
                let more = Array(finishedBackground.prefix(16 - batch.count))
                finishedBackground.removeFirst(more.count)
                batch += more
            }
            if batch.isEmpty { return }
            for job in batch {
                pendingJobs -= 1
                jobsCompleted += 1
                let saved = niceness
                niceness = min(job.niceness, 1)
                note(TraceLine.job(id: job.id, niceness: niceness, depth: depth))
                completionsRunning += 1
                run(job.body)
                completionsRunning -= 1
                niceness = saved
            }
        }
    }

    func quickPoll(_ n: Int) {
        guard n > 0 else { return }
        guard !inQuickPoll else {
            refused += 1
            return note(TraceLine.note("quickpoll refused", depth: depth))
        }
        inQuickPoll = true
        quickPolls += 1
        let saved = niceness
        poll(quick: true)
        runSleepers(urgentOnly: true)
        niceness = saved
        inQuickPoll = false
        note(TraceLine.note("quickpoll ran", depth: depth))
    }
}
