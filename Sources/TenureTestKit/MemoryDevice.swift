// MemoryDevice: an in-memory BlockDevice with injectable faults.
//
// It is the disk of unit tests and of the deterministic simulator. It is never
// used in place of a real device in integration tests: those run DirectDevice
// on real files and loop devices, because the faults of a real kernel are not
// the ones written down here.
//
// FAULT MODEL
//
// Without faults, a MemoryDevice keeps the BlockDevice contract exactly:
//
// - Every I/O is validated first (`validate(offset:length:)`). A misaligned or
//   out-of-bounds I/O throws .misaligned / .outOfBounds and is not issued: it
//   is not counted in the statistics, not logged, consumes no fault rule and
//   meets no fault, not even `.detached`. After `close()`, I/O that passes
//   validation throws .deviceClosed, also without being issued.
// - A read returns exactly `length` bytes: what last landed, zeros where
//   nothing ever did.
// - A write has landed in full when it returns: any read issued afterwards,
//   through any handle onto the same MemoryStorage, sees every one of its
//   sectors.
// - Writes are sector-atomic: each sector is either wholly old or wholly new,
//   never a mix. (This model lands a whole un-faulted write at once, under the
//   storage's lock, so a concurrent reader sees all of it or none of it; do not
//   rely on that: real devices may tear a multi-sector write at sector
//   boundaries, and `.tornWrite` does exactly that.)
//
// What can go wrong is injected per handle, with rules (or drawn for every
// I/O no rule matches from the handle's `faultSource`, as the simulator does):
//
//     let id = device.inject(.timeoutAfterWrite, on: .writes(overlapping: 512..<1024), count: .once)
//     device.remove(id); device.clearFaults()
//
// A rule has a fault, an IOFilter (reads, writes or any; optionally only I/O
// overlapping a byte range) and a count (.once, .times(n), .always). Each
// issued I/O meets at most one fault: the most recently injected rule that
// matches it and has count left. Its count is consumed when it fires; a rule
// whose count is spent disappears. Rules of one handle never affect another
// handle onto the same storage: that is how one host is cut off, slowed down
// or made to fail while the others carry on.
//
// The faults: what the caller sees, when, and what lands on the disk.
//
// - .error(errno): the caller gets .ioFailed with that errno at once; nothing
//   is read or written. (A real EIO on a write may have landed part of it;
//   `.tornWrite` is that case. Callers must treat a failed write as
//   possibly landed.)
// - .detached: the same as .error(EIO), worded as a host that has lost its
//   path to the device. Inject it `on: .any, count: .always` to cut a host off.
// - .latency(d): the I/O completes after d on the device's clock. A read
//   returns the bytes as they are at its completion; a write lands at issue +
//   d. If d ≥ ioTimeout the caller gives up at the deadline (issue +
//   ioTimeout) with .ioTimeout, and a write still lands at issue + d: an I/O
//   slower than its deadline.
// - .timeoutAfterWrite: "timed out but landed". A write lands at once; the
//   caller waits until the deadline and gets .ioTimeout. On a read it is the
//   same as .timeoutWithoutWrite.
// - .timeoutWithoutWrite: the caller waits until the deadline and gets
//   .ioTimeout; nothing lands.
// - .hang: the device never answers. The caller waits until the deadline and
//   gets .ioTimeout; nothing lands, ever. Seen by the caller it is
//   .timeoutWithoutWrite; it says "the device stopped answering" in a test
//   and, unlike the timeouts, insists on a clock.
// - .lateWrite(after: a): the caller waits until the deadline and gets
//   .ioTimeout; the write lands at deadline + a, after the caller has given up
//   (and perhaps retried, or moved on to a later ballot). On a read it is the
//   same as .timeoutWithoutWrite.
// - .tornWrite(landedSectors: k): the first k sectors of the write land (all
//   of them if the write is shorter), the rest do not; the caller gets
//   .ioFailed EIO at once. Never matches a read: a read passes such a rule by
//   without consuming it.
//
// Time. Waits happen on the handle's clock (a ManualClock in tests), measured
// from the instant the I/O was issued; the deadline is issue + ioTimeout.
// .latency, .hang and .lateWrite need a clock: injecting them on a handle
// without one is a programmer error (precondition). Without a clock, the
// timeouts throw at once: there is no time to pass. Writes that land later
// than they were issued wait in the storage and land at the first access to
// it at or after their time (see MemoryStorage), which no test can tell apart
// from landing exactly at that time.
//
// Cancellation. If the caller's task is cancelled while an I/O waits on the
// clock, the caller gets CancellationError at once. A write that was to land
// (.latency, .timeoutAfterWrite, .lateWrite) still lands at its time: once
// issued, a write is not called back, as on a real device.
//
// Write ordering. Writes through one handle to overlapping sectors land in
// the order they were issued, as DirectDevice guarantees on a real device: a
// write that overlaps an earlier write of the same handle which has not
// landed yet (its caller gave up on it: .latency beyond the deadline,
// .lateWrite, .hang) waits until that one lands; if that is not before its
// own deadline, it times out and does not land. A hung write therefore
// blocks its sectors for that handle for good. Without this, a host's own
// stale write could overwrite its newer one (a dblock going back to an
// older ballot), which Disk Paxos does not allow.
//
// What this means for callers (the engine): after .ioTimeout a write may have
// landed, may land later, or may never land; after .ioFailed a write may have
// landed in part, sector by sector; a timed-out or failed read says nothing
// about the disk. Only a write that returned is known to be on the disk.
//
// Not modelled: silent corruption (bit rot, misdirected writes: corrupt bytes
// directly with MemoryStorage.poke), reads of a torn sector (sectors are
// atomic), reordering of the sectors of one write, and what a crashing host
// leaves behind (the simulator models that with .tornWrite and .lateWrite).

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization
import TenureCore

