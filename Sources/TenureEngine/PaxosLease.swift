import TenureCore
import TenureFormat

/// A resource lease this host holds.
public struct HeldLease: Sendable, CustomStringConvertible {
    public var resource: ResourceSpec
    /// The fencing token: the lease version this host committed.
    public var lver: LeaseVersion
    /// The leader as committed (exclusive) or as freed after the short
    /// exclusive hold (shared).
    public var leader: LeaderRecord
    public var shared: Bool
    public var host: LocalHost
    /// Shared after a convert to shared that failed part-way: its writes
    /// (our shared mark, then the freed leader) may land late or never, so
    /// the leader may still name this host. Its release frees such a
    /// leader as an exclusive holder's would.
    public var leaderMayBeOurs = false

    public init(resource: ResourceSpec, lver: LeaseVersion, leader: LeaderRecord, shared: Bool, host: LocalHost) {
        self.resource = resource
        self.lver = lver
        self.leader = leader
        self.shared = shared
        self.host = host
    }

    /// The resource string with the lver (or SH), as `inquire` reports it.
    public var stateString: String {
        var r = resource
        r.shared = shared
        r.lver = shared ? nil : lver
        return r.description
    }

    public var description: String { "\(resource.lockspace):\(resource.name) lver \(lver)\(shared ? " shared" : "")" }
}

/// How to acquire.
public struct AcquireOptions: Sendable {
    public var shared: Bool
    /// Fail unless the lease's current version is exactly this (a handover:
    /// the previous holder released it at this lver and nobody took it since).
    public var requiredLver: LeaseVersion?
    /// Fail at once instead of waiting while the owner's liveness is not yet known.
    public var noWait: Bool

    public init(shared: Bool = false, requiredLver: LeaseVersion? = nil, noWait: Bool = false) {
        self.shared = shared
        self.requiredLver = requiredLver
        self.noWait = noWait
    }
}

/// Resource leases by Disk Paxos on sanlock's format: acquire (exclusive or
/// shared), release, convert, and requests to a holder.
public enum PaxosLease {
    /// Acquires `resource` for `host`.
    ///
    /// 1. Read the leader and dblocks (one read per disk).
    /// 2. If the lease is owned by another host, judge the owner through
    ///    `oracle` (its delta lease): take over when it released its host id,
    ///    rejoined with a newer generation, or is dead; fail with
    ///    `.heldByLiveHost` when it is alive; otherwise watch until one is known.
    /// 3. Run ballots for lver + 1 until one completes (aborts back off at random).
    /// 4. Commit the leader with the decided value; fail if it names another host.
    /// 5. Exclusive: clear dead shared holders, fail while a live one remains.
    ///    Shared: mark our mode block shared and free the leader.
    public static func acquire(_ resource: PaxosResource, host: LocalHost, oracle: (any HostLivenessOracle)?,
                               options: AcquireOptions = AcquireOptions(), context: EngineContext) async throws -> HeldLease {
        try resource.validate(host: host.id)
        var repairs = 0
        // This acquisition's value: drawn once, kept across its ballots.
        var proposal: DiskTimestamp?
        restart: while true {
            try Task.checkCancellation()
            let areas = try await resource.readAreas(including: host.id)
            let leader = PaxosResource.newest(areas.map(\.leader))
            if try await repairIfLeaderWentBack(resource, leader: leader, areas: areas, host: host, keepMode: .exclusive,
                                                repairs: &repairs, context: context) {
                continue restart
            }
            if let required = options.requiredLver, leader.lver != required {
                throw TenureError(.lverMismatch,
                                  "\(resource.spec.name) is at lver \(leader.lver), not the lver \(required) the handover requires.",
                                  remedy: "Another host took the lease since it was handed over; re-read the lease state.")
            }
            if needsOwnerJudgement(leader, host: host) {
                let verdict = try await judgeOwner(resource, leader: leader, areas: areas, host: host, oracle: oracle,
                                                   options: options, context: context)
                if verdict == .restart { continue restart }
            }
            let maxSeen = areas.flatMap(\.dblocks).filter { $0.dblock.isValid }.map(\.dblock.mbal).max() ?? 0
            let own = ownVote(areas, host: host.id)
            proposal = proposal ?? newProposal(for: host, after: own, context: context)
            switch try await ballotUntilDecided(resource, host: host, leader: leader, maxSeen: maxSeen, ownVote: own, proposal: proposal!,
                                                keepMode: .exclusive, shortHold: options.shared, context: context) {
            case .restart:
                continue restart
            case .won(let committed, let lastRead):
                var held = HeldLease(resource: resource.spec, lver: committed.lver, leader: committed, shared: false, host: host)
                if options.shared {
                    held = try await downgradeToShared(resource, held: held, context: context)
                } else {
                    try await checkSharedHolders(resource, held: held, seen: lastRead, oracle: oracle, context: context)
                }
                context.log(EngineEvent(.leaseAcquired, "\(host) acquired \(held)"))
                return held
            }
        }
    }

