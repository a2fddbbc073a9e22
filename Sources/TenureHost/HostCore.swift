import TenureCore
import TenureEngine
import TenureFormat

/// Every decision one host makes about its local processes and their
/// leases, as events in and directives out: which process holds what,
/// arbitration between local processes, the validity check before a lease
/// won is handed over, release when a process exits, requests for our
/// leases, whom to fence after a lockspace is lost and how (killpath,
/// SIGTERM, SIGKILL after the grace), and when the watchdog may be petted.
///
/// No syscalls, no clock, no threads: every event carries the time, and
/// what the core wants done comes back as ``HostDirective``s. The daemon and
/// the simulator are its two drivers (docs/architecture.md), so what the
/// simulator's checker judges is what the daemon runs.
///
/// The fencing rule it keeps (docs/operations.md): a lease is given up only
/// when its holder is gone, or the host is reset. A process being stopped
/// keeps its leases — and, for a lost lockspace, keeps the watchdog
/// unpetted — until the shell reports it exited.
public struct HostCore: Sendable {
    public let settings: HostCoreSettings

    /// What the core knows of each joined lockspace.
    struct LockspaceFacts: Sendable {
        /// The instant from which its leases must not be used (8N after the
        /// last renewal started); nil before the join completed.
        var expiry: MonotonicInstant?
        /// Lost for good (expired, or its slot rewritten by another join).
        var lost = false
    }

    /// A process the core deals with.
    struct ProcessRecord: Sendable {
        var control = ProcessControl()
        var exited = false
    }

    /// One stop under way; several may overlap (a request's and a lost lockspace's).
    struct Stop: Sendable {
        var reason: StopReason
        /// The leases the stop is for: a process that gave them all up
        /// meanwhile (a killpath that paused a VM whose manager then
        /// released) is spared. nil: everything it holds.
        var leases: Set<String>?
        /// Escalation (SIGKILL, or SIGTERM again) starts here.
        var graceUntil: MonotonicInstant
    }

    struct Fencing: Sendable {
        var stops: [Stop] = []
        var lastSignal: MonotonicInstant?
        var lastWarning: MonotonicInstant?
        var started: MonotonicInstant
    }

    private(set) var lockspaces: [LeaseName: LockspaceFacts] = [:]
    private(set) var processes: [ProcessID: ProcessRecord] = [:]
    /// pid → resource name → lease.
    public private(set) var leases: [ProcessID: [String: HeldLease]] = [:]
    /// Leases ("LOCKSPACE:NAME") a ballot is under way for.
    private(set) var acquiring: Set<String> = []
    /// Leases ("LOCKSPACE:NAME") whose release is being written: this
    /// host's one dblock per resource is still being changed, so no local
    /// process may acquire the resource until the shell reports the write
    /// done (``releaseWritten``). Without this, the late release of a
    /// process that exited marked released — and stripped the shared mark
    /// of — the same host's newer hold of another process (the simulator
    /// found an exclusive holder beside a sharer, seed 20017739).
    private(set) var releasing: [String: Int] = [:]
    var fencing: [ProcessID: Fencing] = [:]
    /// Leases ("LOCKSPACE:NAME" per pid) acquired persistent: when their
    /// process goes, they are kept by the host as orphans, not released.
    private(set) var persistent: [ProcessID: Set<String>] = [:]
    /// Persistent leases whose process is gone, by "LOCKSPACE:NAME": held by
    /// this host (on disk nothing changes), used by no process, until a
    /// process adopts one (``adoptOrphan``) or it is released
    /// (``releaseOrphans``). No process means nothing to fence: a lost
    /// lockspace's orphans are forgotten (nothing written).
    public private(set) var orphans: [String: HeldLease] = [:]
    /// The user whose process holds (or held) each persistent lease, by
    /// "LOCKSPACE:NAME": its orphan is adopted only by that user or root,
    /// never by another user let in through the socket group (who would
    /// hold — and free — root's lease). Kept while the lease is persistent
    /// or an orphan, dropped with it.
    public private(set) var persistentOwners: [String: UInt32] = [:]
    /// Lockspaces something outside the daemon marked used (sanlock's
    /// set_config, as lvmlockd does): leaving them is refused.
    public private(set) var externallyUsed: Set<LeaseName> = []
    /// Lockspaces being joined (an add in progress), by name.
    public private(set) var joining: [LeaseName: LockspaceSpec] = [:]
    /// Releases to write renaming the lease (sanlock's SANLK_REL_RENAME),
    /// by "LOCKSPACE:NAME", until the write is reported done.
    private(set) var renames: [String: LeaseName] = [:]
    /// An earlier incarnation's holders still running (``earlierIncarnationLeft``).
    var inherited: [ProcessID: InheritedHolder] = [:]
    var inheritedGaveUp = false
    var lastPet: MonotonicInstant?
    /// Whether the last tick petted (or would have): for logging the changes.
    public internal(set) var petting = true