/// An in-memory ``BlockDevice`` with injectable faults, for unit tests and
/// the deterministic simulator. The fault model is written at the top of
/// MemoryDevice.swift.
///
/// A device is a handle onto a ``MemoryStorage``: several handles onto one
/// storage are several hosts sharing one disk, each with its own fault rules,
/// statistics and clock.
public final class MemoryDevice: BlockDevice {
    /// How many recent I/Os ``Statistics/recent`` keeps by default.
    public static let defaultLogCapacity = 1024
    /// sanlock's default io_timeout.
    public static let defaultIOTimeout: Duration = .seconds(10)

    public let path: String
    /// The shared bytes this handle reads and writes.
    public let storage: MemoryStorage
    /// The clock that faults wait on; `nil` if no fault needs time.
    public let clock: (any MonotonicClock)?
    /// The deadline of every I/O: a timed-out I/O fails this long after it was issued.
    public let ioTimeout: Duration
    /// How many recent I/Os ``Statistics/recent`` keeps.
    public let logCapacity: Int

    public var sectorSize: SectorSize { storage.sectorSize }
    public var sizeBytes: UInt64 { storage.sizeBytes }

    private let state: Mutex<State>

    /// A device on a fresh zero-filled storage of its own.
    public convenience init(path: String = "mem", sectorSize: SectorSize = .bytes512, sizeBytes: UInt64,
                            clock: (any MonotonicClock)? = nil, ioTimeout: Duration = MemoryDevice.defaultIOTimeout,
                            logCapacity: Int = MemoryDevice.defaultLogCapacity) {
        self.init(storage: MemoryStorage(sectorSize: sectorSize, sizeBytes: sizeBytes), path: path,
                  clock: clock, ioTimeout: ioTimeout, logCapacity: logCapacity)
    }

    /// Another handle onto `storage`: what one more host sharing the disk sees.
    /// Draws a fault (or nil) for an I/O that no rule matched: the
    /// simulator's random fault mix. Called once per issued I/O, in issue order.
    public typealias FaultSource = @Sendable (_ kind: IOKind, _ offset: UInt64, _ length: Int) -> Fault?

    private let faultSource: FaultSource?

