import Synchronization
import TenureCore
import TenureFormat

/// Everything the engine needs from the world besides devices: time,
/// randomness and a place to report what it did. The daemon passes the
/// real clock and a system random source; the simulator passes its virtual
/// clock and a seeded generator, so a run replays exactly.
public struct EngineContext: Sendable {
    public var clock: any MonotonicClock
    /// Returns a uniformly distributed value in 0..<upperBound (upperBound > 0).
    public var random: @Sendable (_ upperBound: UInt64) -> UInt64
    /// Receives one line per notable step (ballot aborts, late renewals, …).
    public var log: @Sendable (EngineEvent) -> Void
    /// The watchdog fire time W every host in the cluster is configured with.
    public var watchdogFire: Duration
    /// Known bugs switched on to prove that the checkers catch them. Empty
    /// in every real run; see ``InjectedBug``.
    public var injectedBugs: Set<InjectedBug>
    /// The proposals this host made, shared by every copy of the context.
    public let proposals = ProposalStamps()

    public init(clock: any MonotonicClock,
                random: @escaping @Sendable (UInt64) -> UInt64 = { UInt64.random(in: 0..<$0) },
                log: @escaping @Sendable (EngineEvent) -> Void = { _ in },
                watchdogFire: Duration = .seconds(Timeouts.defaultWatchdogFireSeconds),
                injectedBugs: Set<InjectedBug> = []) {
        self.clock = clock
        self.random = random
        self.log = log
        self.watchdogFire = watchdogFire
        self.injectedBugs = injectedBugs
    }

    /// The same context on another clock reading the same time (the
    /// daemon's renewal thread, which wakes its own sleeps); the copies
    /// share their proposals.
    public func with(clock: any MonotonicClock) -> EngineContext {
        var copy = self
        copy.clock = clock
        return copy
    }

    /// Timeouts for a host whose io_timeout is `ioTimeout`.
    public func timeouts(_ ioTimeout: IOTimeout) -> Timeouts {
        Timeouts(ioTimeout, watchdogFire: watchdogFire)
    }

    /// The current time as a delta-lease timestamp (never 0, which means free).
    public func diskTimestamp() -> DiskTimestamp {
        DiskTimestamp(max(1, clock.now().wholeSeconds))
    }

    /// The timestamp (inp3) of a new acquisition's proposal: the clock's
    /// seconds, but above every proposal this host made before and above
    /// `atLeastAbove` (our own dblock's last vote, which another process of
    /// this host generation may have written). So no two acquisitions of one
    /// host generation ever propose the same value — the proposal is what
    /// tells an acquisition's own win from a version an earlier acquisition
    /// of ours already won.
    public func proposalStamp(above atLeastAbove: DiskTimestamp = .free) -> DiskTimestamp {
        proposals.next(now: diskTimestamp(), above: atLeastAbove)
    }
}

/// The last proposal timestamp a host made (see ``EngineContext/proposalStamp(above:)``).
public final class ProposalStamps: Sendable {
    private let last = Mutex(DiskTimestamp.free)

    public init() {}

    func next(now: DiskTimestamp, above floor: DiskTimestamp) -> DiskTimestamp {
        last.withLock { last in
            let bound = max(last, floor)
            let stamp = now > bound ? now : DiskTimestamp(bound.rawValue &+ 1)
            last = stamp
            return stamp
        }
    }
}

/// A deliberate safety bug, for tests of the tests: a witness or checker
/// that cannot catch these would prove nothing. Only tests and the simulator
/// switch them on (the `tenure` command reads `TENURE_INJECT_BUG` and says so
/// loudly on stderr).
public enum InjectedBug: String, Sendable, CaseIterable {
    /// Whether this build can run with injected bugs at all: only debug
    /// builds, for the tests that prove a witness can fail. In a release
    /// build every check for one is false and compiled away.
    public static var canBeInjected: Bool {
        #if DEBUG
        true
        #else
        false
        #endif
    }

    /// Whether `self` is switched on in `bugs` — always false in a release build.
    @inline(__always)
    public func isOn(in bugs: Set<InjectedBug>) -> Bool {
        #if DEBUG
        bugs.contains(self)
        #else
        false
        #endif
    }

    /// Take over a lease whose owner is seen alive, as if it were dead.
    case ignoreLiveOwner = "ignore-live-owner"
    /// Phase 2 writes our dblock but never reads the others', so a competing
    /// ballot that started in between goes unseen.
    case skipPhase2Read = "skip-phase2-read"
    /// Ballots keep using the first view of the participants forever, so a
    /// host that joins later goes unseen (the freshness rule switched off).
    case staleParticipantView = "stale-participant-view"
    /// The host core keeps petting the watchdog after a lockspace with
    /// holders is lost, so a holder that will not die is never reset.
    case keepPettingAfterLoss = "keep-petting-after-loss"
    /// The host core forgets one holder of a lost lockspace instead of
    /// stopping it: the process runs on, and nothing keeps the watchdog unpetted.
    case fenceSkipsAHolder = "fence-skips-a-holder"
    /// A daemon that restarts after a crash knows nothing of the holders
    /// its earlier incarnation left running, and pets the watchdog at once.
    case rearmAfterRestart = "rearm-after-restart"
    /// The host core hands an orphan to the process that adopts it but
    /// keeps it as an orphan too, so a second process adopts it again.
    case orphanAdoptedTwice = "orphan-adopted-twice"
    /// The host core gives up the leases of a process being stopped when
    /// it closes its connection, although it still runs (and uses them).
    case disconnectReleasesUnfenced = "disconnect-releases-unfenced"

    /// The bugs inside the host core (the rest are the engine's).
    public var isInHostCore: Bool {
        switch self {
        case .keepPettingAfterLoss, .fenceSkipsAHolder, .rearmAfterRestart, .orphanAdoptedTwice, .disconnectReleasesUnfenced: true
        case .ignoreLiveOwner, .skipPhase2Read, .staleParticipantView: false
        }
    }
}

/// Something the engine reports; `message` is for people, `kind` for counters and tests.
public struct EngineEvent: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case joined, joinWaiting, renewed, renewalLate, renewalFailed, lockspaceLost, released, leftToExpire
        case ballotAborted, ballotCommitted, ownerJudged, leaseAcquired, leaseReleased, goneSharerPassedOver, requestWritten
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { "\(kind.rawValue): \(message)" }
}

/// This host as it takes part in one lockspace: its id, the generation of
/// its current join, and its name.
public struct LocalHost: Hashable, Sendable, CustomStringConvertible {
    public var id: HostID
    public var generation: Generation
    public var name: LeaseName

    public init(id: HostID, generation: Generation, name: LeaseName = .empty) {
        self.id = id
        self.generation = generation
        self.name = name
    }

    public var description: String { "host \(id) generation \(generation)" }
}