    public init(settings: HostCoreSettings) {
        self.settings = settings
    }

    // MARK: Reading the state

    /// Every lease held, by process.
    public var holders: [ProcessID] { leases.keys.sorted() }
    public var leaseCount: Int { leases.values.reduce(0) { $0 + $1.count } }
    /// Processes being stopped now.
    public var fencedProcesses: [ProcessID] { fencing.keys.sorted() }
    public func isFencing(_ pid: ProcessID) -> Bool { fencing[pid] != nil }
    public func control(of pid: ProcessID) -> ProcessControl { processes[pid]?.control ?? ProcessControl() }
    public func isTracked(_ pid: ProcessID) -> Bool { processes[pid] != nil }
    public func isJoined(_ name: LeaseName) -> Bool { lockspaces[name] != nil }

    /// Whether leases in lockspace `name` may be used at `now`.
    public func isValid(_ name: LeaseName, at now: MonotonicInstant) -> Bool {
        guard let facts = lockspaces[name], !facts.lost, let expiry = facts.expiry else { return false }
        return now < expiry
    }

    /// The lockspace-qualified key local arbitration uses.
    public static func key(_ spec: ResourceSpec) -> String { "\(spec.lockspace):\(spec.name)" }

    /// A local process other than `pid` holding `spec`'s lease, if any.
    /// An orphan counts as held (by pid 0).
    func localHolder(of spec: ResourceSpec, except pid: ProcessID) -> (pid: ProcessID, lease: HeldLease)? {
        if let orphan = orphans[Self.key(spec)] { return (ProcessID(0), orphan) }
        for holder in leases.keys.sorted() where holder != pid {
            if let lease = leases[holder]?[spec.name.description], lease.resource.lockspace == spec.lockspace {
                return (holder, lease)
            }
        }
        return nil
    }

    /// Every exclusive lease whose request record is worth reading: held,
    /// and no request for it is being answered yet.
    public var leasesToWatchForRequests: [(ProcessID, HeldLease)] {
        var out: [(ProcessID, HeldLease)] = []
        for pid in leases.keys.sorted() {
            for (name, lease) in leases[pid]!.sorted(by: { $0.key < $1.key }) where !lease.shared {
                let answering = fencing[pid]?.stops.contains { $0.reason == .request(name) } ?? false
                if !answering { out.append((pid, lease)) }
            }
        }
        // Orphans too (as pid 0): a forced request releases them (``orphanRequested``).
        for (_, lease) in orphans.sorted(by: { $0.key < $1.key }) where !lease.shared {
            out.append((ProcessID(0), lease))
        }
        return out
    }

    // MARK: Lockspaces

    /// The shell joined `name`; its renewals will report the expiry.
    public mutating func lockspaceJoined(_ name: LeaseName, expiry: MonotonicInstant?) {
        lockspaces[name] = LockspaceFacts(expiry: expiry)
    }

    /// What the renewal loop last published: the expiry, and whether the
    /// lockspace was lost early (its slot rewritten). A loss is forever; its
    /// holders are stopped by ``lockspaceLost``, which the shell reports as
    /// soon as it sees the loss.
    public mutating func lockspaceObserved(_ name: LeaseName, expiry: MonotonicInstant?, lost: Bool) {
        guard lockspaces[name] != nil else { return }
        lockspaces[name]!.expiry = expiry
        if lost { lockspaces[name]!.lost = true }
    }

