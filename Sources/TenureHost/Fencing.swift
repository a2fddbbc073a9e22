import TenureCore
import TenureEngine
import TenureFormat

extension HostCore {
    // MARK: Stopping a process

    /// Starts stopping `pid`: it is asked first (its killpath, or SIGTERM)
    /// unless it allows only SIGKILL or the stop is forced; escalation
    /// follows in ``tick(at:)`` once the grace has passed. Its leases stay
    /// held meanwhile.
    mutating func startStop(_ pid: ProcessID, graceful: Bool, reason: StopReason, leases names: Set<String>?,
                            at now: MonotonicInstant) -> [HostDirective] {
        let control = control(of: pid)
        let askFirst = control.sigtermOnly || (graceful && !control.sigkillOnly)
        var out: [HostDirective] = []
        var graceUntil = now
        if askFirst {
            let then = control.sigtermOnly ? "SIGTERM again" : "SIGKILL"
            if let killpath = control.killpath {
                graceUntil = now + settings.grace(usingKillpath: true)
                out.append(.log(.warning, "running the killpath of process \(pid) (\(reason)); \(then) in \(graceUntil - now)"))
                out.append(.runKillpath(pid, killpath))
            } else {
                graceUntil = now + settings.grace(usingKillpath: false)
                out.append(.log(.warning, "sent SIGTERM to process \(pid) (\(reason)); \(then) in \(graceUntil - now)"))
                out.append(.signal(pid, .terminate))
            }
        }
        var state = fencing[pid] ?? Fencing(started: now)
        state.stops.append(Stop(reason: reason, leases: names, graceUntil: graceUntil))
        fencing[pid] = state
        if !askFirst { out += escalate(pid, at: now) }
        return out
    }

    /// SIGKILL — or SIGTERM again for a process that allows only SIGTERM —
    /// at most every ``Timeouts/fenceResignal``, until it is gone.
    private mutating func escalate(_ pid: ProcessID, at now: MonotonicInstant) -> [HostDirective] {
        guard var state = fencing[pid] else { return [] }
        guard state.lastSignal.map({ now >= $0 + Timeouts.fenceResignal }) ?? true else { return [] }
        state.lastSignal = now
        var out: [HostDirective] = [.signal(pid, control(of: pid).sigtermOnly ? .terminate : .kill)]
        if now > state.started + Timeouts.fenceResignal, state.lastWarning.map({ now >= $0 + Timeouts.fenceWarningEvery }) ?? true {
            state.lastWarning = now
            out.append(.log(.critical, "fencing (\(state.stops.map(\.reason.description).joined(separator: ", "))): process \(pid) still holds its leases \(now - state.started) after it was asked to stop; they stay held, and the watchdog resets this host if a lockspace is lost"))
        }
        fencing[pid] = state
        return out
    }

    // MARK: Time

    /// Time passed: stops whose process gave up every lease they were for
    /// end, and stops past their grace escalate. The shell reports exits
    /// (``processExited``) first.
    public mutating func tick(at now: MonotonicInstant) -> [HostDirective] {
        var out: [HostDirective] = tickInherited(at: now)
        for pid in fencing.keys.sorted() {
            let held = Set((leases[pid] ?? [:]).keys)
            fencing[pid]!.stops.removeAll { stop in stop.leases.map { held.isDisjoint(with: $0) } ?? held.isEmpty }
            guard let state = fencing[pid], !state.stops.isEmpty else {
                fencing[pid] = nil
                out.append(.log(.notice, "process \(pid) gave up the leases it was being stopped for; it is spared"))
                continue
            }
            if now >= state.stops.map(\.graceUntil).min()! { out += escalate(pid, at: now) }
        }
        return out
    }

    /// Whether the watchdog may be petted: only while every lockspace with
    /// lease holders is valid, and no holder of an earlier incarnation runs
    /// (``earlierIncarnationLeft``). A lockspace lost with holders still
    /// alive lets the watchdog reset the host within W of the expiry —
    /// before any other host may take those leases (8N + W after the last
    /// renewal).
    public func mayPet(at now: MonotonicInstant) -> Bool {
        guard inherited.isEmpty else { return false }
        if InjectedBug.keepPettingAfterLoss.isOn(in: settings.injectedBugs) { return true }
        for held in leases.values {
            for lease in held.values where !isValid(lease.resource.lockspace, at: now) { return false }
        }
        return true
    }

    /// `.pet` when the watchdog may be petted and the pet interval has
    /// passed; the change to and from "may not" is logged. Called on a
    /// timer of its own, so that nothing slow (a release's I/O) delays it.
    public mutating func petIfDue(at now: MonotonicInstant) -> [HostDirective] {
        guard mayPet(at: now) else {
            guard petting else { return [] }
            petting = false
            return [.log(.critical, "a lockspace with lease holders is no longer valid: the watchdog is no longer petted and resets this host within \(settings.watchdogFire) unless every holder is gone")]
        }
        var out: [HostDirective] = []
        if !petting {
            petting = true
            out.append(.log(.notice, "watchdog petting resumed"))
        }
        if lastPet.map({ now >= $0 + settings.petInterval }) ?? true {
            lastPet = now
            out.append(.pet)
        }
        return out
    }
}