    /// - Parameter faultSource: consulted for every issued I/O that no
    ///   injected rule matches; what it returns is met like a rule's fault.
    public init(storage: MemoryStorage, path: String = "mem", clock: (any MonotonicClock)? = nil,
                ioTimeout: Duration = MemoryDevice.defaultIOTimeout, logCapacity: Int = MemoryDevice.defaultLogCapacity,
                faultSource: FaultSource? = nil) {
        precondition(ioTimeout > .zero, "ioTimeout must be positive")
        precondition(logCapacity >= 0, "logCapacity must not be negative")
        self.storage = storage
        self.path = path
        self.clock = clock
        self.ioTimeout = ioTimeout
        self.logCapacity = logCapacity
        self.faultSource = faultSource
        self.state = Mutex(State(log: RecordRing(capacity: logCapacity)))
    }

    // MARK: Faults

    /// What goes wrong with an I/O that a rule matches. See the fault model
    /// at the top of MemoryDevice.swift.
    public enum Fault: Sendable, Hashable, CustomStringConvertible {
        /// `.ioFailed` with this errno, at once; nothing read or written.
        case error(Int32)
        /// Completes after this long; past `ioTimeout`, the caller times out
        /// at the deadline and a write lands when the latency has passed.
        case latency(Duration)
        /// A write lands; the caller gets `.ioTimeout` at the deadline.
        case timeoutAfterWrite
        /// Nothing lands; the caller gets `.ioTimeout` at the deadline.
        case timeoutWithoutWrite
        /// The device never answers: `.ioTimeout` at the deadline, nothing lands.
        case hang
        /// `.ioTimeout` at the deadline; the write lands `after` past the deadline.
        case lateWrite(after: Duration)
        /// The first `landedSectors` sectors land, the rest do not; `.ioFailed` EIO.
        case tornWrite(landedSectors: Int)
        /// The host has lost the device: `.ioFailed` EIO.
        case detached

        var needsClock: Bool {
            switch self {
            case .latency, .hang, .lateWrite: true
            case .error, .timeoutAfterWrite, .timeoutWithoutWrite, .tornWrite, .detached: false
            }
        }

        var appliesToReads: Bool {
            if case .tornWrite = self { return false }
            return true
        }

        public var description: String {
            switch self {
            case .error(let errno): "error(errno \(errno))"
            case .latency(let d): "latency(\(d))"
            case .timeoutAfterWrite: "timeoutAfterWrite"
            case .timeoutWithoutWrite: "timeoutWithoutWrite"
            case .hang: "hang"
            case .lateWrite(let after): "lateWrite(after: \(after))"
            case .tornWrite(let k): "tornWrite(landedSectors: \(k))"
            case .detached: "detached"
            }
        }
    }

    /// Read or write.
    public enum IOKind: Sendable, Hashable {
        case read, write
    }

    /// Which I/Os a fault rule applies to.
    public struct IOFilter: Sendable, Hashable {
        /// Reads or writes only; `nil` for both.
        public var kind: IOKind?
        /// Only I/Os whose bytes overlap this range; `nil` for anywhere.
        public var range: Range<UInt64>?

        public init(kind: IOKind? = nil, overlapping range: Range<UInt64>? = nil) {
            self.kind = kind
            self.range = range
        }

        public static let any = IOFilter()
        public static let reads = IOFilter(kind: .read)
        public static let writes = IOFilter(kind: .write)
        public static func any(overlapping range: Range<UInt64>) -> IOFilter { IOFilter(overlapping: range) }
        public static func reads(overlapping range: Range<UInt64>) -> IOFilter { IOFilter(kind: .read, overlapping: range) }
        public static func writes(overlapping range: Range<UInt64>) -> IOFilter { IOFilter(kind: .write, overlapping: range) }

        /// Whether an I/O of `kind` on `length` bytes at `offset` is one of these.
        public func matches(_ kind: IOKind, offset: UInt64, length: Int) -> Bool {
            if let k = self.kind, k != kind { return false }
            if let range, !range.overlaps(offset..<(offset + UInt64(length))) { return false }
            return true
        }
    }