    /// Whether `name` may be left now: not while a process holds a lease in
    /// it, nor while a ballot runs in it (other hosts' participant views
    /// skip a free slot, docs/timeouts.md).
    public func checkMayLeave(_ name: LeaseName) throws {
        let users = leases.filter { $0.value.values.contains { $0.resource.lockspace == name } }.map(\.key).sorted()
        guard users.isEmpty else {
            throw TenureError(.leaseInUse, "Processes \(users.map(\.description).joined(separator: ", ")) hold leases in lockspace \(name).",
                              remedy: "Release them first.")
        }
        let orphaned = orphans.values.filter { $0.resource.lockspace == name }.map(\.resource.name.description).sorted()
        guard orphaned.isEmpty else {
            throw TenureError(.leaseInUse, "Lockspace \(name) has orphan leases: \(orphaned.joined(separator: ", ")).",
                              remedy: "Release them (sanlock's SANLK_REL_ORPHAN) or let a process adopt them first.")
        }
        let inFlight = acquiring.filter { $0.hasPrefix("\(name):") }.sorted()
        guard inFlight.isEmpty else {
            throw TenureError(.leaseInUse, "Lockspace \(name) has acquires in progress (\(inFlight.joined(separator: ", "))).",
                              remedy: "Retry once they finish, and release what they acquired first.")
        }
        guard !externallyUsed.contains(name) else {
            throw TenureError(.leaseInUse, "Lockspace \(name) is marked used (sanlock's set_config).",
                              remedy: "Whoever marked it unmarks it (SANLK_CONFIG_UNUSED) before it is left.")
        }
    }

    /// A join of `spec` begins: refused while a lockspace of that name is
    /// joined (or lost and not yet left) or being joined, synchronously or
    /// not, until the first has finished or failed (``joinEnded(_:)``).
    public mutating func beginJoin(_ spec: LockspaceSpec) throws {
        let name = spec.name
        guard lockspaces[name] == nil, joining[name] == nil else {
            throw TenureError(.alreadyExists, "Lockspace \(name) is joined or being joined already.",
                              remedy: "Remove it first (`tenure client rem-lockspace \(name)`) to join with another host id.")
        }
        joining[name] = spec
    }

    /// The join of `name` finished, or failed.
    public mutating func joinEnded(_ name: LeaseName) { joining[name] = nil }

    /// Something outside the daemon marks lockspace `name` used, or unused
    /// (sanlock's SANLK_CONFIG_USED, _UNUSED): while used, it is not left.
    public mutating func markUsed(_ name: LeaseName, _ used: Bool) {
        if used { externallyUsed.insert(name) } else { externallyUsed.remove(name) }
    }

    public mutating func lockspaceLeft(_ name: LeaseName) {
        lockspaces[name] = nil
        externallyUsed.remove(name)
    }

    /// The lockspace is lost: every process holding a lease in it is
    /// stopped (``startStop``); its leases stay held until it is gone.
    public mutating func lockspaceLost(_ name: LeaseName, why: String, at now: MonotonicInstant) -> [HostDirective] {
        guard lockspaces[name] != nil else { return [] }
        lockspaces[name]!.lost = true
        var victims = leases.filter { $0.value.values.contains { $0.resource.lockspace == name } }.map(\.key).sorted()
        var out: [HostDirective] = []
        for (key, orphan) in orphans.sorted(by: { $0.key < $1.key }) where orphan.resource.lockspace == name {
            orphans[key] = nil
            persistentOwners[key] = nil
            out += [.log(.warning, "lockspace \(name) lost: orphan \(orphan) forgotten (no process uses it)"), .forget(ProcessID(0), orphan)]
        }
        guard !victims.isEmpty else { return out }
        out.append(.log(.critical, "lockspace \(name) lost: \(why) Stopping the holders of its leases: processes \(victims.map(\.description).joined(separator: ", "))."))
        if InjectedBug.fenceSkipsAHolder.isOn(in: settings.injectedBugs) {
            // Known bug, for the checker: one holder is forgotten, not stopped.
            let skipped = victims.removeFirst()
            out += forgetLeases(of: skipped, in: name)
        }
        for pid in victims {
            let names = Set(leases[pid]!.filter { $0.value.resource.lockspace == name }.map(\.key))
            out += startStop(pid, graceful: true, reason: .lockspaceLost(name), leases: names, at: now)
        }
        return out
    }

    private mutating func forgetLeases(of pid: ProcessID, in name: LeaseName) -> [HostDirective] {
        var out: [HostDirective] = []
        for (key, lease) in (leases[pid] ?? [:]).sorted(by: { $0.key < $1.key }) where lease.resource.lockspace == name {
            leases[pid]![key] = nil
            out.append(.forget(pid, lease))
        }
        if leases[pid]?.isEmpty == true { leases[pid] = nil }
        return out
    }

    // MARK: Processes

    /// A process the shell now names by a pidfd (it connected, or a lease is
    /// acquired for it). A record left by an earlier process with this
    /// number is replaced: its killpath and restrictions were that process's.
    public mutating func track(_ pid: ProcessID) {
        if processes[pid] == nil || processes[pid]!.exited { processes[pid] = ProcessRecord() }
    }

    /// The shell named a new process with a number the core knew: the old
    /// one's killpath and restrictions do not carry over.
    public mutating func trackNew(_ pid: ProcessID) {
        guard leases[pid] == nil, fencing[pid] == nil else { return }
        processes[pid] = ProcessRecord()
    }

