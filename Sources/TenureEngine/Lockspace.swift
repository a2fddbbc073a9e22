import Synchronization
import TenureCore
import TenureFormat

/// A lockspace this host has joined: its delta lease, renewed on its own
/// schedule through its own device handle (client I/O never delays it), and
/// the moment from which its holders must be dead.
///
/// The lost deadline is a value, `lastRenewalStart + 8N`, not an event: it
/// holds even while a renewal I/O hangs, so fencing can act on time.
public actor Lockspace {
    public nonisolated let spec: LockspaceSpec
    public let slot: DeltaLeaseSlot
    public let ioTimeout: IOTimeout
    public nonisolated let timeouts: Timeouts
    /// Watches other hosts (through the observer's device).
    public nonisolated let observer: LockspaceObserver
    let context: EngineContext

    public private(set) var hold: DeltaLeaseHold? {
        didSet { publishExpiry() }
    }
    /// What other hosts' timestamps show this host's clock missed (a frozen
    /// VM): it comes off the expiry. Fed by every renewal's read.
    public private(set) var clockCheck: FrozenClockCheck {
        didSet { publishExpiry() }
    }
    /// Set once the lockspace is lost, readable without a hop onto the actor:
    /// a renewal that finds its slot rewritten by another join of our host
    /// id loses it before its expiry, and the watchdog must stop at once.
    private let publishedLostFlag = Mutex(false)
    public nonisolated var publishedLost: Bool { publishedLostFlag.withLock { $0 } }
    /// ``expiry``, readable without a hop onto the actor: a fencing timer
    /// must not wait behind a renewal stuck in I/O.
    private let published = Mutex<MonotonicInstant?>(nil)
    public nonisolated var publishedExpiry: MonotonicInstant? { published.withLock { $0 } }
    /// Set once the lockspace is lost; it never comes back (rejoin instead).
    public private(set) var lostReason: TenureError?
    /// Longest gap between starts of successful renewals, for status.
    public private(set) var worstRenewalGap: Duration = .zero
    /// The last ``renewalHistoryLimit`` successful renewals, oldest first
    /// (what `sanlock client renewal` prints).
    public private(set) var renewalHistory: [RenewalRecord] = []
    public static let renewalHistoryLimit = 180
    public private(set) var renewals = 0
    public private(set) var failedRenewals = 0
    /// How long each successful renewal took (its read and its write), for metrics.
    public private(set) var renewalLatency = LatencyHistogram()
    /// When the last renewal attempt started, whatever it came to.
    public private(set) var lastRenewalAttempt: MonotonicInstant?

    /// - Parameters:
    ///   - renewalDevice: a handle used only for this lockspace's renewals.
    ///   - observer: reads other hosts' slots (may use a shared handle).
    public init(spec: LockspaceSpec, renewalDevice: any BlockDevice, observer: LockspaceObserver, ioTimeout: IOTimeout,
                context: EngineContext) throws {
        self.spec = spec
        self.slot = try DeltaLeaseSlot(device: renewalDevice, areaOffset: observer.areaOffset, geometry: observer.geometry,
                                       lockspace: spec.name, hostID: spec.hostID)
        self.ioTimeout = ioTimeout
        self.timeouts = context.timeouts(ioTimeout)
        self.observer = observer
        self.context = context
        self.clockCheck = FrozenClockCheck(ownID: spec.hostID)
    }

    private func publishExpiry() {
        let expiry = self.expiry
        published.withLock { $0 = expiry }
    }

    /// This host as it takes part, once joined.
    public var localHost: LocalHost? { hold?.host }

    /// Joins: acquires the host id by the delta-lease algorithm.
    public func join(name: LeaseName) async throws -> LocalHost {
        precondition(hold == nil, "join called twice")
        let joined = try await DeltaLease.acquire(slot, name: name, ioTimeout: ioTimeout, context: context)
        hold = joined
        return joined.host
    }

    /// The instant from which this host must behave as if the lockspace were
    /// lost: every holder of a lease in it must be dead. nil before joining.
    /// 8N after the last renewal started, less any real time this host's
    /// clock is known to have missed since (``FrozenClockCheck``).
    public var expiry: MonotonicInstant? {
        guard let hold else { return nil }
        return hold.lastRenewalStart + max(.zero, timeouts.renewalFailure - clockCheck.unseen)
    }

    /// When the next renewal is due.
    public var nextRenewalDue: MonotonicInstant? {
        hold.map { $0.lastRenewalStart + timeouts.renewalInterval }
    }

    /// Whether leases in this lockspace may still be used at `now`.
    public func isValid(at now: MonotonicInstant) -> Bool {
        guard lostReason == nil, let expiry else { return false }
        return now < expiry
    }

    /// One renewal. On a failed I/O the hold is unchanged (the next try
    /// comes soon); once the expiry passes, or the slot was taken over, the
    /// lockspace is lost for good.
    public func renew() async throws {
        guard let hold, lostReason == nil else {
            throw lostReason ?? TenureError(.invalidArgument, "Lockspace \(spec.name) is not joined.")
        }
        lastRenewalAttempt = context.clock.now()
        do {
            let read = try await DeltaLease.renewalRead(slot, hold: hold, othersUpTo: clockCheck.slotsToRead(maxHosts: slot.geometry.maxHosts),
                                                        context: context)
            clockCheck.look(at: read.others, at: read.done, fallback: ioTimeout)
            if let expiry, context.clock.now() >= expiry, let evidence = clockCheck.evidence {
                throw markLost(frozenClockLoss(evidence))
            }
            let renewed = try await DeltaLease.renewalWrite(slot, hold: hold, after: read, context: context)
            // Holders were due to die at the expiry: a renewal that completes
            // after it does not revive the lockspace.
            if let expiry, context.clock.now() >= expiry {
                throw markLost(TenureError(.lockspaceLost, "Lockspace \(spec.name) expired before its renewal completed.",
                                           remedy: "The storage is too slow for io_timeout \(ioTimeout.seconds)s; rejoin the lockspace."))
            }
            clockCheck.renewed()
            let gap = renewed.lastRenewalStart - hold.lastRenewalStart
            worstRenewalGap = max(worstRenewalGap, gap)
            if gap > timeouts.renewalWarning {
                context.log(EngineEvent(.renewalLate, "lockspace \(spec.name) renewed \(gap) after the previous renewal (warning at \(timeouts.renewalWarning))"))
            }
            renewals += 1
            self.hold = renewed
            renewalHistory.append(RenewalRecord(timestamp: renewed.written.timestamp, readTime: renewed.lastReadTime, writeTime: renewed.lastWriteTime))
            renewalLatency.observe(renewed.lastReadTime + renewed.lastWriteTime)
            if renewalHistory.count > Self.renewalHistoryLimit { renewalHistory.removeFirst() }
        } catch let error as TenureError where error.code == .lockspaceLost {
            throw markLost(error)
        } catch {
            failedRenewals += 1
            if !renewalHistory.isEmpty {
                let timedOut = (error as? TenureError)?.code == .ioTimeout
                renewalHistory[renewalHistory.count - 1].failuresAfter(timedOut: timedOut)
            }
            context.log(EngineEvent(.renewalFailed, "lockspace \(spec.name) renewal failed: \(error)"))
            if let expiry, context.clock.now() >= expiry {
                throw markLost(TenureError(.lockspaceLost, "Lockspace \(spec.name) could not be renewed for \(timeouts.renewalFailure): \(error)",
                                           remedy: "Check the storage path; the holders of its leases were killed."))
            }
            throw error
        }
    }

    @discardableResult
    func markLost(_ error: TenureError) -> TenureError {
        if lostReason == nil {
            lostReason = error
            publishedLostFlag.withLock { $0 = true }
            context.log(EngineEvent(.lockspaceLost, error.message))
        }
        return lostReason!
    }

    /// Marks the lockspace lost if its expiry has passed; call from a timer
    /// that does not wait on renewal I/O.
    /// Looks at other hosts' slots read between renewals (the daemon reads
    /// them every second while it holds leases): a clock that stood still
    /// is then caught within a second of the resume, not at the next
    /// renewal up to 2N later. Returns the loss when what they show puts
    /// the expiry behind this host.
    public func lookAtPeers(_ reads: [LockspaceObserver.SlotsRead]) -> TenureError? {
        guard lostReason == nil, hold != nil else { return lostReason }
        for read in reads {
            clockCheck.look(at: read.slots.filter { $0.0 != spec.hostID }, at: read.at, fallback: ioTimeout)
        }
        if let expiry, context.clock.now() >= expiry, let evidence = clockCheck.evidence {
            return markLost(frozenClockLoss(evidence))
        }
        return nil
    }

    /// The loss a frozen clock causes, with what showed it.
    func frozenClockLoss(_ evidence: FrozenClockCheck.Evidence) -> TenureError {
        TenureError(.lockspaceLost, "Lockspace \(spec.name): this host's clock stood still while other hosts' ran (a paused VM?): \(evidence). Other hosts may have taken its leases.",
                    remedy: "The holders of its leases were killed; find what froze the host, then rejoin the lockspace.")
    }

    public func checkExpiry() -> TenureError? {
        if lostReason == nil, let expiry, context.clock.now() >= expiry {
            markLost(TenureError(.lockspaceLost, "Lockspace \(spec.name) was not renewed for \(timeouts.renewalFailure).",
                                 remedy: "Check the storage path; the holders of its leases were killed."))
        }
        return lostReason
    }

    /// Renews on schedule until cancelled or lost: every 2N after the last
    /// successful renewal started, retrying failures every `livenessPoll`.
    public func runRenewals() async {
        while !Task.isCancelled, lostReason == nil, let due = nextRenewalDue {
            do {
                try await context.clock.sleep(until: due)
                try await renew()
            } catch is CancellationError {
                return
            } catch {
                if lostReason != nil { return }
                try? await context.clock.sleep(for: timeouts.livenessPoll)
                if Task.isCancelled { return }
                while lostReason == nil, !Task.isCancelled {
                    do {
                        try await renew()
                        break
                    } catch {
                        if lostReason != nil { return }
                        try? await context.clock.sleep(for: timeouts.livenessPoll)
                    }
                }
            }
        }
    }

    /// Sets host `other`'s bit in our bitmap (asking it to look at its
    /// leases' request records) and writes it at once.
    public func signal(_ other: HostID) async throws {
        guard let hold, lostReason == nil else { throw lostReason ?? TenureError(.invalidArgument, "Lockspace \(spec.name) is not joined.") }
        var bitmap = hold.bitmap
        bitmap.insert(other)
        self.hold = try await DeltaLease.updateBitmap(slot, hold: hold, bitmap: bitmap)
    }

    /// Sets (or, with ``HostEvent/none``, clears) the event this host's
    /// delta lease carries, sets the bits of `recipients`, and writes at once;
    /// renewals carry both on. `clearing` bits are cleared first.
    public func setEvent(_ event: HostEvent, for recipients: [HostID], clearing: [HostID] = []) async throws {
        guard var hold, lostReason == nil else { throw lostReason ?? TenureError(.invalidArgument, "Lockspace \(spec.name) is not joined.") }
        var bitmap = hold.bitmap
        for host in clearing { bitmap.remove(host) }
        for host in recipients { bitmap.insert(host) }
        hold.written.hostEvent = event
        hold.written = hold.written.sealed
        self.hold = try await DeltaLease.updateBitmap(slot, hold: hold, bitmap: bitmap)
    }

    /// Clears every bit we set (the next renewal writes the cleared bitmap).
    public func clearSignals() {
        hold?.bitmap = HostBitmap()
    }

    /// How ``leave(afterWritesThrough:)`` ended.
    public enum LeaveOutcome: Sendable, Equatable {
        /// The slot reads free (timestamp 0): another host may take it after 2N.
        case freed
        /// The slot keeps our last record, no longer renewed, because a write
        /// issued through `path` may still land: the id ages out like a
        /// crashed host's, and whoever joins it next watches it for 8N + W
        /// first — longer than any write may land late (5N).
        case leftToExpire(path: String)
        /// Nothing to write: not joined, or the lockspace was lost already.
        case nothingWritten
    }

    /// Leaves: releases the host id (timestamp 0), unless a write this host
    /// issued may still land.
    ///
    /// Disk Paxos needs a process's writes to its own blocks to land in
    /// order. Our blocks belong to the host id, not to this machine: once
    /// the slot reads free another machine may join it after only 2N and
    /// write the same dblocks, and a write of ours still in flight (at most
    /// 5N late) would land over its newer one — erasing a shared mark, or
    /// bringing back a ballot it has moved past. So the slot is freed only
    /// when every handle this host wrote its leases through (`devices`: the
    /// resources' and the lockspace's) has no write that may still land.
    /// Renewals must be stopped and every lease released first.
    @discardableResult
    public func leave(afterWritesThrough devices: [any BlockDevice]) async throws -> LeaveOutcome {
        guard let hold else { return .nothingWritten }
        self.hold = nil
        guard lostReason == nil else { return .nothingWritten }
        if let unsettled = devices.first(where: { $0.writesMayStillLand }) {
            context.log(EngineEvent(.leftToExpire, "left host id \(slot.hostID) of lockspace \(slot.lockspace) without freeing it: a write through \(unsettled.path) may still land; the id ages out like a crashed host's"))
            return .leftToExpire(path: unsettled.path)
        }
        try await DeltaLease.release(slot, hold: hold, context: context)
        return .freed
    }
}

/// One successful renewal: the timestamp it wrote, how long its read and
/// write took, and the attempts that failed after it (timeouts, other errors).
public struct RenewalRecord: Sendable, Equatable {
    public var timestamp: DiskTimestamp
    public var readTime: Duration
    public var writeTime: Duration
    public var timeoutsAfter = 0
    public var errorsAfter = 0

    public init(timestamp: DiskTimestamp, readTime: Duration, writeTime: Duration) {
        self.timestamp = timestamp
        self.readTime = readTime
        self.writeTime = writeTime
    }

    mutating func failuresAfter(timedOut: Bool) {
        if timedOut { timeoutsAfter += 1 } else { errorsAfter += 1 }
    }

    /// sanlock's renewal line.
    public var sanlockText: String {
        "timestamp=\(timestamp.rawValue) read_ms=\(Self.milliseconds(readTime)) write_ms=\(Self.milliseconds(writeTime)) next_timeouts=\(timeoutsAfter) next_errors=\(errorsAfter)"
    }

    public static func milliseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}
