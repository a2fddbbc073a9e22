/// Every timeout Tenure uses, as pure functions of two inputs: the
/// io_timeout N of the host being reasoned about and the watchdog fire time W.
///
/// The timeline after a host's last successful renewal at T (defaults
/// N = 10 s, W = 60 s; docs/timeouts.md walks it in full):
///
/// ```
/// T            last good renewal
/// T + 2N  20s  next renewal due (renewalInterval)
/// T + 6N  60s  renewal warning logged (renewalWarning)
/// T + 8N  80s  lockspace lost: holders are killed (renewalFailure)
/// T + 8N + W   other hosts may take its leases (hostDead): by then its
///      140s    watchdog, unpetted since T + 8N at the latest, has reset it
/// ```
///
/// A host never compares its clock with another host's: it measures how
/// long it has seen another host's timestamp *not change*, on its own
/// monotonic clock, and compares that with the other host's N (stored in
/// its delta lease) and W.
public struct Timeouts: Hashable, Sendable, CustomStringConvertible {
    /// io_timeout: the longest a single I/O may take.
    public let ioTimeout: Duration
    /// Watchdog fire time: after its last pet, the watchdog resets the host within this.
    public let watchdogFire: Duration

    /// sanlock's default watchdog fire time.
    public static let defaultWatchdogFireSeconds = 60

    public init(ioTimeout: Duration, watchdogFire: Duration = .seconds(Timeouts.defaultWatchdogFireSeconds)) {
        precondition(ioTimeout > .zero, "io_timeout must be positive")
        precondition(watchdogFire >= .zero, "watchdog fire time must not be negative")
        self.ioTimeout = ioTimeout
        self.watchdogFire = watchdogFire
    }

    public init(_ ioTimeout: IOTimeout, watchdogFireSeconds: Int = Timeouts.defaultWatchdogFireSeconds) {
        self.init(ioTimeout, watchdogFire: .seconds(watchdogFireSeconds))
    }

    public init(_ ioTimeout: IOTimeout, watchdogFire: Duration) {
        self.init(ioTimeout: ioTimeout.duration, watchdogFire: watchdogFire)
    }

    /// How often a host being watched (for a join or an acquire) is re-read:
    /// once a second, or every N when N is shorter.
    public var livenessPoll: Duration { ioTimeout < .seconds(1) ? ioTimeout : .seconds(1) }

    /// The shortest time any host waits, after its delta-lease write, before
    /// its join completes and it may run a ballot: the join settle time 2N at
    /// the smallest io_timeout a lockspace allows (1 s). sanlock's join waits
    /// at least as long (2 × its io_timeout).
    public static let minimumJoinWait: Duration = .seconds(2)

    /// How long after a participant view's read was issued a ballot may still
    /// plan reads from it: half of ``minimumJoinWait``, the other half
    /// absorbing the time to the read's submission and clock-rate differences
    /// (docs/timeouts.md argues it).
    public static let viewFreshness: Duration = minimumJoinWait / 2

    /// The fault model's bound on clock rates: a host's clock runs within
    /// 2 % of real time. The fencing argument's margins assume it, the
    /// simulator draws drifts up to it, and the frozen-clock check
    /// discounts other hosts' timestamps by it.
    public static let maxClockDrift = 0.02

    /// The daemon looks for requests aimed at its leases (and the signals
    /// that announce them) this often.
    public static let requestPoll: Duration = .seconds(1)