    /// The shell no longer names `pid` (it disconnected holding nothing).
    public mutating func untrack(_ pid: ProcessID) {
        guard leases[pid] == nil, fencing[pid] == nil else { return }
        processes[pid] = nil
    }

    public mutating func setKillpath(_ argv: [String], for pid: ProcessID) {
        track(pid)
        processes[pid]!.control.killpath = argv
    }

    /// `restrict`: a process may pick one signal it is stopped with, never both.
    public mutating func restrict(_ pid: ProcessID, sigkillOnly: Bool, sigtermOnly: Bool) throws {
        track(pid)
        var control = processes[pid]!.control
        control.sigkillOnly = control.sigkillOnly || sigkillOnly
        control.sigtermOnly = control.sigtermOnly || sigtermOnly
        guard !(control.sigkillOnly && control.sigtermOnly) else {
            throw TenureError(.invalidArgument, "Process \(pid) restricted itself to one signal already; it cannot ask for the other.")
        }
        processes[pid]!.control = control
    }

    /// The process exited: it holds nothing any more. Each of its leases is
    /// given up (``giveUp``), and any stop of it is over.
    public mutating func processExited(_ pid: ProcessID, at now: MonotonicInstant) -> [HostDirective] {
        if processes[pid] != nil { processes[pid]!.exited = true }
        var out: [HostDirective] = inheritedExited(pid)
        if fencing.removeValue(forKey: pid) != nil {
            out.append(.log(.notice, "process \(pid), being stopped, is gone"))
        } else if leases[pid] != nil {
            out.append(.log(.info, "process \(pid) exited; releasing its leases"))
        }
        out += giveUpAll(of: pid, at: now)
        processes[pid] = nil
        return out
    }

    /// The process closed its last connection. Its leases are given up —
    /// unless it is being stopped and still runs: then they stay held until
    /// it is gone (the fencing rule).
    public mutating func disconnected(_ pid: ProcessID, stillRunning: Bool, at now: MonotonicInstant) -> [HostDirective] {
        guard leases[pid] != nil else {
            untrack(pid)
            return []
        }
        if fencing[pid] != nil && stillRunning && !InjectedBug.disconnectReleasesUnfenced.isOn(in: settings.injectedBugs) {
            return [.log(.warning, "process \(pid), being stopped, closed its last connection; its leases stay held until it is gone")]
        }
        var out: [HostDirective] = [.log(.info, "process \(pid) closed its last connection; releasing its leases")]
        out += giveUpAll(of: pid, at: now)
        fencing[pid] = nil
        untrack(pid)
        return out
    }

    /// A process is gone: its persistent leases become orphans, the rest are given up.
    private mutating func giveUpAll(of pid: ProcessID, at now: MonotonicInstant) -> [HostDirective] {
        var out: [HostDirective] = []
        let kept = persistent.removeValue(forKey: pid) ?? []
        for name in (leases[pid] ?? [:]).keys.sorted() {
            if let lease = leases[pid]?[name], kept.contains(Self.key(lease.resource)), isValid(lease.resource.lockspace, at: now) {
                leases[pid]![name] = nil
                orphans[Self.key(lease.resource)] = lease
                out.append(.log(.info, "process \(pid) is gone; its persistent lease \(lease) is kept as an orphan"))
            } else {
                out += giveUp(name, of: pid, at: now)
            }
        }
        if leases[pid]?.isEmpty == true { leases[pid] = nil }
        for key in kept where orphans[key] == nil { persistentOwners[key] = nil }
        return out
    }

    /// The lease `pid` was just handed is persistent: it outlives the
    /// process, as an orphan of user `owner` (the process's user).
    public mutating func markPersistent(_ spec: ResourceSpec, of pid: ProcessID, owner: UInt32) {
        persistent[pid, default: []].insert(Self.key(spec))
        persistentOwners[Self.key(spec)] = owner
    }