    /// How many times a rule fires before it disappears.
    public enum FaultCount: Sendable, Hashable {
        case once
        case times(Int)
        case always
    }

    /// Names an injected rule, for ``remove(_:)``.
    public struct FaultID: Sendable, Hashable {
        let rawValue: Int
    }

    /// An injected rule as it stands: `remaining` counts down as it fires.
    public struct FaultRule: Sendable, Hashable {
        public let id: FaultID
        public let fault: Fault
        public let filter: IOFilter
        public let remaining: FaultCount
    }

    /// Adds a rule: `fault` for the next I/Os that `filter` matches, `count`
    /// times. The newest matching rule wins. Faults that wait (`.latency`,
    /// `.hang`, `.lateWrite`) need the device to have a clock.
    @discardableResult
    public func inject(_ fault: Fault, on filter: IOFilter = .any, count: FaultCount = .always) -> FaultID {
        precondition(clock != nil || !fault.needsClock, "\(fault) waits on a clock; give the MemoryDevice one")
        switch fault {
        case .error(let errno): precondition(errno > 0, "an injected errno must be positive")
        case .latency(let d): precondition(d >= .zero, "latency must not be negative")
        case .lateWrite(let after): precondition(after >= .zero, "a late write cannot land before its deadline")
        case .tornWrite(let k): precondition(k >= 0, "landedSectors must not be negative")
        case .timeoutAfterWrite, .timeoutWithoutWrite, .hang, .detached: break
        }
        let remaining: Int?
        switch count {
        case .once: remaining = 1
        case .times(let n):
            precondition(n >= 1, "a fault must fire at least once")
            remaining = n
        case .always: remaining = nil
        }
        return state.withLock { s in
            let id = FaultID(rawValue: s.nextFaultID)
            s.nextFaultID += 1
            s.rules.append(Rule(id: id, fault: fault, filter: filter, remaining: remaining))
            return id
        }
    }

    /// Removes one rule; a no-op if it has already been spent or removed.
    public func remove(_ id: FaultID) {
        state.withLock { s in s.rules.removeAll { $0.id == id } }
    }

    /// Removes every rule: the device is healthy again.
    public func clearFaults() {
        state.withLock { s in s.rules.removeAll() }
    }

    /// The rules still in force, oldest first.
    public var faultRules: [FaultRule] {
        state.withLock { s in
            s.rules.map { FaultRule(id: $0.id, fault: $0.fault, filter: $0.filter,
                                    remaining: $0.remaining.map { .times($0) } ?? .always) }
        }
    }

    // MARK: Statistics

    /// How an issued I/O ended, as far as its caller is concerned.
    public enum IOOutcome: Sendable, Hashable {
        /// The caller is still waiting.
        case inFlight
        case completed
        /// `.ioFailed` with this errno.
        case failed(errno: Int32)
        /// `.ioTimeout`.
        case timedOut
        /// The caller's task was cancelled while waiting.
        case cancelled
    }

    /// One issued I/O.
    public struct IORecord: Sendable, Hashable, CustomStringConvertible {
        /// Issue order on this handle, from 0; never reset.
        public let sequence: UInt64
        public let kind: IOKind
        public let offset: UInt64
        public let length: Int
        /// The clock's time at issue, if the device has a clock.
        public let issuedAt: MonotonicInstant?
        /// The fault the I/O met, if any.
        public let fault: Fault?
        public internal(set) var outcome: IOOutcome

        public var description: String {
            "#\(sequence) \(kind) \(length)@\(offset)\(fault.map { " [\($0)]" } ?? ""): \(outcome)"
        }
    }

    /// Counts of issued I/Os (those that passed validation, faulted or not)
    /// since the device was created or ``resetStatistics()``.
    public struct Statistics: Sendable, Hashable {
        public var reads = 0
        public var writes = 0
        public var sectorsRead = 0
        public var sectorsWritten = 0
        public var bytesRead = 0
        public var bytesWritten = 0
        /// Outcomes of the I/Os issued since the reset that have finished.
        public var completed = 0
        public var failed = 0
        public var timedOut = 0
        public var cancelled = 0
        /// I/Os that met a fault.
        public var faulted = 0
        /// The last ``MemoryDevice/logCapacity`` issued I/Os, oldest first.
        public var recent: [IORecord] = []

