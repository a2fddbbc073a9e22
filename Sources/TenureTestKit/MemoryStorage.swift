import Synchronization
import TenureCore

/// The bytes of one simulated disk, shared by every ``MemoryDevice`` handle
/// opened on it.
///
/// A storage is what several hosts see as "the same LUN": each host gets its
/// own ``MemoryDevice`` (its own fault rules, statistics and clock) onto one
/// storage. The storage itself never fails; faults belong to the handles
/// (see the fault model in MemoryDevice.swift).
///
/// Besides the I/O the handles perform, a storage offers tests a way in that
/// is not I/O and is never counted: ``snapshot(_:)`` to look at bytes,
/// ``poke(_:at:)`` to corrupt them, and two guards for "nothing outside a
/// lease area is ever written": ``writtenRanges(outside:)`` (every sector a
/// handle wrote, even with unchanged bytes) and ``changedRanges(since:outside:)``
/// (every byte that differs from an earlier ``image()``).
///
/// Writes that land late (``MemoryDevice/Fault/lateWrite(after:)`` and long
/// ``MemoryDevice/Fault/latency(_:)``) wait here as pending writes. A pending
/// write lands at the first access to the storage (from any handle, or
/// `snapshot`, `poke`, `image`, the guards) at which its clock has reached its
/// landing time, before that access is served; pending writes due together
/// land in landing-time order. Since nothing can observe the bytes except
/// through such an access, this is indistinguishable from the write landing
/// exactly at its time.
///
/// Contents are sparse (never-written sectors read as zeros and take no
/// memory), so a storage may be as large as a real LUN.
public final class MemoryStorage: Sendable {
    /// Logical sector size of every handle onto this storage.
    public let sectorSize: SectorSize
    /// Size in bytes of every handle onto this storage.
    public let sizeBytes: UInt64

    private let state: Mutex<State>

    private struct State {
        var image: MemoryImage
        var pending: [PendingWrite] = []
        var nextPendingSequence: UInt64 = 0
        /// Sector indexes written through a handle since creation or the last
        /// `resetWriteTracking()`.
        var written: Set<UInt64> = []
    }

    private struct PendingWrite {
        var landsAt: MonotonicInstant
        var clock: any MonotonicClock
        var sequence: UInt64
        var offset: UInt64
        var bytes: [UInt8]
    }

    /// A zero-filled storage of `sizeBytes` bytes.
    public init(sectorSize: SectorSize = .bytes512, sizeBytes: UInt64) {
        self.sectorSize = sectorSize
        self.sizeBytes = sizeBytes
        self.state = Mutex(State(image: MemoryImage(sectorSize: sectorSize, sizeBytes: sizeBytes)))
    }

    // MARK: Inspecting and corrupting (tests only; never counted as I/O)

    /// The bytes in `range`, which may start and end anywhere inside the storage.
    public func snapshot(_ range: Range<UInt64>) -> [UInt8] {
        state.withLock { s in
            Self.landDueWrites(&s)
            return s.image.bytes(in: range)
        }
    }

    /// Overwrites bytes at any offset, as a test corrupting the disk would.
    /// Not a write through a handle: not counted, not tracked by
    /// ``writtenRanges(outside:)``, but visible to ``changedRanges(since:outside:)``.
    public func poke(_ bytes: [UInt8], at offset: UInt64) {
        state.withLock { s in
            Self.landDueWrites(&s)
            s.image.replace(at: offset, with: bytes)
        }
    }

    /// A copy of the whole contents, to compare against later. Cheap until
    /// the storage is written again (copy on write, sparse).
    public func image() -> MemoryImage {
        state.withLock { s in
            Self.landDueWrites(&s)
            return s.image
        }
    }

    // MARK: Guards