    /// A lease that is free, or ours (this generation or an older one), can go
    /// straight to a ballot; any other owner must be judged first.
    static func needsOwnerJudgement(_ leader: LeaderRecord, host: LocalHost) -> Bool {
        if leader.timestamp.isFree { return false }
        if leader.ownerID == host.id && leader.ownerGeneration <= host.generation { return false }
        return true
    }

    enum Judgement { case takeOver, restart }

    /// Step 2: decides whether the owner named by `leader` may still be
    /// using the lease.
    static func judgeOwner(_ resource: PaxosResource, leader: LeaderRecord, areas: [DiskArea], host: LocalHost,
                           oracle: (any HostLivenessOracle)?, options: AcquireOptions, context: EngineContext) async throws -> Judgement {
        let owner = leader.ownerID
        if let oracle, owner.isNone || owner.rawValue > UInt64(oracle.hostCapacity) {
            throw TenureError(.badRecord,
                              "The leader of \(resource.spec.name) names owner host \(owner), outside the lockspace's host ids 1...\(oracle.hostCapacity) (lver \(leader.lver)).",
                              remedy: "The lease record is damaged or belongs to another lockspace; re-initialise it once no host uses it.")
        }
        guard let oracle else {
            throw TenureError(.heldByLiveHost,
                              "\(resource.spec.name) is held by host \(owner) (generation \(owner.isNone ? 0 : leader.ownerGeneration.rawValue), lver \(leader.lver)) and no lockspace was given to judge whether that host is alive.",
                              remedy: "Name the lockspace (-s LOCKSPACE) so Tenure can watch the owner's delta lease.")
        }
        while true {
            let (record, state) = try await oracle.observe(owner)
            if record.timestamp.isFree || record.ownerID != owner || record.ownerGeneration > leader.ownerGeneration {
                context.log(EngineEvent(.ownerJudged, "owner host \(owner) of \(resource.spec.name) is gone (its host id is free or rejoined)"))
                return .takeOver
            }
            switch state {
            case .dead, .free:
                context.log(EngineEvent(.ownerJudged, "owner host \(owner) of \(resource.spec.name) is dead"))
                return .takeOver
            case .live:
                if ownerReleasedBehindCommit(leader, areas: areas) {
                    context.log(EngineEvent(.ownerJudged, "owner host \(owner) of \(resource.spec.name) released lver \(leader.lver), which host \(leader.writeID) committed for it"))
                    return .takeOver
                }
                if InjectedBug.ignoreLiveOwner.isOn(in: context.injectedBugs) { return .takeOver }
                throw TenureError(.heldByLiveHost,
                                  "\(resource.spec.name) is held by live host \(owner) (\"\(record.resourceName)\", generation \(leader.ownerGeneration), lver \(leader.lver)).",
                                  remedy: "Wait for it to release the lease, or ask it to with `request`.")
            case .unknown, .failing:
                if InjectedBug.ignoreLiveOwner.isOn(in: context.injectedBugs) { return .takeOver }
                if options.noWait {
                    throw TenureError(.heldByLiveHost,
                                      "\(resource.spec.name) is held by host \(owner), which this host has not yet watched long enough to call it alive or dead (\(state)).",
                                      remedy: "Retry in a few seconds, or acquire without no-wait to watch the owner until its state is known.")
                }
                try await context.clock.sleep(for: context.timeouts(DeltaLease.effectiveIOTimeout(record, ours: .standard)).livenessPoll)
                if try await resource.readLeader() != leader { return .restart }
            }
        }
    }

    /// A live owner that released the lease, where another host's commit of
    /// the same ballot (naming that owner) landed after the release: the
    /// leader was written by a host other than its owner, and the owner's
    /// dblock is marked released.
    static func ownerReleasedBehindCommit(_ leader: LeaderRecord, areas: [DiskArea]) -> Bool {
        guard leader.writeID != leader.ownerID else { return false }
        let owner = areas.compactMap { area in area.dblocks.first { $0.hostID == leader.ownerID } }
        return !owner.isEmpty && owner.allSatisfy { $0.dblock.isReleased && $0.dblock.lver == leader.lver }
    }