        /// Reads plus writes.
        public var ios: Int { reads + writes }
    }

    /// A copy of the counters and the recent-I/O log.
    public var statistics: Statistics {
        state.withLock { s in
            var stats = s.stats
            stats.recent = s.log.ordered
            return stats
        }
    }

    /// Zeroes the counters and empties the log. I/Os still in flight finish
    /// without being counted.
    public func resetStatistics() {
        state.withLock { s in
            s.stats = Statistics()
            s.log.removeAll()
            s.epoch += 1
        }
    }

    // MARK: BlockDevice

    public func read(at offset: UInt64, length: Int) async throws -> [UInt8] {
        try validate(offset: offset, length: length)
        let io = try issue(.read, offset: offset, length: length)
        return try await finishing(io) {
            switch io.fault {
            case nil:
                return storage.read(at: offset, length: length)
            case .error(let errno):
                throw failure(io, errno: errno, "injected error")
            case .detached:
                throw failure(io, errno: EIO, "the host is detached from the device (injected)")
            case .latency(let d) where d < ioTimeout:
                try await sleep(until: io.issuedAt! + d)
                return storage.read(at: offset, length: length)
            case .latency, .timeoutAfterWrite, .timeoutWithoutWrite, .hang, .lateWrite:
                try await waitForDeadline(io)
                throw timeout(io)
            case .tornWrite:
                preconditionFailure("a tornWrite rule never matches a read")
            }
        }
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) async throws {
        try validate(offset: offset, length: bytes.count)
        let io = try issue(.write, offset: offset, length: bytes.count)
        let range = offset..<(offset + UInt64(bytes.count))
        state.withLock { $0.writesRunning += 1 }
        defer { state.withLock { $0.writesRunning -= 1 } }
        try await finishing(io) {
            try await waitForEarlierWrites(io, overlapping: range)
            defer { recordOutstanding(io, range: range) }
            switch io.fault {
            case nil:
                storage.write(bytes, at: offset)
            case .error(let errno):
                throw failure(io, errno: errno, "injected error")
            case .detached:
                throw failure(io, errno: EIO, "the host is detached from the device (injected)")
            case .latency(let d):
                storage.schedule(bytes, at: offset, landsAt: io.issuedAt! + d, on: clock!)
                if d < ioTimeout {
                    try await sleep(until: io.issuedAt! + d)
                    return
                }
                try await waitForDeadline(io)
                throw timeout(io)
            case .timeoutAfterWrite:
                storage.write(bytes, at: offset)
                try await waitForDeadline(io)
                throw timeout(io)
            case .timeoutWithoutWrite, .hang:
                try await waitForDeadline(io)
                throw timeout(io)
            case .lateWrite(let after):
                storage.schedule(bytes, at: offset, landsAt: io.issuedAt! + ioTimeout + after, on: clock!)
                try await waitForDeadline(io)
                throw timeout(io)
            case .tornWrite(let landedSectors):
                let landed = min(landedSectors * sectorSize.bytes, bytes.count)
                if landed > 0 { storage.write(Array(bytes[..<landed]), at: offset) }
                throw failure(io, errno: EIO, "injected torn write, \(landed) of \(bytes.count) bytes landed")
            }
        }
    }

    /// A write whose caller still waits, or one it gave up on that is still
    /// to land (a hung one never lands, and counts forever).
    public var writesMayStillLand: Bool {
        let now = clock?.now()
        return state.withLock { s in
            s.writesRunning > 0 || s.outstanding.contains { write in
                guard let landsAt = write.landsAt else { return true }
                return now.map { landsAt > $0 } ?? true
            }
        }
    }

    /// Refuses further I/O with `.deviceClosed`. I/O already issued finishes
    /// as it would have.
    public func close() async {
        state.withLock { s in s.closed = true }
    }