    /// Sector-aligned ranges written through any handle (including torn and
    /// late writes once they landed) since creation or the last
    /// ``resetWriteTracking()``, that are not entirely inside one of the
    /// `allowed` byte ranges. Coalesced and ascending; empty when every write
    /// stayed inside `allowed`.
    ///
    /// A write counts even if it left the bytes unchanged: rewriting a sector
    /// outside a lease area with its own contents is still a write there.
    public func writtenRanges(outside allowed: [Range<UInt64>] = []) -> [Range<UInt64>] {
        state.withLock { s in
            Self.landDueWrites(&s)
            let size = UInt64(sectorSize.bytes)
            var result = RangeAccumulator()
            for sector in s.written.sorted() {
                let range = (sector * size)..<((sector + 1) * size)
                if !isCovered(range, by: allowed) { result.append(range) }
            }
            return result.ranges
        }
    }

    /// Forgets which sectors were written, so ``writtenRanges(outside:)``
    /// looks only at what follows.
    public func resetWriteTracking() {
        state.withLock { s in
            Self.landDueWrites(&s)
            s.written.removeAll()
        }
    }

    /// Byte ranges whose contents differ from `baseline` and that lie outside
    /// every range in `allowed`. Coalesced and ascending.
    public func changedRanges(since baseline: MemoryImage, outside allowed: [Range<UInt64>] = []) -> [Range<UInt64>] {
        image().changedRanges(from: baseline, outside: allowed)
    }

    /// Whether any byte outside `allowed` differs from `baseline`.
    public func bytesChanged(outside allowed: [Range<UInt64>], since baseline: MemoryImage) -> Bool {
        !changedRanges(since: baseline, outside: allowed).isEmpty
    }

    /// Writes accepted by a handle that have not landed yet (their clock has
    /// not reached their landing time).
    public var pendingWriteCount: Int {
        state.withLock { s in
            Self.landDueWrites(&s)
            return s.pending.count
        }
    }

    // MARK: For handles

    /// Reads whole sectors; the handle has validated the range.
    func read(at offset: UInt64, length: Int) -> [UInt8] {
        state.withLock { s in
            Self.landDueWrites(&s)
            return s.image.bytes(in: offset..<(offset + UInt64(length)))
        }
    }

    /// Writes whole sectors at once; the handle has validated the range.
    func write(_ bytes: [UInt8], at offset: UInt64) {
        state.withLock { s in
            Self.landDueWrites(&s)
            Self.apply(bytes, at: offset, to: &s)
        }
    }

    /// Accepts a write that lands when `clock` reaches `landsAt`.
    func schedule(_ bytes: [UInt8], at offset: UInt64, landsAt: MonotonicInstant, on clock: any MonotonicClock) {
        state.withLock { s in
            Self.landDueWrites(&s)
            s.pending.append(PendingWrite(landsAt: landsAt, clock: clock, sequence: s.nextPendingSequence,
                                          offset: offset, bytes: bytes))
            s.nextPendingSequence += 1
            Self.landDueWrites(&s)
        }
    }

    private static func apply(_ bytes: [UInt8], at offset: UInt64, to s: inout State) {
        s.image.replace(at: offset, with: bytes)
        let size = UInt64(s.image.sectorSize.bytes)
        let first = offset / size
        let end = (offset + UInt64(bytes.count) + size - 1) / size
        for sector in first..<end { s.written.insert(sector) }
    }

    private static func landDueWrites(_ s: inout State) {
        guard !s.pending.isEmpty else { return }
        var due: [PendingWrite] = []
        s.pending.removeAll { p in
            let isDue = p.clock.now() >= p.landsAt
            if isDue { due.append(p) }
            return isDue
        }
        due.sort { ($0.landsAt, $0.sequence) < ($1.landsAt, $1.sequence) }
        for p in due { apply(p.bytes, at: p.offset, to: &s) }
    }
}

/// A point-in-time copy of a ``MemoryStorage``'s contents. Two images are
/// equal exactly when their bytes are.
public struct MemoryImage: Sendable, Equatable {
    public let sectorSize: SectorSize
    public let sizeBytes: UInt64
    /// Sector index → contents, for sectors that are not all zeros.
    /// Kept canonical (no all-zero entries) so `==` compares contents.
    private var sectors: [UInt64: [UInt8]] = [:]