    /// When the dblocks show the leader went back (``regressedLeaderTarget``),
    /// re-decides the version they name and returns true: the caller starts
    /// over from the repaired leader. Every path that runs a ballot checks
    /// this first — a ballot run from a leader that went back would decide a
    /// version that was handed out already (the simulator found a convert to
    /// exclusive that skipped it, seed 1019855).
    ///
    /// `keepMode`: the mode block the repair ballot writes into our sector —
    /// a sharer's stays shared, or other hosts would not see it (the
    /// simulator found an exclusive holder beside a sharer whose repair had
    /// cleared its mark, seed 5085130).
    static func repairIfLeaderWentBack(_ resource: PaxosResource, leader: LeaderRecord, areas: [DiskArea], host: LocalHost,
                                       keepMode: ModeBlock, repairs: inout Int, context: EngineContext) async throws -> Bool {
        guard let target = regressedLeaderTarget(leader, areas: areas) else { return false }
        // A version no later one can follow is no version a ballot ever
        // started: only a damaged (or hostile) dblock names it.
        guard target < LeaseVersion(.max) else {
            throw TenureError(.badRecord, "A dblock of \(resource.spec.name) claims a vote at lver \(target), the largest there is, while the leader is at lver \(leader.lver).",
                              remedy: "The lease area is damaged; re-initialise it once no host uses it.")
        }
        repairs += 1
        guard repairs <= maxLaterVersionAborts else {
            throw TenureError(.badRecord,
                              "The leader of \(resource.spec.name) is at lver \(leader.lver), but its dblocks have reached lver \(target) and repairing it keeps failing.",
                              remedy: "Retry later; if it persists, the lease area is damaged: re-initialise it once no host uses it.")
        }
        try await repairRegressedLeader(resource, leader: leader, areas: areas, target: target, host: host, keepMode: keepMode, context: context)
        return true
    }

    /// A leader that went back: a write of an older leader landed late (an
    /// I/O slower than its deadline) over a newer one. The dblocks still
    /// show it: a ballot for lver M only starts after a leader at M − 1 was
    /// read, so a dblock at M ≥ leader + 2 proves versions up to M − 1 were
    /// committed, and a dblock marked released at M > leader proves M was.
    /// Returns the newest version any dblock names, to re-decide by a
    /// ballot (the simulator found the regression, seeds 1127 and 20098).
    static func regressedLeaderTarget(_ leader: LeaderRecord, areas: [DiskArea]) -> LeaseVersion? {
        let valid = areas.flatMap(\.dblocks).map(\.dblock).filter(\.isValid)
        // A ballot for M started after a leader at M − 1 was read; a dblock
        // released at M was held at M, so M was committed.
        let started = valid.map(\.lver).max() ?? .zero
        let released = valid.filter { $0.isReleased && $0.bal > 0 }.map(\.lver).max() ?? .zero
        // started ≥ leader + 2, written so that no value read from disk can overflow.
        guard started > leader.lver && started.rawValue - leader.lver.rawValue >= 2 || released > leader.lver else { return nil }
        // The newest version any dblock names is re-decided, vote or not:
        // every version below it was committed, and its own votes are intact
        // (no host has moved past it). Re-deciding only the newest version
        // still holding a vote is not enough: a host that committed later
        // versions may have started a ballot since, and its phase-1 write
        // replaced its vote (the simulator found this, seed 22 of a
        // duplicated host id).
        return started
    }

