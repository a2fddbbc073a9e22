import TenureCore
import TenureFormat

/// Notices that this host's clock stood still while other hosts' ran: a
/// paused virtual machine, a suspended host, a stalled hypervisor.
///
/// A frozen host's monotonic clock stops with it (a paused VM's clock and
/// its emulated watchdog both stop), so on resume every deadline measured
/// on that clock looks far away while, in real time, other hosts may have
/// called it dead (8N + W) and taken its leases. Only the storage shows how
/// long it really was: other hosts' delta-lease timestamps kept counting.
///
/// Each renewal reads the slots of the other hosts with its own (one I/O)
/// and hands them here. For a host h seen at two renewals with the same
/// join (owner, generation, incarnation), the real time between the
/// stamping of its two timestamps is at least what h's clock counted, less
/// its rounding (1 s) and drift (``Timeouts/maxClockDrift``). Its earlier timestamp
/// was written after the last look that still saw the value before it
/// (`changedAfter`), stamped at most one of h's io_timeouts before that
/// write completed; its later one before this read. So this host's clock
/// missed at least
///
///     (ts₂ − ts₁)·(1 − drift) − 1 s − N_h − (now − changedAfter)
///
/// of real time since `changedAfter`. The largest such bound over the
/// hosts is ``unseen``: it only ever understates the time missed, so a
/// host whose clock ran is never taken for frozen (a host with a clock
/// running fast by more than the stated drift could be).
///
/// The lockspace subtracts ``unseen`` from its expiry: once this host's
/// clock plus what it missed reaches 8N, its holders must be dead. A freeze
/// long enough for another host to take a lease (8N + W) is then caught at
/// the first renewal after the resume, within 2N.
public struct FrozenClockCheck: Sendable {
    /// Slots read past the highest host id seen joined, so hosts that join
    /// later above it are seen too.
    public static let slotsBeyondHighest = 64

    /// What was last seen of one host.
    struct Sight: Sendable {
        var generation: Generation
        var incarnation: UInt64
        var timestamp: DiskTimestamp
        var ioTimeout: IOTimeout
        /// When it was read (our clock).
        var at: MonotonicInstant
        /// The last look that still saw an earlier value: the timestamp was
        /// written after it. nil until a change was seen.
        var changedAfter: MonotonicInstant?
    }

    /// The evidence of the largest bound, for the log.
    public struct Evidence: Sendable, Equatable, CustomStringConvertible {
        public var host: HostID
        /// What that host's clock counted between its two timestamps.
        public var theirs: Duration
        /// What our clock counted from the look before its first one to now.
        public var ours: Duration
        public var missed: Duration
        public var description: String {
            "host \(host)'s timestamp moved \(theirs) while this host's clock moved \(ours): this host's clock missed at least \(missed)"
        }
    }

    private var sights: [HostID: Sight] = [:]
    /// Real time this host's clock missed since its last successful renewal
    /// started (a lower bound); zero while no host shows any.
    public private(set) var unseen: Duration = .zero
    /// The observation behind ``unseen``.
    public private(set) var evidence: Evidence?
    /// The highest host id seen joined (a timestamp not 0), this host's own included.
    public private(set) var highestJoined: HostID

    public init(ownID: HostID) {
        highestJoined = ownID
    }

    /// How many slots (from host 1) the next renewal should read.
    public func slotsToRead(maxHosts: Int) -> Int {
        min(maxHosts, Int(highestJoined.rawValue) + Self.slotsBeyondHighest)
    }

    /// Looks at the other hosts' records, read at `now`; `fallback` is the
    /// io_timeout of a host whose record carries none.
    public mutating func look(at others: [(HostID, LeaderRecord)], at now: MonotonicInstant, fallback: IOTimeout) {
        var best: Evidence?
        for (id, record) in others where !record.timestamp.isFree {
            highestJoined = max(highestJoined, id)
            let n = record.ioTimeout.rawValue > 0 ? record.ioTimeout : fallback
            var sight = Sight(generation: record.ownerGeneration, incarnation: record.joinIncarnation, timestamp: record.timestamp,
                              ioTimeout: n, at: now, changedAfter: nil)
            if let previous = sights[id], previous.generation == sight.generation, previous.incarnation == sight.incarnation {
                if record.timestamp == previous.timestamp {
                    sight.changedAfter = previous.changedAfter
                } else {
                    sight.changedAfter = previous.at
                    if record.timestamp > previous.timestamp, let since = previous.changedAfter,
                       let missed = Self.missed(from: previous.timestamp, to: record.timestamp, ioTimeout: n, since: since, now: now),
                       missed > (best?.missed ?? .zero) {
                        best = Evidence(host: id, theirs: .seconds(Int64(record.timestamp.rawValue - previous.timestamp.rawValue)),
                                        ours: now - since, missed: missed)
                    }
                }
            }
            sights[id] = sight
        }
        // Bounds from successive looks cover overlapping spans (each reaches
        // back to the look before a change): keep the largest, never a sum.
        if let best, best.missed > unseen {
            unseen = best.missed
            evidence = best
        }
    }

    /// A renewal succeeded: what was missed before it no longer counts
    /// against the new expiry.
    public mutating func renewed() {
        unseen = .zero
        evidence = nil
    }

    /// The real time our clock missed, at least, between `since` and `now`,
    /// given a host's timestamps `first` (written after `since`) and
    /// `second` (written before `now`); nil if none.
    static func missed(from first: DiskTimestamp, to second: DiskTimestamp, ioTimeout: IOTimeout,
                       since: MonotonicInstant, now: MonotonicInstant) -> Duration? {
        let counted = Double(second.rawValue - first.rawValue) * (1 - Timeouts.maxClockDrift)
        let slack = 1.0 + Double(ioTimeout.seconds)
        let ours = now - since
        let oursSeconds = Double(ours.components.seconds) + Double(ours.components.attoseconds) / 1e18
        let missed = counted - slack - oursSeconds
        guard missed > 0 else { return nil }
        return .milliseconds(Int64(missed * 1000))
    }
}