    /// `pid` adopts the orphan of `spec` (sanlock's SANLK_ACQUIRE_ORPHAN)
    /// for `requester`: the lease is its own now, with no I/O; nil when
    /// there is none. Refused unless the requester is root or the orphan's
    /// own user.
    public mutating func adoptOrphan(_ spec: ResourceSpec, for pid: ProcessID, by requester: Requester, at now: MonotonicInstant) throws -> HeldLease? {
        let key = Self.key(spec)
        guard let orphan = orphans[key] else { return nil }
        let owner = persistentOwners[key]
        guard requester.isRoot || owner == requester.uid else {
            throw TenureError(.permissionDenied, "The orphan of \(spec.name) belongs to user \(owner.map(String.init) ?? "unknown"); user \(requester.uid) may not adopt it.",
                              remedy: "Adopt it as root or as its own user, or release it (release-orphans, as root).")
        }
        try requireValid(spec.lockspace, at: now)
        guard leases[pid]?[spec.name.description] == nil else {
            throw TenureError(.alreadyExists, "Process \(pid) holds \(spec.name) already.")
        }
        if !InjectedBug.orphanAdoptedTwice.isOn(in: settings.injectedBugs) {
            orphans[key] = nil
        }
        persistentOwners[key] = nil
        track(pid)
        leases[pid, default: [:]][spec.name.description] = orphan
        return orphan
    }

    /// Releases orphans (sanlock's SANLK_REL_ORPHAN): `names` of lockspace
    /// `lockspace`, or all of its orphans for `*`; written like any release.
    public mutating func releaseOrphans(_ names: [String], in lockspace: LeaseName, at now: MonotonicInstant) throws -> [HostDirective] {
        let all = names.contains("*") || names.isEmpty
        let chosen = orphans.filter { $0.value.resource.lockspace == lockspace && (all || names.contains($0.value.resource.name.description)) }
        guard !chosen.isEmpty else {
            throw TenureError(.notOwner, "Lockspace \(lockspace) has no orphan \(all ? "leases" : names.joined(separator: ", ")).")
        }
        var out: [HostDirective] = []
        for (key, lease) in chosen.sorted(by: { $0.key < $1.key }) {
            orphans[key] = nil
            persistentOwners[key] = nil
            if lease.shared, let sharer = localHolder(of: lease.resource, except: ProcessID(0)) {
                // The host's one shared mark is the live sharer's too: writing
                // the release would strip it from under that process (the
                // simulator found another host taking the lease exclusively
                // beside it).
                out += [.log(.info, "orphan \(lease) released; process \(sharer.pid) still shares it, so nothing is written"), .forget(ProcessID(0), lease)]
            } else {
                out += isValid(lockspace, at: now) ? [releaseWrite(ProcessID(0), lease)] : [.forget(ProcessID(0), lease)]
            }
        }
        return out
    }

    /// Drops `name` from `pid` and says how it is given up: written on disk,
    /// unless another local process still shares it (the disk has one shared
    /// mark per host) or its lockspace is no longer valid (another host may
    /// own it by now, and a late write of ours could undo its commit).
    mutating func giveUp(_ name: String, of pid: ProcessID, at now: MonotonicInstant) -> [HostDirective] {
        guard let lease = leases[pid]?.removeValue(forKey: name) else { return [] }
        if leases[pid]?.isEmpty == true { leases[pid] = nil }
        let key = Self.key(lease.resource)
        if persistent[pid]?.remove(key) != nil {
            if persistent[pid]?.isEmpty == true { persistent[pid] = nil }
            if orphans[key] == nil { persistentOwners[key] = nil }
        }
        if lease.shared, localHolder(of: lease.resource, except: pid) != nil {
            return [.log(.info, "process \(pid) released \(lease); other local sharers keep it"), .forget(pid, lease)]
        }
        guard isValid(lease.resource.lockspace, at: now) else {
            return [.log(.warning, "process \(pid) gave up \(lease) of a lost lockspace; nothing is written to the lease"), .forget(pid, lease)]
        }
        return [releaseWrite(pid, lease)]
    }

    /// A `.writeRelease` directive, with the resource closed to local
    /// acquires until the write is done.
    mutating func releaseWrite(_ pid: ProcessID, _ lease: HeldLease) -> HostDirective {
        releasing[Self.key(lease.resource), default: 0] += 1
        return .writeRelease(pid, lease)
    }

    /// `release` of `pid`'s exclusive lease `name` of `lockspace`, renamed
    /// `newName` on disk in the same write (sanlock's SANLK_REL_RENAME, which
    /// lvmlockd uses to retire a lock). The `.writeRelease` directive's
    /// lease is renamed as ``renameOnRelease(of:)`` says.
    public mutating func releaseRenaming(_ name: LeaseName, of lockspace: LeaseName, by pid: ProcessID, to newName: LeaseName,
                                         at now: MonotonicInstant) throws -> [HostDirective] {
        guard !newName.isEmpty else {
            throw TenureError(.invalidArgument, "A release with SANLK_REL_RENAME names no new name.", remedy: "Give the new name.")
        }
        guard let lease = leases[pid]?[name.description], lease.resource.lockspace == lockspace else {
            throw TenureError(.notOwner, "Process \(pid) does not hold \(lockspace):\(name).", remedy: "`sanlock client inquire -p \(pid)` lists what it holds.")
        }
        guard !lease.shared else {
            throw TenureError(.invalidArgument, "\(name) is held shared; only an exclusive lease is renamed as it is released.",
                              remedy: "Release it without the rename.")
        }
        let directives = try release([name.description], of: pid, at: now)
        if directives.contains(where: { if case .writeRelease = $0 { true } else { false } }) {
            renames[Self.key(lease.resource)] = newName
        }
        return directives
    }