    /// Re-decides version `target` by an ordinary Disk Paxos ballot. A vote
    /// exists at `target`, so the ballot adopts the highest-numbered one: the
    /// value already decided there, if any (Paxos never decides two). The
    /// commit puts the leader back at `target`, naming that value's host; the
    /// acquire then starts over and judges that owner as usual.
    ///
    /// A dblock of a later version seen by the ballot aborts it, as in any
    /// ballot: that host read `target` committed and moved on, and its phase-1
    /// write replaced its vote at `target`, so the votes left there may be
    /// for a value never chosen (the simulator found a repair that passed
    /// over such a dblock and decided a losing proposal, seed 5053008). The
    /// caller starts over and re-reads the newest version named.
    static func repairRegressedLeader(_ resource: PaxosResource, leader: LeaderRecord, areas: [DiskArea], target: LeaseVersion,
                                      host: LocalHost, keepMode: ModeBlock, context: EngineContext) async throws {
        context.log(EngineEvent(.ballotAborted, "\(host) found \(resource.spec.name)'s leader back at lver \(leader.lver) below lver \(target) named by a dblock; re-deciding lver \(target)"))
        let maxSeen = areas.flatMap(\.dblocks).filter { $0.dblock.isValid }.map(\.dblock.mbal).max() ?? 0
        let mbal = try Ballot.firstBallot(host: host.id, maxSeen: maxSeen, stride: resource.ballotStride)
        var base = leader
        base.lver = LeaseVersion(target.rawValue - 1)
        do {
            let own = ownVote(areas, host: host.id)
            let outcome = try await Ballot(resource: resource, host: host, lver: target, mbal: mbal, mode: keepMode, context: context,
                                           previousVote: own, proposal: newProposal(for: host, after: own, context: context)).run()
            _ = try await commit(resource, over: base, decided: outcome.decided, host: host, shortHold: false, context: context)
        } catch let abort as BallotAbort {
            context.log(EngineEvent(.ballotAborted, "\(host) repair ballot \(mbal) for \(resource.spec.name) lver \(target) aborted in \(abort)"))
            let backoff = context.timeouts(.standard).ballotBackoffMax.nanosecondsClamped
            try await context.clock.sleep(for: .nanoseconds(Int64(context.random(max(backoff, 1)))))
        }
    }

    /// A new acquisition's proposal stamp, above our own last vote's when
    /// that vote is this host generation's.
    static func newProposal(for host: LocalHost, after own: PaxosDblock?, context: EngineContext) -> DiskTimestamp {
        let floor = own.flatMap { $0.inp == host.id && $0.inp2 == host.generation ? $0.inp3 : nil } ?? .free
        return context.proposalStamp(above: floor)
    }

    /// Whether `leader` names this acquisition's own value: our host id and
    /// generation and this acquisition's proposal stamp. The same host id and
    /// generation with another stamp is a version an *earlier* acquisition
    /// of ours won (and handed out): never ours to hand out again.
    static func namesOurProposal(_ leader: LeaderRecord, host: LocalHost, proposal: DiskTimestamp) -> Bool {
        leader.ownerID == host.id && leader.ownerGeneration == host.generation && leader.timestamp == proposal
    }

    /// The same host id and generation as ours, but another acquisition's value.
    static func namesAnEarlierAcquisitionOfOurs(_ leader: LeaderRecord, host: LocalHost, proposal: DiskTimestamp) -> Bool {
        leader.ownerID == host.id && leader.ownerGeneration == host.generation && !leader.timestamp.isFree && leader.timestamp != proposal
    }

    /// Our dblock with the highest vote among the disks read.
    static func ownVote(_ areas: [DiskArea], host: HostID) -> PaxosDblock? {
        newestOwn(areas.map(\.dblocks), host: host)
    }

    /// The newest of our dblock's copies on the disks read: highest lver,
    /// then ballot, then vote. Copies differ when a write reached only some
    /// disks; rewriting an older copy everywhere (say, phase 1's, without
    /// the vote phase 2 added) would erase a vote that may have decided the
    /// version (the simulator found this, seed 9078).
    static func newestOwn(_ disks: [[DblockSlot]], host: HostID) -> PaxosDblock? {
        disks.compactMap { $0.first { $0.hostID == host }?.dblock }.filter(\.isValid)
            .max { ($0.lver, $0.mbal, $0.bal) < ($1.lver, $1.mbal, $1.bal) }
    }

    /// Consecutive aborts for a later version, with the leader unchanged, before giving up.
    static let maxLaterVersionAborts = 3

    enum BallotResult {
        case won(committed: LeaderRecord, lastRead: [[DblockSlot]])
        case restart
    }