    // MARK: Issuing and finishing

    private struct Rule {
        let id: FaultID
        let fault: Fault
        let filter: IOFilter
        /// `nil` for always.
        var remaining: Int?
    }

    private struct State {
        var closed = false
        /// Oldest first; matched newest first.
        var rules: [Rule] = []
        var nextFaultID = 0
        var stats = Statistics()
        var log: RecordRing
        var nextSequence: UInt64 = 0
        /// Bumped by resetStatistics, so I/Os issued before it are not counted after it.
        var epoch = 0
        /// Writes of this handle that had not landed when their caller
        /// returned (gave up): byte range and landing time, nil for never.
        var outstanding: [(range: Range<UInt64>, landsAt: MonotonicInstant?)] = []
        /// Writes whose caller still waits.
        var writesRunning = 0

        /// The fault the newest matching rule gives this I/O, consuming one of its count.
        mutating func takeFault(_ kind: IOKind, offset: UInt64, length: Int) -> Fault? {
            for index in rules.indices.reversed() {
                let rule = rules[index]
                guard rule.filter.matches(kind, offset: offset, length: length),
                      kind == .write || rule.fault.appliesToReads else { continue }
                if let remaining = rule.remaining {
                    if remaining <= 1 { rules.remove(at: index) } else { rules[index].remaining = remaining - 1 }
                }
                return rule.fault
            }
            return nil
        }
    }

    private struct Issued: Sendable, CustomStringConvertible {
        let sequence: UInt64
        let epoch: Int
        let kind: IOKind
        let offset: UInt64
        let length: Int
        let issuedAt: MonotonicInstant?
        let fault: Fault?

        var description: String {
            "\(kind == .read ? "Read" : "Write") of \(length) bytes at offset \(offset)"
        }
    }

    /// Counts and logs an I/O that passed validation and picks its fault.
    private func issue(_ kind: IOKind, offset: UInt64, length: Int) throws -> Issued {
        let issuedAt = clock?.now()
        let sectors = length / sectorSize.bytes
        let issued: Issued? = state.withLock { s in
            guard !s.closed else { return nil }
            var fault = s.takeFault(kind, offset: offset, length: length)
            if fault == nil, let faultSource {
                fault = faultSource(kind, offset, length)
                precondition(clock != nil || !(fault?.needsClock ?? false), "\(fault!) waits on a clock; give the MemoryDevice one")
                if case .tornWrite? = fault, kind == .read { fault = nil }
            }
            let io = Issued(sequence: s.nextSequence, epoch: s.epoch, kind: kind, offset: offset,
                            length: length, issuedAt: issuedAt, fault: fault)
            s.nextSequence += 1
            switch kind {
            case .read:
                s.stats.reads += 1
                s.stats.sectorsRead += sectors
                s.stats.bytesRead += length
            case .write:
                s.stats.writes += 1
                s.stats.sectorsWritten += sectors
                s.stats.bytesWritten += length
            }
            if fault != nil { s.stats.faulted += 1 }
            s.log.append(IORecord(sequence: io.sequence, kind: kind, offset: offset, length: length,
                                  issuedAt: issuedAt, fault: fault, outcome: .inFlight))
            return io
        }
        guard let issued else {
            throw TenureError(.deviceClosed, "\(kind == .read ? "Read" : "Write") of \(length) bytes at offset \(offset) on \(path) after it was closed.")
        }
        return issued
    }

