import TenureCore
import TenureEngine
import TenureFormat

/// What an acquire asks beyond the leases themselves (sanlock's flags, and
/// Tenure's TENURE_ACQUIRE_* beyond shared).
public struct LeaseOptions: Sendable, Equatable {
    /// Read the lock value block (SANLK_ACQUIRE_LVB).
    public var lvb = false
    /// Keep the leases as orphans when the process goes (SANLK_RES_PERSISTENT).
    public var persistent = false
    /// Adopt an orphan of a resource if there is one (SANLK_ACQUIRE_ORPHAN)…
    public var adoptOrphan = false
    /// …and only that (SANLK_ACQUIRE_ORPHAN_ONLY).
    public var orphanOnly = false

    public init(lvb: Bool = false, persistent: Bool = false, adoptOrphan: Bool = false, orphanOnly: Bool = false) {
        self.lvb = lvb
        self.persistent = persistent
        self.adoptOrphan = adoptOrphan
        self.orphanOnly = orphanOnly
    }
}

/// Who asks for a lease, as far as the core's rules about users go: an
/// orphan is adopted only by root or by its own user.
public struct Requester: Sendable, Equatable {
    public let uid: UInt32
    /// Root, or the daemon's own user.
    public let isRoot: Bool

    public init(uid: UInt32, isRoot: Bool) {
        self.uid = uid
        self.isRoot = isRoot
    }

    public static let root = Requester(uid: 0, isRoot: true)
}

/// One acquire of a process, all or nothing, as the core decides it and
/// each driver (the daemon, the simulator) carries it out — the one copy of
/// the sequence both run:
///
/// 1. for each resource in turn, an orphan of it is adopted (no I/O), or
///    the core arbitrates between local processes (a local sharer's hold
///    is shared, no I/O), or the driver runs the engine's ballot and
///    reports it (``ballotEnded(_:won:at:)``);
/// 2. once every resource is held, persistent ones are marked so;
/// 3. if any step fails, what was taken is given up again (``abandon(_:at:)``).
///
/// The driver loops on ``next(_:at:)`` until `.done`; it does the I/O
/// (`.ballot`) and carries out the directives it is handed, nothing else.
public struct AcquireProcedure: Sendable {
    public enum Step: Sendable {
        /// An orphan of the resource was adopted: the process holds it now.
        case adopted(HeldLease)
        /// Another local process shares the lease: this one shares it too.
        case sharedLocally(HeldLease)
        /// Run the engine's acquire for the resource (`shared`: a shared
        /// lease; the spec's lver, if any, is required), then report it
        /// with ``ballotEnded(_:won:at:)``.
        case ballot(ResourceSpec, shared: Bool)
        /// Every resource is held.
        case done([HeldLease])
    }

    /// How a ballot ends for the process.
    public enum BallotEnd: Sendable {
        /// The lease is the process's now.
        case held(HeldLease)
        /// The ballot failed: the driver answers the engine's error.
        case failed
        /// Won, but not handed over: carry out the directives, answer the error.
        case refused(TenureError, [HostDirective])
    }

    public let pid: ProcessID
    public let shared: Bool
    public let options: LeaseOptions
    let requester: Requester
    /// The user of the process that will hold the leases: an orphan they
    /// leave is that user's.
    let holderUID: UInt32
    private var remaining: [ResourceSpec]
    private var inBallot: ResourceSpec?
    /// What the process holds so far, in the order taken.
    public private(set) var taken: [HeldLease] = []

    /// Refused at once past the daemon's lease limit, or for no resource.
    public init(_ specs: [ResourceSpec], for pid: ProcessID, shared: Bool, options: LeaseOptions,
                requester: Requester, holderUID: UInt32, core: HostCore) throws {
        guard !specs.isEmpty else {
            throw TenureError(.invalidArgument, "An acquire names no resource.", remedy: "Name at least one resource.")
        }
        try core.checkRoom(for: specs.count)
        self.pid = pid
        self.shared = shared
        self.options = options
        self.requester = requester
        self.holderUID = holderUID
        remaining = specs
    }

    /// The next step; throws a refusal (the driver then abandons).
    public mutating func next(_ core: inout HostCore, at now: MonotonicInstant) throws -> Step {
        precondition(inBallot == nil, "the end of the ballot for \(inBallot!) was not reported")
        guard !remaining.isEmpty else {
            if options.persistent {
                for lease in taken { core.markPersistent(lease.resource, of: pid, owner: holderUID) }
            }
            return .done(taken)
        }
        let spec = remaining.removeFirst()
        if options.adoptOrphan, let orphan = try core.adoptOrphan(spec, for: pid, by: requester, at: now) {
            taken.append(orphan)
            return .adopted(orphan)
        }
        if options.orphanOnly {
            throw TenureError(.notOwner, "\(spec.name) has no orphan on this host to adopt.", remedy: "Acquire it without SANLK_ACQUIRE_ORPHAN_ONLY.")
        }
        switch try core.arbitrate(spec, for: pid, shared: shared, at: now) {
        case .shareLocalHold(let held):
            taken.append(held)
            return .sharedLocally(held)
        case .ballot:
            inBallot = spec
            return .ballot(spec, shared: shared || spec.shared)
        }
    }

    /// The engine's acquire of the last `.ballot` step ended: `won` is the
    /// lease, or nil when it failed. The core checks the lockspace was
    /// still valid and the process still there before handing it over.
    public mutating func ballotEnded(_ core: inout HostCore, won: HeldLease?, at now: MonotonicInstant) -> BallotEnd {
        guard let spec = inBallot else { preconditionFailure("no ballot is under way") }
        inBallot = nil
        switch core.ballotEnded(spec, for: pid, won: won, at: now) {
        case .handedOver(let held):
            taken.append(held)
            return .held(held)
        case .refused(let error, let directives):
            return .refused(error, directives)
        case nil:
            return .failed
        }
    }

    /// The acquire failed part-way: what it took is given up again (all or
    /// nothing), and a ballot under way is ended unheard.
    public mutating func abandon(_ core: inout HostCore, at now: MonotonicInstant) -> [HostDirective] {
        if let spec = inBallot {
            _ = core.ballotEnded(spec, for: pid, won: nil, at: now)
            inBallot = nil
        }
        let names = taken.map(\.resource.name.description)
        taken = []
        return core.abandon(names, of: pid, at: now)
    }
}