    /// Step 3 and 4: ballots for `leader.lver + 1` until one decides, then
    /// the commit. Each retry first re-reads the leader: another host may
    /// have committed this version (possibly naming us) or moved past it.
    static func ballotUntilDecided(_ resource: PaxosResource, host: LocalHost, leader: LeaderRecord, maxSeen: UInt64, ownVote: PaxosDblock?,
                                   proposal: DiskTimestamp, keepMode: ModeBlock, shortHold: Bool,
                                   context: EngineContext) async throws -> BallotResult {
        let next = try leader.lver.next()
        // Our own dblock's version never goes down: a ballot below it would
        // erase what it proves. The leader went back; start over, and the
        // repair check sees it.
        if let own = ownVote, own.lver > next { return .restart }
        var mbal = try Ballot.firstBallot(host: host.id, maxSeen: maxSeen, stride: resource.ballotStride)
        var vote = ownVote
        var current = leader
        var first = true
        var laterVersionAborts = 0
        while true {
            try Task.checkCancellation()
            if !first { current = try await resource.readLeader() }
            first = false
            if current.lver == next {
                if namesOurProposal(current, host: host, proposal: proposal) {
                    // Another host committed our value. Its ballot's reads are not ours:
                    // read the dblocks now, so the shared holders are checked all the same
                    // (the simulator found an exclusive holder next to a sharer without this).
                    return .won(committed: current, lastRead: try await resource.readDblocks(including: host.id))
                }
                // An earlier acquisition of ours won this version: start over above it.
                if namesAnEarlierAcquisitionOfOurs(current, host: host, proposal: proposal) { return .restart }
                throw acquiredByOther(resource, current)
            }
            if current.lver > next || !sameLeaderState(current, leader) { return .restart }
            do {
                let outcome = try await Ballot(resource: resource, host: host, lver: next, mbal: mbal, mode: keepMode, context: context,
                                               previousVote: vote, proposal: proposal).run()
                let committed = try await commit(resource, over: leader, decided: outcome.decided, host: host, shortHold: shortHold, context: context)
                guard namesOurProposal(committed, host: host, proposal: proposal) else {
                    // The ballot adopted a vote of an earlier acquisition of ours (its value
                    // was decided then, and handed out): that version is not ours to hand
                    // out again (the simulator found this, seed 920305).
                    if namesAnEarlierAcquisitionOfOurs(committed, host: host, proposal: proposal) { return .restart }
                    throw acquiredByOther(resource, committed)
                }
                return .won(committed: committed, lastRead: outcome.lastRead)
            } catch let abort as BallotAbort {
                if let cast = abort.vote { vote = cast }
                context.log(EngineEvent(.ballotAborted, "\(host) ballot \(mbal) for \(resource.spec.name) lver \(next) aborted in \(abort)"))
                if case .laterVersion(let other, let lver) = abort.reason {
                    // A later version only exists once the leader has moved on, which the
                    // re-read at the top of the loop sees. A dblock that keeps claiming one
                    // while the leader stays put is damaged or was written by a broken host.
                    laterVersionAborts += 1
                    if laterVersionAborts >= maxLaterVersionAborts {
                        throw TenureError(.badRecord,
                                          "The dblock of host \(other) in \(resource.spec.name) claims lver \(lver), but the leader is at lver \(leader.lver).",
                                          remedy: "The lease area is damaged or was written by a broken host; re-initialise it once no host uses it.")
                    }
                }
                let backoff = context.timeouts(.standard).ballotBackoffMax.nanosecondsClamped
                try await context.clock.sleep(for: .nanoseconds(Int64(context.random(max(backoff, 1)))))
                mbal = try Ballot.nextBallot(after: mbal, stride: resource.ballotStride)
            }
        }
    }

    /// Leaders are the same lease state, ignoring who last wrote them.
    static func sameLeaderState(_ a: LeaderRecord, _ b: LeaderRecord) -> Bool {
        a.lver == b.lver && a.ownerID == b.ownerID && a.ownerGeneration == b.ownerGeneration && a.timestamp == b.timestamp
    }

    static func acquiredByOther(_ resource: PaxosResource, _ leader: LeaderRecord) -> TenureError {
        TenureError(.heldByLiveHost,
                    "\(resource.spec.name) was acquired by host \(leader.ownerID) (generation \(leader.ownerGeneration), lver \(leader.lver)) while this host tried.",
                    remedy: "Retry later, or ask the holder to release it with `request`.")
    }

    /// Step 4: write the leader for the decided version.
    static func commit(_ resource: PaxosResource, over previous: LeaderRecord, decided: PaxosDblock, host: LocalHost,
                       shortHold: Bool, context: EngineContext) async throws -> LeaderRecord {
        var leader = previous
        leader.lver = decided.lver
        leader.ownerID = decided.inp
        leader.ownerGeneration = decided.inp2
        leader.timestamp = decided.inp3
        leader.writeID = host.id
        leader.writeGeneration = host.generation
        leader.writeTimestamp = context.diskTimestamp()
        leader.flags = shortHold && decided.inp == host.id ? leader.flags | LeaderFlags.shortHold : leader.flags & ~LeaderFlags.shortHold
        try await resource.writeLeader(leader)
        context.log(EngineEvent(.ballotCommitted, "\(host) committed \(resource.spec.name) lver \(leader.lver) owner \(leader.ownerID)"))
        return leader.sealed
    }