    /// The name a `.writeRelease` of `lease` writes on disk instead of its own, if any.
    public func renameOnRelease(of lease: HeldLease) -> LeaseName? { renames[Self.key(lease.resource)] }

    /// The shell finished (or failed) writing a `.writeRelease`.
    public mutating func releaseWritten(_ lease: HeldLease) {
        let key = Self.key(lease.resource)
        renames[key] = nil
        guard let count = releasing[key] else { return }
        releasing[key] = count > 1 ? count - 1 : nil
    }

    // MARK: Acquire, release, convert

    /// What an acquire of one resource needs, after local arbitration.
    public enum AcquireStep: Sendable {
        /// Another local process shares this lease at the version asked: the
        /// host's one shared mark covers this process too, with no ballot
        /// (another would write an exclusive mode block while it runs,
        /// hiding the mark from other hosts). It is handed over already.
        case shareLocalHold(HeldLease)
        /// Run the engine's acquire, then report with ``ballotEnded``.
        case ballot
    }

    /// Refuses an acquire of `count` resources past the lease limit.
    public func checkRoom(for count: Int) throws {
        guard leaseCount + count <= settings.maxLeases else {
            throw TenureError(.limitReached, "The daemon holds \(leaseCount) leases; its limit is \(settings.maxLeases).")
        }
    }

    /// Local arbitration for `pid` acquiring `spec`: the disk cannot tell
    /// this host's processes apart (the lease names the host), so the core
    /// must. A lease another local process holds, or is acquiring, is
    /// refused; sharing is allowed between local sharers.
    public mutating func arbitrate(_ spec: ResourceSpec, for pid: ProcessID, shared: Bool, at now: MonotonicInstant) throws -> AcquireStep {
        try requireValid(spec.lockspace, at: now)
        guard leases[pid]?[spec.name.description] == nil else {
            throw TenureError(.alreadyExists, "Process \(pid) holds \(spec.name) already.")
        }
        if let other = localHolder(of: spec, except: pid) {
            guard other.lease.shared && (shared || spec.shared) else {
                if other.pid == ProcessID(0) {
                    throw TenureError(.heldByLiveHost, "\(spec.name) is kept on this host as an orphan (its persistent holder is gone).",
                                      remedy: "Adopt it (sanlock's SANLK_ACQUIRE_ORPHAN), or release it (SANLK_REL_ORPHAN).")
                }
                throw TenureError(.heldByLiveHost, "\(spec.name) is held by process \(other.pid) on this host.",
                                  remedy: "Wait for it to release the lease, or ask it to with `request`.")
            }
            if spec.lver == nil || spec.lver == other.lease.lver {
                track(pid)
                leases[pid, default: [:]][spec.name.description] = other.lease
                return .shareLocalHold(other.lease)
            }
        }
        let key = Self.key(spec)
        guard releasing[key] == nil else {
            throw TenureError(.heldByLiveHost, "\(spec.name) is being released by another process on this host.",
                              remedy: "Retry in a moment.")
        }
        guard !acquiring.contains(key) else {
            throw TenureError(.heldByLiveHost, "\(spec.name) is being acquired by another process on this host.",
                              remedy: "Retry in a moment.")
        }
        acquiring.insert(key)
        track(pid)
        return .ballot
    }

    /// The daemon itself is about to hold `spec`'s lease to work on its
    /// area (the resource index: its guard lease, or a lease it clears or
    /// lays out again). Local arbitration as for a process: refused while
    /// a local process holds, keeps as an orphan, acquires or releases it;
    /// until ``endAreaWork(_:)`` no local process may start acquiring it,
    /// so the host never runs two ballots for one lease.
    public mutating func beginAreaWork(_ spec: ResourceSpec, at now: MonotonicInstant) throws {
        try requireValid(spec.lockspace, at: now)
        let key = Self.key(spec)
        if let other = localHolder(of: spec, except: ProcessID(-1)) {
            throw TenureError(.leaseInUse, "\(spec.name) is held on this host (\(other.pid == ProcessID(0) ? "as an orphan" : "by process \(other.pid)")).",
                              remedy: "Release it first.")
        }
        guard releasing[key] == nil, !acquiring.contains(key) else {
            throw TenureError(.leaseInUse, "\(spec.name) is being acquired or released on this host.", remedy: "Retry in a moment.")
        }
        acquiring.insert(key)
    }

