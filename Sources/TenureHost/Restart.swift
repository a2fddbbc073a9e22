import TenureCore
import TenureEngine

/// A daemon that starts where an earlier incarnation ended with lease
/// holders running (a crash, a SIGKILL, an OOM kill): nobody renews their
/// lockspaces any more, so other hosts take their leases 8N + W after the
/// last renewal, and the watchdog that incarnation armed resets this host
/// W after its last pet. Each holder must be gone before then — and before
/// this incarnation pets the watchdog, which would undo the reset — so
/// they are SIGKILLed at once (no grace: their leases are already unrenewed)
/// and the watchdog stays unpetted until every one has exited
/// (docs/safety.md, "A daemon that restarts").
///
/// The shell finds them (the run dir's record, each checked by pid and
/// start time through a pidfd) and reports them here; exits come back
/// through ``processExited(_:at:)``, time through ``tick(at:)``.
extension HostCore {
    /// An earlier incarnation's holder still running when this one started.
    struct InheritedHolder: Sendable {
        var name: String
        var since: MonotonicInstant
        var lastSignal: MonotonicInstant
    }

    /// The earlier incarnation's holders that still run, by pid.
    public var inheritedHolders: [ProcessID] { inherited.keys.sorted() }

    /// Whether the earlier incarnation's holders outlived SIGKILL for W:
    /// the shell must not start (nothing of it may pet the watchdog) and
    /// leaves the host to the watchdog.
    public var earlierHoldersSurviveKill: Bool { inheritedGaveUp }

    /// The daemon starts and finds `holders` (pid, name) of an earlier
    /// incarnation still running. Each is SIGKILLed; the watchdog is not
    /// petted until all are gone.
    public mutating func earlierIncarnationLeft(_ holders: [(pid: ProcessID, name: String)],
                                                at now: MonotonicInstant) -> [HostDirective] {
        guard !holders.isEmpty else { return [] }
        if InjectedBug.rearmAfterRestart.isOn(in: settings.injectedBugs) {
            // Known bug, for the witnesses: the restart knows nothing of
            // them, and pets at once.
            return []
        }
        let names = holders.map { "\($0.pid) (\($0.name))" }.joined(separator: ", ")
        var out: [HostDirective] = [.log(.warning, "an earlier incarnation of the daemon ended while processes held leases through it: \(names). Nobody renews their lockspaces now; fencing them before the watchdog is petted")]
        for holder in holders.sorted(by: { $0.pid < $1.pid }) {
            inherited[holder.pid] = InheritedHolder(name: holder.name, since: now, lastSignal: now)
            out.append(.signal(holder.pid, .kill))
            out.append(.log(.warning, "fenced process \(holder.pid) (\(holder.name)), a lease holder of an earlier incarnation: SIGKILL"))
        }
        return out
    }

    /// SIGKILL again every ``Timeouts/fenceResignal``; once one has
    /// survived W, the critical line, once.
    mutating func tickInherited(at now: MonotonicInstant) -> [HostDirective] {
        var out: [HostDirective] = []
        for pid in inherited.keys.sorted() {
            var holder = inherited[pid]!
            if now >= holder.lastSignal + Timeouts.fenceResignal {
                holder.lastSignal = now
                out.append(.signal(pid, .kill))
                inherited[pid] = holder
            }
        }
        let oldest = inherited.values.map(\.since).min()
        if !inheritedGaveUp, let oldest, now >= oldest + settings.watchdogFire {
            inheritedGaveUp = true
            let names = inherited.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value.name))" }.joined(separator: ", ")
            out.append(.log(.critical, "the watchdog is left unpetted on purpose: \(names), holding leases of an earlier incarnation, survived SIGKILL for \(settings.watchdogFire). The watchdog that incarnation armed will reset this host."))
        }
        return out
    }

    /// An inherited holder exited.
    mutating func inheritedExited(_ pid: ProcessID) -> [HostDirective] {
        guard let holder = inherited.removeValue(forKey: pid) else { return [] }
        return [.log(.notice, "process \(pid) (\(holder.name)), a lease holder of an earlier incarnation, is gone")]
    }
}