    /// 2N: how often a host renews its delta lease.
    public var renewalInterval: Duration { ioTimeout * 2 }
    /// 6N: a renewal this late is logged as a warning.
    public var renewalWarning: Duration { ioTimeout * 6 }
    /// 8N: renewals failing this long mean the lockspace is lost; every
    /// holder of a lease in it must die.
    public var renewalFailure: Duration { ioTimeout * 8 }
    /// 8N + W: a host seen unchanged this long is dead; its leases may be taken.
    public var hostDead: Duration { renewalFailure + watchdogFire }
    /// 2N: after writing a delta lease to join, wait this long and re-read;
    /// a host that wrote the same slot meanwhile shows up as a difference.
    public var joinSettle: Duration { ioTimeout * 2 }
    /// 8N + W: a slot that is not free must stay unchanged this long before
    /// a joining host may take it (its owner is then dead).
    public var joinWaitForHeldSlot: Duration { hostDead }
    /// Grace between asking a holder to stop (killpath or SIGTERM) and SIGKILL:
    /// 40 s, 15 s if 30 s ≤ W < 60 s, none if W < 30 s.
    public var killGrace: Duration {
        if watchdogFire >= .seconds(60) { return .seconds(40) }
        if watchdogFire >= .seconds(30) { return .seconds(15) }
        return .zero
    }
    /// Upper bound of the random back-off after an aborted ballot.
    public var ballotBackoffMax: Duration { .seconds(1) < ioTimeout ? .seconds(1) : ioTimeout }

    public var description: String {
        "io_timeout \(ioTimeout), watchdog \(watchdogFire): renew every \(renewalInterval), lost at \(renewalFailure), dead at \(hostDead)"
    }

    // MARK: Fixed intervals (not derived from N or W)

    /// How often the watchdog is petted while it may be: well inside W.
    public static func petInterval(watchdogFire: Duration) -> Duration { min(.seconds(1), watchdogFire / 4) }
    /// How often a fencing daemon checks whether the processes it stops are gone.
    public static let fencePoll: Duration = .milliseconds(50)
    /// How often a process that survives SIGKILL (or, restricted to SIGTERM,
    /// ignores it) is signalled again while its leases stay held.
    public static let fenceResignal: Duration = .seconds(1)
    /// How often fencing that does not end is logged again.
    public static let fenceWarningEvery: Duration = .seconds(10)
    /// How often the daemon looks whether a lockspace was lost before its
    /// expiry (a renewal found its slot rewritten by another join of its host id).
    public static let lossCheck: Duration = .seconds(1)
    /// A connection that never registered and holds no leases is closed
    /// after this long without a request.
    public static let idleConnection: Duration = .seconds(10)
    /// Once the first byte of a message has come, the rest must come within
    /// this long, and its reply must be taken within it too; otherwise the
    /// connection is closed, on either socket. A client that stops part-way
    /// (or never reads) cannot hold its place in ``Limits`` for ever.
    public static let messageArrival: Duration = .seconds(5)
    /// How long a connection refused for too many clients is kept open
    /// after the refusal is sent, so the client's request (sent before it
    /// reads) does not fail on a closed socket before it reads why.
    public static let refusalLinger: Duration = .seconds(1)
    /// How long the daemon's loop stops accepting after accept failed (out
    /// of descriptors or memory) before it tries again.
    public static let acceptRetry: Duration = .milliseconds(100)
    /// A metrics scrape sends its whole request within this long, or is closed.
    public static let metricsRequest: Duration = .seconds(2)
    /// How often sanlock's `inq_lockspace` with SANLK_INQ_WAIT looks whether
    /// a join has ended.
    public static let sanlockJoinPoll: Duration = .milliseconds(100)
    /// Between attempts to write a lock value block before a release, and
    /// between looks whether an earlier attempt may still land.
    public static let lvbRetry: Duration = .milliseconds(100)
    /// At shutdown, how long the daemon waits for replies being written
    /// (the shutdown request's own) before it closes its sockets, and how
    /// often it looks whether they are out.
    public static let shutdownReplyDrain: Duration = .seconds(2)
    public static let shutdownReplyPoll: Duration = .milliseconds(20)
}

extension IOTimeout {
    /// The one conversion of an io_timeout to a duration: its seconds,
    /// never less than ``minimumSeconds`` (a record carrying 0 means the
    /// smallest the engine uses).
    public var duration: Duration { .seconds(Swift.max(seconds, IOTimeout.minimumSeconds)) }
}