    /// The daemon's own work on `spec`'s area is over (its lease released,
    /// or the area cleared).
    public mutating func endAreaWork(_ spec: ResourceSpec) {
        acquiring.remove(Self.key(spec))
    }

    /// How a won ballot ends.
    public enum Handover: Sendable {
        /// The lease is the process's now.
        case handedOver(HeldLease)
        /// Not handed over: give it up as the directives say, and answer the error.
        case refused(TenureError, [HostDirective])
    }

    /// The engine's acquire for `spec` ended: `won` is the lease, or nil if
    /// it failed. A lease won after its lockspace stopped being valid is
    /// never handed over — and not written back either (another host may
    /// own it by now); one won for a process that exited meanwhile is given up.
    public mutating func ballotEnded(_ spec: ResourceSpec, for pid: ProcessID, won: HeldLease?, at now: MonotonicInstant) -> Handover? {
        acquiring.remove(Self.key(spec))
        guard let won else { return nil }
        guard isValid(spec.lockspace, at: now) else {
            return .refused(TenureError(.lockspaceLost, "Lockspace \(spec.lockspace) expired while \(spec.name) was acquired.",
                                        remedy: "Check the storage, then remove and add the lockspace again."),
                            [.log(.warning, "won \(won) after lockspace \(spec.lockspace) stopped being valid; not used, nothing written"), .forget(pid, won)])
        }
        guard let record = processes[pid], !record.exited else {
            return .refused(TenureError(.notOwner, "Process \(pid) exited while \(spec.name) was acquired."),
                            [.log(.info, "process \(pid) exited while \(won) was acquired; releasing it"), releaseWrite(pid, won)])
        }
        leases[pid, default: [:]][spec.name.description] = won
        return .handedOver(won)
    }

    /// An acquire of several resources failed part-way: the ones it took are
    /// given up again (all or nothing).
    public mutating func abandon(_ names: [String], of pid: ProcessID, at now: MonotonicInstant) -> [HostDirective] {
        var out: [HostDirective] = []
        for name in names { out += giveUp(name, of: pid, at: now) }
        return out
    }

    /// `release` of `names` (all for `*` or none named) held by `pid`.
    public mutating func release(_ names: [String], of pid: ProcessID, at now: MonotonicInstant) throws -> [HostDirective] {
        guard let held = leases[pid] else {
            throw TenureError(.notOwner, "Process \(pid) holds no leases.")
        }
        let chosen = names.contains("*") || names.isEmpty ? held.keys.sorted() : names
        for name in chosen where held[name] == nil {
            throw TenureError(.notOwner, "Process \(pid) does not hold \(name).", remedy: "`tenure client inquire` lists what it holds.")
        }
        var out: [HostDirective] = []
        for name in chosen.sorted() { out += giveUp(name, of: pid, at: now) }
        return out
    }

    /// What a convert needs.
    public enum ConvertStep: Sendable {
        /// Nothing to do: the lease is in that mode already, for this host.
        case done(HeldLease)
        /// Run the engine's convert, then report with ``converted``.
        case run(HeldLease)
    }

    /// Checks a convert of `pid`'s lease `name`. A convert to shared counts
    /// the lease shared *before* its I/O: the downgrade's writes (our shared
    /// mark, then the freed leader) may land whatever becomes of the
    /// convert — it fails, a write lands past its deadline, the process
    /// exits meanwhile and its lease becomes an orphan or is released — and
    /// once the leader is free another host may share the lease. So
    /// nothing here treats it as exclusive again (an orphan of it, its
    /// adoption, a local acquire), and its release frees a leader that
    /// still names this host (``HeldLease/leaderMayBeOurs``). The simulator
    /// found an orphan of a lease whose holder died mid-convert adopted as
    /// exclusive beside another host's sharer (swarm seed 90009063).
    /// `.run` carries the lease as it was, for the engine.
    public mutating func prepareConvert(_ name: String, of pid: ProcessID, toShared shared: Bool, at now: MonotonicInstant) throws -> ConvertStep {
        guard let held = leases[pid]?[name] else {
            throw TenureError(.notOwner, "Process \(pid) does not hold \(name).")
        }
        let other = localHolder(of: held.resource, except: pid)
        if !shared, let other {
            throw TenureError(.leaseInUse, "\(name) is shared with process \(other.pid) on this host.",
                              remedy: "Wait until every other sharer releases it.")
        }
        // Only a holder alone can be exclusive: with other local sharers, it is shared already.
        if shared, other != nil { return .done(held) }
        try requireValid(held.resource.lockspace, at: now)
        if shared {
            var counted = held
            counted.shared = true
            counted.leaderMayBeOurs = true
            leases[pid]![name] = counted
        }
        return .run(held)
    }