    /// Step 5, exclusive: every other host whose mode block says shared must
    /// be gone (its host id free, rejoined, or dead); its mark is passed
    /// over and left on disk. A live sharer makes the acquire fail, and the lease is freed again.
    static func checkSharedHolders(_ resource: PaxosResource, held: HeldLease, seen: [[DblockSlot]], keeping mode: ModeBlock = .exclusive,
                                   oracle: (any HostLivenessOracle)?, context: EngineContext) async throws {
        // Every shared mark of each host, over the disks read: with several
        // disks, one may still hold an older incarnation's mark while another
        // holds the current one (the simulator found a live sharer cleared
        // because the last disk read showed its previous generation, seed 5078088).
        var marks: [HostID: [ModeBlock]] = [:]
        for disk in seen { for slot in disk where slot.mode.isShared && slot.hostID != held.host.id { marks[slot.hostID, default: []].append(slot.mode) } }
        for (id, modes) in marks.sorted(by: { $0.key < $1.key }) {
            if let oracle {
                let (record, state) = try await oracle.observe(id)
                // A gone sharer's mark is passed over, never cleared: a host
                // writes only its own dblock. A clearing write that landed late
                // erased the mark of the same host id rejoined and sharing
                // again (seed 5018305). A passed-over mark stays harmless: the
                // host it names is gone for good, and a rejoined host carries a
                // new generation its old mark does not match.
                if Self.sharerIsGone(marks: modes, record: record, state: state) {
                    context.log(EngineEvent(.goneSharerPassedOver, "passed over the shared mark of gone host \(id) on \(resource.spec.name)"))
                    continue
                }
            }
            try? await release(resource, held: held, keeping: mode, context: context)
            throw TenureError(.leaseInUse, "\(resource.spec.name) is held shared by host \(id) (generation \(modes.map(\.generation.description).joined(separator: ", "))).",
                              remedy: "Wait until every shared holder releases it.")
        }
    }

    /// Whether the incarnation that wrote the newest of `marks` is gone, by
    /// its host id's delta lease as read now: the id rejoined with a newer
    /// generation, or that generation's record is free (left) or dead.
    ///
    /// A record *older* than the mark proves nothing: the slot went back
    /// (a late write of another machine given the same host id landed over
    /// it), and the incarnation that wrote the mark may still share. Taking
    /// the free or dead old record for it handed an exclusive lease to one
    /// host while another shared it (seed 63001837).
    static func sharerIsGone(marks: [ModeBlock], record: LeaderRecord, state: HostState) -> Bool {
        guard let newest = marks.map(\.generation).max() else { return true }
        if record.ownerGeneration > newest { return true }
        return record.ownerGeneration == newest && (record.timestamp.isFree || state.canBeTakenOver)
    }

    /// Shared acquire, after the short exclusive hold: our dblock is marked
    /// released with a shared mode block, then the leader is freed.
    static func downgradeToShared(_ resource: PaxosResource, held: HeldLease, context: EngineContext) async throws -> HeldLease {
        try await markReleased(resource, held: held, mode: .shared(held.host.generation))
        let freed = try await freeLeader(resource, held.leader, by: held.host, context: context)
        var shared = held
        shared.shared = true
        shared.leader = freed
        return shared
    }

    /// Writes `leader` back free (timestamp 0, no short hold), as written by `host`; returns what it wrote.
    @discardableResult
    static func freeLeader(_ resource: PaxosResource, _ leader: LeaderRecord, by host: LocalHost, context: EngineContext) async throws -> LeaderRecord {
        var freed = leader
        freed.timestamp = .free
        freed.flags &= ~LeaderFlags.shortHold
        freed.writeID = host.id
        freed.writeGeneration = host.generation
        freed.writeTimestamp = context.diskTimestamp()
        try await resource.writeLeader(freed)
        return freed.sealed
    }

    /// Writes our dblock for `held.lver` with the released flag and `mode`.
    static func markReleased(_ resource: PaxosResource, held: HeldLease, mode: ModeBlock) async throws {
        let own = newestOwn(try await resource.readOwnDblock(held.host.id), host: held.host.id) ?? PaxosDblock(lver: held.lver)
        var released = own
        released.flags |= PaxosDblock.releasedFlag
        try await resource.writeDblock(released, mode: mode, of: held.host.id)
    }