    init(sectorSize: SectorSize, sizeBytes: UInt64) {
        self.sectorSize = sectorSize
        self.sizeBytes = sizeBytes
    }

    /// The bytes in `range`, anywhere inside the image.
    public func bytes(in range: Range<UInt64>) -> [UInt8] {
        precondition(range.upperBound <= sizeBytes, "range \(range) reaches past the end of a \(sizeBytes)-byte storage")
        var out = [UInt8](repeating: 0, count: Int(range.count))
        guard !range.isEmpty else { return out }
        let size = UInt64(sectorSize.bytes)
        out.withUnsafeMutableBytes { target in
            for sector in (range.lowerBound / size)...((range.upperBound - 1) / size) {
                guard let data = sectors[sector] else { continue }
                let sectorStart = sector * size
                let from = max(range.lowerBound, sectorStart)
                let to = min(range.upperBound, sectorStart + size)
                data.withUnsafeBytes { source in
                    let start = Int(from - sectorStart)
                    target.baseAddress!.advanced(by: Int(from - range.lowerBound))
                        .copyMemory(from: source.baseAddress!.advanced(by: start), byteCount: Int(to - from))
                }
            }
        }
        return out
    }

    /// Byte ranges whose contents differ between this image and `other` and
    /// that lie outside every range in `allowed`. Coalesced and ascending.
    public func changedRanges(from other: MemoryImage, outside allowed: [Range<UInt64>] = []) -> [Range<UInt64>] {
        precondition(sectorSize == other.sectorSize, "images of storages with different sector sizes")
        let size = UInt64(sectorSize.bytes)
        let zeros = [UInt8](repeating: 0, count: sectorSize.bytes)
        var result = RangeAccumulator()
        for sector in Set(sectors.keys).union(other.sectors.keys).sorted() {
            let mine = sectors[sector] ?? zeros
            let theirs = other.sectors[sector] ?? zeros
            guard mine != theirs else { continue }
            for i in 0..<sectorSize.bytes where mine[i] != theirs[i] {
                let at = sector * size + UInt64(i)
                if !allowed.contains(where: { $0.contains(at) }) { result.append(at..<(at + 1)) }
            }
        }
        return result.ranges
    }

    mutating func replace(at offset: UInt64, with bytes: [UInt8]) {
        precondition(offset <= sizeBytes && UInt64(bytes.count) <= sizeBytes - offset,
                     "\(bytes.count) bytes at \(offset) reach past the end of a \(sizeBytes)-byte storage")
        guard !bytes.isEmpty else { return }
        let size = UInt64(sectorSize.bytes)
        let end = offset + UInt64(bytes.count)
        for sector in (offset / size)...((end - 1) / size) {
            let sectorStart = sector * size
            let from = max(offset, sectorStart)
            let to = min(end, sectorStart + size)
            var data = sectors[sector] ?? [UInt8](repeating: 0, count: sectorSize.bytes)
            for at in from..<to {
                data[Int(at - sectorStart)] = bytes[Int(at - offset)]
            }
            sectors[sector] = data.allSatisfy { $0 == 0 } ? nil : data
        }
    }
}

/// Whether the union of `allowed` covers every byte of `range`.
func isCovered(_ range: Range<UInt64>, by allowed: [Range<UInt64>]) -> Bool {
    var cursor = range.lowerBound
    while cursor < range.upperBound {
        guard let next = allowed.filter({ $0.contains(cursor) }).map(\.upperBound).max() else { return false }
        cursor = next
    }
    return true
}

/// Collects ascending ranges, merging each with the previous when they touch.
struct RangeAccumulator {
    private(set) var ranges: [Range<UInt64>] = []

    mutating func append(_ range: Range<UInt64>) {
        if let last = ranges.last, last.upperBound >= range.lowerBound {
            ranges[ranges.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
        } else {
            ranges.append(range)
        }
    }
}