    public mutating func converted(_ name: String, of pid: ProcessID, to lease: HeldLease) {
        guard leases[pid]?[name] != nil else { return }
        leases[pid]![name] = lease
    }

    /// Throws unless lockspace `name` is joined and valid at `now`.
    public func requireValid(_ name: LeaseName, at now: MonotonicInstant) throws {
        guard lockspaces[name] != nil else {
            throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.",
                              remedy: "Join it first: `tenure client add-lockspace -s \(name):HOST_ID:PATH:OFFSET`.")
        }
        guard isValid(name, at: now) else {
            throw TenureError(.lockspaceLost, "Lockspace \(name) is lost on this host; its leases cannot be used.",
                              remedy: "Check the storage, then remove and add the lockspace again.")
        }
    }

    // MARK: Requests

    /// A request for `lease`, as ``leasesToWatchForRequests`` listed it:
    /// a process's lease (``requestSeen(for:heldBy:force:lver:at:)``) or an
    /// orphan (pid 0, ``orphanRequested(_:force:lver:at:)``).
    public mutating func requestSeen(for lease: HeldLease, heldBy pid: ProcessID, force: Bool, lver: LeaseVersion,
                                     at now: MonotonicInstant) -> [HostDirective] {
        pid == ProcessID(0) ? orphanRequested(lease.resource, force: force, lver: lver, at: now)
                            : requestSeen(for: lease.resource.name.description, heldBy: pid, force: force, lver: lver, at: now)
    }

    /// The request record of `name`, held by `pid`, asks for a later
    /// version: force stops the holder at once (SIGKILL), graceful asks it
    /// first. Once it is gone its leases are given up and the requester
    /// can take the lease.
    public mutating func requestSeen(for name: String, heldBy pid: ProcessID, force: Bool, lver: LeaseVersion,
                                     at now: MonotonicInstant) -> [HostDirective] {
        guard let lease = leases[pid]?[name], !lease.shared else { return [] }
        if fencing[pid]?.stops.contains(where: { $0.reason == .request(name) }) == true { return [] }
        return [.log(.warning, "request for \(lease) at lver \(lver) (\(force ? "force" : "graceful")): stopping process \(pid)")]
            + startStop(pid, graceful: !force, reason: .request(name), leases: [name], at: now)
    }

    /// A request for a lease this host keeps as an orphan. No process uses
    /// it, so there is no one to stop: a forced request releases it at once
    /// (sanlock leaves orphans unanswered; the requester would wait for
    /// nothing). A graceful request asks the user of a lease to let go, and
    /// an orphan has none yet: it stays until adopted or released.
    public mutating func orphanRequested(_ spec: ResourceSpec, force: Bool, lver: LeaseVersion, at now: MonotonicInstant) -> [HostDirective] {
        let key = Self.key(spec)
        guard force, let lease = orphans[key], !lease.shared else { return [] }
        orphans[key] = nil
        persistentOwners[key] = nil
        let release: HostDirective = isValid(spec.lockspace, at: now) ? releaseWrite(ProcessID(0), lease) : .forget(ProcessID(0), lease)
        return [.log(.warning, "forced request for the orphan \(lease) at lver \(lver): released (no process uses it)"), release]
    }

    // MARK: Shutdown

    /// Stops serving: refused while leases are held unless forced; forced,
    /// every holder is stopped, and its leases are given up once it is gone.
    public mutating func shutdown(force: Bool, at now: MonotonicInstant) throws -> [HostDirective] {
        let pids = holders
        if !pids.isEmpty && !force {
            throw TenureError(.leaseInUse, "Processes \(pids.map(\.description).joined(separator: ", ")) hold leases.",
                              remedy: "Stop them first, or shut down with force (their holders are killed).")
        }
        var out: [HostDirective] = []
        for pid in pids { out += startStop(pid, graceful: true, reason: .shutdown, leases: nil, at: now) }
        return out
    }
}