    /// Release: mark our dblock released (clearing any shared mark), then,
    /// for an exclusive lease the leader still shows us owning at our lver,
    /// free the leader. Fails with `.notOwner` (after clearing our marks)
    /// when the lease moved on without us.
    public static func release(_ resource: PaxosResource, held: HeldLease, context: EngineContext) async throws {
        try await release(resource, held: held, keeping: .exclusive, context: context)
    }

    /// Release, writing `mode` into our mode block: `.exclusive` (no mark)
    /// for a plain release; a sharer whose convert to exclusive failed keeps
    /// its shared mark, so it is never unprotected on disk while it shares.
    static func release(_ resource: PaxosResource, held: HeldLease, keeping mode: ModeBlock, context: EngineContext) async throws {
        try await markReleased(resource, held: held, mode: mode)
        guard !held.shared else {
            if held.leaderMayBeOurs {
                let leader = try await resource.readLeader()
                if leader.lver == held.lver, leader.ownerID == held.host.id, leader.ownerGeneration == held.host.generation, !leader.timestamp.isFree,
                   leader.writeID == held.host.id, leader.writeGeneration == held.host.generation {
                    _ = try await freeLeader(resource, leader, by: held.host, context: context)
                }
            }
            context.log(EngineEvent(.leaseReleased, "\(held.host) released shared \(held)"))
            return
        }
        let leader = try await resource.readLeader()
        guard leader.lver == held.lver, leader.ownerID == held.host.id, leader.ownerGeneration == held.host.generation else {
            throw TenureError(.notOwner,
                              "\(resource.spec.name) is at lver \(leader.lver) owned by host \(leader.ownerID), not this host's lver \(held.lver); nothing to release.",
                              remedy: "The lease was taken over (this host was judged dead or its lease was forced away).")
        }
        guard !leader.timestamp.isFree else { return }
        // Only the host that wrote the leader may free it. When another host
        // committed our win, our released dblock is the signal: others take
        // over at once (ownerReleasedBehindCommit). Rewriting that leader
        // would race their commit: a slow read-check-write of ours could
        // land after they committed lver + 1 and put lver back (the
        // simulator found this, seed 133 of `tenure-sim --swarm`).
        guard leader.writeID == held.host.id, leader.writeGeneration == held.host.generation else {
            context.log(EngineEvent(.leaseReleased, "\(held.host) released \(held) (dblock only: host \(leader.writeID) wrote the leader)"))
            return
        }
        try await freeLeader(resource, leader, by: held.host, context: context)
        context.log(EngineEvent(.leaseReleased, "\(held.host) released \(held)"))
    }

    /// Release that renames the lease on disk (sanlock's SANLK_REL_RENAME,
    /// which lvmlockd uses to retire a lock): the leader is freed under
    /// `newName` in one write, then our dblock is marked released.
    ///
    /// The order is the plain release's reversed, on purpose: the rename
    /// must reach the leader even when another host wrote it (committing
    /// our win), and a leader write after our dblock says released could
    /// land after a host that took over at once committed lver + 1, putting
    /// the lease back. Written first, while our dblock still shows us
    /// holding, no host can take the lease between our check and our write.
    public static func releaseRenaming(_ resource: PaxosResource, held: HeldLease, to newName: LeaseName, context: EngineContext) async throws {
        guard !held.shared else {
            throw TenureError(.invalidArgument, "\(resource.spec.name) is held shared; only an exclusive lease can be renamed as it is released.",
                              remedy: "Release it without the rename.")
        }
        let leader = try await resource.readLeader()
        guard leader.lver == held.lver, leader.ownerID == held.host.id, leader.ownerGeneration == held.host.generation, !leader.timestamp.isFree else {
            try await markReleased(resource, held: held, mode: .exclusive)
            throw TenureError(.notOwner,
                              "\(resource.spec.name) is at lver \(leader.lver) owned by host \(leader.ownerID), not this host's lver \(held.lver); released, not renamed.",
                              remedy: "The lease was taken over (this host was judged dead or its lease was forced away).")
        }
        var renamed = leader
        renamed.resourceName = newName
        _ = try await freeLeader(resource, renamed, by: held.host, context: context)
        try await markReleased(resource, held: held, mode: .exclusive)
        context.log(EngineEvent(.leaseReleased, "\(held.host) released \(held), renamed \(newName)"))
    }

