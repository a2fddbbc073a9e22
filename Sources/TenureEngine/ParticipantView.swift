import TenureCore
import TenureFormat

/// The hosts whose dblocks a ballot must read, from one read of the
/// lockspace's host slots.
///
/// Disk Paxos is safe when, of any two ballots, at least the later reader
/// sees the other's dblock. sanlock gets that by reading every dblock (1 MiB
/// with 2,000 host slots) three times per acquire. A host can only run a
/// ballot while it holds its host id, so Tenure reads only the dblocks of
/// hosts whose delta lease is not free when the view was read. A host that
/// joins after the view was read is not in it, but cannot have written a
/// dblock yet either: its join waits ``minimumJoinWait`` after its delta-lease
/// write lands before it may run a ballot, and every read planned from a view
/// is issued within ``freshness`` of the view's own read (docs/timeouts.md,
/// "Reading only the hosts that can take part", walks the argument).
///
/// A slot that is not a valid free record of this lockspace (held, dead,
/// damaged, or another lockspace's) counts as a participant: only slots known
/// free are skipped.
public struct ParticipantView: Sendable, Equatable {
    /// Hosts 1...covered whose slot was not free, in increasing order.
    public let hosts: [HostID]
    /// How many slots (1...covered) the view read.
    public let covered: Int
    /// When the read of the slots was issued, by this host's monotonic clock.
    public let readIssuedAt: MonotonicInstant

    public init(hosts: [HostID], covered: Int, readIssuedAt: MonotonicInstant) {
        self.hosts = hosts
        self.covered = covered
        self.readIssuedAt = readIssuedAt
    }

    /// How long after a view's read was issued a ballot may still issue reads
    /// planned from it. Half of ``minimumJoinWait``: the other half absorbs
    /// the time between the freshness check and the read's submission and
    /// any difference in clock rates between hosts.
    public static let freshness: Duration = Timeouts.viewFreshness

    /// The shortest time any host waits, after its delta-lease write, before
    /// its join completes and it may run a ballot: the join settle time 2N
    /// at the smallest io_timeout a lockspace allows (1 s). Tenure's join
    /// waits at least this (``DeltaLease/acquire``), and so does sanlock's
    /// (2 × its io_timeout).
    public static let minimumJoinWait: Duration = Timeouts.minimumJoinWait

    /// Whether reads planned from this view may still be issued at `now`.
    public func isFresh(at now: MonotonicInstant) -> Bool {
        now < readIssuedAt + Self.freshness
    }

    /// Whether this view can plan reads of a lease with `numHosts` dblocks.
    public func covers(numHosts: Int) -> Bool { covered >= numHosts }
}

/// Where a ballot learns which hosts can take part. A joined lockspace's
/// ``LockspaceObserver`` is one; daemonless tools use none and read every dblock.
public protocol BallotParticipantSource: Sendable {
    /// A view covering at least host slots 1...numHosts that is fresh now
    /// (the caller issues its reads at once), or nil when none could be had
    /// fresh: the caller must then read every dblock.
    func participants(numHosts: Int) async throws -> ParticipantView?
}

/// Contiguous runs of sectors to read, so a few scattered sectors cost few I/Os.
enum SectorRuns {
    /// Sorts `sectors` and merges those at most `maxGap` sectors apart into
    /// one run (reading a few unneeded sectors is cheaper than another I/O).
    static func coalesce(_ sectors: [Int], maxGap: Int = 8) -> [Range<Int>] {
        var runs: [Range<Int>] = []
        for s in Set(sectors).sorted() {
            if let last = runs.last, s - last.upperBound <= maxGap {
                runs[runs.count - 1] = last.lowerBound..<(s + 1)
            } else {
                runs.append(s..<(s + 1))
            }
        }
        return runs
    }
}