    /// Runs an issued I/O's body and records how it ended.
    private func finishing<T>(_ io: Issued, _ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            record(io, .completed)
            return result
        } catch let error as TenureError {
            record(io, error.code == .ioTimeout ? .timedOut : .failed(errno: error.errno ?? EIO))
            throw error
        } catch {
            record(io, .cancelled)
            throw error
        }
    }

    private func record(_ io: Issued, _ outcome: IOOutcome) {
        state.withLock { s in
            s.log.update(sequence: io.sequence, outcome: outcome)
            guard io.epoch == s.epoch else { return }
            switch outcome {
            case .inFlight: break
            case .completed: s.stats.completed += 1
            case .failed: s.stats.failed += 1
            case .timedOut: s.stats.timedOut += 1
            case .cancelled: s.stats.cancelled += 1
            }
        }
    }

    /// Write ordering: a write waits for every earlier write of this handle
    /// to the same sectors that has not landed yet (one the caller gave up
    /// on). If that is not before its own deadline, it times out without
    /// landing. `nil` in `outstanding` means never (a hung write).
    private func waitForEarlierWrites(_ io: Issued, overlapping range: Range<UInt64>) async throws {
        guard let clock, let issuedAt = io.issuedAt else { return }
        let now = clock.now()
        let blockers = state.withLock { s -> [MonotonicInstant?] in
            s.outstanding.removeAll { $0.landsAt.map { $0 <= now } ?? false }
            return s.outstanding.filter { $0.range.overlaps(range) }.map(\.landsAt)
        }
        guard !blockers.isEmpty else { return }
        let deadline = issuedAt + ioTimeout
        if blockers.contains(where: { $0 == nil }) || blockers.contains(where: { $0! >= deadline }) {
            try await waitForDeadline(io)
            throw TenureError(.ioTimeout, "\(io) on \(path) did not complete within its \(ioTimeout) deadline: an earlier write to the same sectors has not completed.")
        }
        try await sleep(until: blockers.map { $0! }.max()!)
    }

    /// Remembers a write of this handle that has not landed when its caller returns.
    private func recordOutstanding(_ io: Issued, range: Range<UInt64>) {
        guard let clock, let issuedAt = io.issuedAt else { return }
        let landsAt: MonotonicInstant?
        switch io.fault {
        case .latency(let d): landsAt = issuedAt + d
        case .lateWrite(let after): landsAt = issuedAt + ioTimeout + after
        case .hang: landsAt = nil
        default: return
        }
        if let landsAt, landsAt <= clock.now() { return }
        state.withLock { $0.outstanding.append((range, landsAt)) }
    }

    private func sleep(until deadline: MonotonicInstant) async throws {
        try await clock!.sleep(until: deadline)
    }

    /// Waits until the I/O's deadline on the clock; without a clock, returns at once.
    private func waitForDeadline(_ io: Issued) async throws {
        guard let clock, let issuedAt = io.issuedAt else { return }
        try await clock.sleep(until: issuedAt + ioTimeout)
    }

    private func failure(_ io: Issued, errno: Int32, _ why: String) -> TenureError {
        TenureError(.ioFailed, "\(io) on \(path) failed: \(why) (errno \(errno)).", errno: errno)
    }

    private func timeout(_ io: Issued) -> TenureError {
        TenureError(.ioTimeout, "\(io) on \(path) did not complete within its \(ioTimeout) deadline (injected \(io.fault.map(String.init(describing:)) ?? "fault")).")
    }
}

/// The last `capacity` I/O records, in a ring so logging costs O(1).
struct RecordRing: Sendable {
    let capacity: Int
    private var records: [MemoryDevice.IORecord] = []
    /// Index of the oldest record once the ring is full; 0 before.
    private var head = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ record: MemoryDevice.IORecord) {
        guard capacity > 0 else { return }
        if records.count < capacity {
            records.append(record)
        } else {
            records[head] = record
            head = (head + 1) % capacity
        }
    }

    /// Sets the outcome of the record with `sequence`, if it is still kept.
    /// Records are appended with consecutive sequences, so its place is known.
    mutating func update(sequence: UInt64, outcome: MemoryDevice.IOOutcome) {
        guard !records.isEmpty else { return }
        let oldest = records[head].sequence
        guard sequence >= oldest, sequence - oldest < UInt64(records.count) else { return }
        records[(head + Int(sequence - oldest)) % records.count].outcome = outcome
    }

    var ordered: [MemoryDevice.IORecord] {
        Array(records[head...] + records[..<head])
    }

    mutating func removeAll() {
        records.removeAll()
        head = 0
    }
}