    /// Exclusive → shared: keep the lease, let others share it.
    public static func convertToShared(_ resource: PaxosResource, held: HeldLease, context: EngineContext) async throws -> HeldLease {
        guard !held.shared else { return held }
        let leader = try await resource.readLeader()
        guard leader.lver == held.lver, leader.ownerID == held.host.id, leader.ownerGeneration == held.host.generation else {
            throw TenureError(.notOwner, "\(resource.spec.name) is no longer held by this host (now lver \(leader.lver), owner \(leader.ownerID)).",
                              remedy: "Acquire it again.")
        }
        return try await downgradeToShared(resource, held: HeldLease(resource: held.resource, lver: held.lver, leader: leader, shared: false, host: held.host), context: context)
    }

    /// Shared → exclusive: win a ballot while keeping our shared mark (so a
    /// failure leaves us a sharer), then require every other sharer gone.
    public static func convertToExclusive(_ resource: PaxosResource, held: HeldLease, oracle: (any HostLivenessOracle)?,
                                          context: EngineContext) async throws -> HeldLease {
        guard held.shared else { return held }
        var proposal: DiskTimestamp?
        var repairs = 0
        while true {
            let areas = try await resource.readAreas(including: held.host.id)
            let leader = PaxosResource.newest(areas.map(\.leader))
            // A sharer's repair ballot keeps its shared mark (it still shares).
            if try await repairIfLeaderWentBack(resource, leader: leader, areas: areas, host: held.host, keepMode: .shared(held.host.generation),
                                                repairs: &repairs, context: context) {
                continue
            }
            if needsOwnerJudgement(leader, host: held.host) {
                if try await judgeOwner(resource, leader: leader, areas: areas, host: held.host, oracle: oracle,
                                        options: AcquireOptions(noWait: true), context: context) == .restart { continue }
            }
            let maxSeen = areas.flatMap(\.dblocks).filter { $0.dblock.isValid }.map(\.dblock.mbal).max() ?? 0
            let own = ownVote(areas, host: held.host.id)
            proposal = proposal ?? newProposal(for: held.host, after: own, context: context)
            switch try await ballotUntilDecided(resource, host: held.host, leader: leader, maxSeen: maxSeen, ownVote: own, proposal: proposal!,
                                                keepMode: .shared(held.host.generation), shortHold: false, context: context) {
            case .restart:
                continue
            case .won(let committed, let lastRead):
                let exclusive = HeldLease(resource: held.resource, lver: committed.lver, leader: committed, shared: false, host: held.host)
                // On failure the leader is freed and our shared mark kept (the
                // simulator found a sharer left unmarked without this, seed 7098).
                try await checkSharedHolders(resource, held: exclusive, seen: lastRead, keeping: .shared(held.host.generation),
                                             oracle: oracle, context: context)
                let own = newestOwn(lastRead, host: held.host.id) ?? PaxosDblock(lver: committed.lver)
                try await resource.writeDblock(own, mode: .exclusive, of: held.host.id)
                return exclusive
            }
        }
    }

    // MARK: Requests

    /// Asks the holder of `resource` to give it up: writes the request record
    /// with `lver`, the version the requester wants (default: the current
    /// lver + 1). The holder acts when it sees a request for a version later
    /// than the one it holds, so the request does not touch the next holder.
    /// Mode `.none` clears the record.
    @discardableResult
    public static func request(_ resource: PaxosResource, lver: LeaseVersion?, mode: RequestRecord.ForceMode,
                               context: EngineContext) async throws -> (leader: LeaderRecord, requested: LeaseVersion) {
        let leader = try await resource.readLeader()
        if mode == .none {
            try await resource.writeRequest(.none)
            return (leader, .zero)
        }
        let wanted = try lver ?? leader.lver.next()
        guard wanted > leader.lver else {
            throw TenureError(.lverMismatch, "Requested lver \(wanted), but \(resource.spec.name) is already at lver \(leader.lver).",
                              remedy: "Request a later lver than the current one (leave it out to mean the current lver + 1).")
        }
        try await resource.writeRequest(RequestRecord(lver: wanted, forceMode: mode))
        context.log(EngineEvent(.requestWritten, "request for \(resource.spec.name) lver \(wanted) mode \(mode)"))
        return (leader, wanted)
    }

    /// The holder's side: the request aimed at `held`, if one is pending (a
    /// valid record with a force mode asking for a version after the one held).
    public static func pendingRequest(_ resource: PaxosResource, held: HeldLease) async throws -> RequestRecord? {
        let requests = try await resource.readRequests().filter { $0.isValid && $0.forceMode != nil && $0.forceMode != RequestRecord.ForceMode.none }
        return requests.filter { $0.lver > held.lver }.max { $0.lver < $1.lver }
    }
}
