import TenureCore
import TenureFormat

/// Another host's state as one observer sees it, by its own monotonic clock.
/// Only *changes* of the other host's timestamp count; the values are never
/// compared with the observer's clock.
public enum HostState: String, Sendable, CustomStringConvertible {
    /// The slot's timestamp is 0: nobody holds this host id.
    case free
    /// Held, not yet seen to change, and not yet watched for 8N.
    case unknown
    /// Seen to change, and the last change was under 8N ago.
    case live
    /// Unchanged for over 8N: it has stopped renewing and is fencing itself.
    case failing
    /// Unchanged for over 8N + W: its holders are dead or its watchdog reset it.
    case dead

    public var description: String { rawValue }

    /// Leases this host owned may be taken without waiting.
    public var canBeTakenOver: Bool { self == .free || self == .dead }
}

/// What one observer knows of one host slot.
public struct HostObservation: Sendable {
    /// The record last read.
    public var record: LeaderRecord
    /// When the observer first read the value it holds now (owner,
    /// generation, timestamp, name). The host has not renewed since, as far
    /// as the observer can tell.
    public var unchangedSince: MonotonicInstant
    /// Whether the observer has ever seen the value change.
    public var seenChanging: Bool

    public init(record: LeaderRecord, at now: MonotonicInstant) {
        self.record = record
        unchangedSince = now
        seenChanging = false
    }

    /// Folds in a new read made at `now`.
    public mutating func update(_ newRecord: LeaderRecord, at now: MonotonicInstant) {
        if !DeltaLease.sameHolder(newRecord, record) {
            unchangedSince = now
            seenChanging = !newRecord.timestamp.isFree
        }
        record = newRecord
    }

    /// The state at `now`, using the host's own io_timeout (from its record)
    /// and the cluster's watchdog fire time.
    public func state(at now: MonotonicInstant, context: EngineContext, fallback: IOTimeout) -> HostState {
        if record.timestamp.isFree { return .free }
        let t = context.timeouts(DeltaLease.effectiveIOTimeout(record, ours: fallback))
        let quiet = now - unchangedSince
        if quiet > t.hostDead { return .dead }
        if quiet > t.renewalFailure { return .failing }
        return seenChanging ? .live : .unknown
    }
}

/// The observations of every host slot one host has read in one lockspace.
public struct HostTable: Sendable {
    public private(set) var observations: [HostID: HostObservation] = [:]

    public init() {}

    public mutating func record(_ record: LeaderRecord, for host: HostID, at now: MonotonicInstant) {
        if observations[host] == nil {
            observations[host] = HostObservation(record: record, at: now)
        } else {
            observations[host]!.update(record, at: now)
        }
    }

    public subscript(host: HostID) -> HostObservation? { observations[host] }
}
