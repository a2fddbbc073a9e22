import TenureCore

/// A valid (sector size, align) pair and everything that follows from it:
/// how many hosts a lease area can hold and where each sector lies.
///
/// sanlock accepts exactly five pairs; Tenure accepts the same five:
///
/// | sector | align | max hosts |
/// |---|---|---|
/// | 512 | 1M | 2000 |
/// | 4096 | 1M | 250 |
/// | 4096 | 2M | 500 |
/// | 4096 | 4M | 1000 |
/// | 4096 | 8M | 2000 |
public struct LeaseGeometry: Hashable, Sendable, CustomStringConvertible {
    public let sectorSize: SectorSize
    public let alignment: Alignment

    /// The largest host id any lease area may hold (sanlock's DEFAULT_MAX_HOSTS).
    public static let absoluteMaxHosts = 2000

    /// The five pairs, in the order sanlock lists them.
    public static let all: [LeaseGeometry] = [
        LeaseGeometry(unchecked: .bytes512, .oneMiB),
        LeaseGeometry(unchecked: .bytes4096, .oneMiB),
        LeaseGeometry(unchecked: .bytes4096, .twoMiB),
        LeaseGeometry(unchecked: .bytes4096, .fourMiB),
        LeaseGeometry(unchecked: .bytes4096, .eightMiB),
    ]

    /// sanlock's layout for 512-byte sectors and 1M areas (regular files).
    public static let standard512 = all[0]

    private init(unchecked sectorSize: SectorSize, _ alignment: Alignment) {
        self.sectorSize = sectorSize
        self.alignment = alignment
    }

    /// Refuses pairs sanlock does not define, naming the valid ones.
    public init(sectorSize: SectorSize, alignment: Alignment) throws {
        let candidate = LeaseGeometry(unchecked: sectorSize, alignment)
        guard Self.all.contains(candidate) else {
            let valid = Self.all.map { "\($0.sectorSize)/\($0.alignment)" }.joined(separator: ", ")
            throw TenureError(
                .invalidGeometry,
                "Sector size \(sectorSize) with align \(alignment) is not a valid lease layout.",
                remedy: "Use one of: \(valid).")
        }
        self = candidate
    }

    /// The default align for a sector size: 1M for 512-byte sectors, 8M for
    /// 4096 (what sanlock assumes for leases written before align flags existed).
    public static func defaultFor(_ sectorSize: SectorSize) -> LeaseGeometry {
        sectorSize == .bytes512 ? all[0] : all[4]
    }

    /// Host ids in an area of this geometry run from 1 to this.
    public var maxHosts: Int {
        switch (sectorSize, alignment) {
        case (.bytes512, _): return 2000
        case (.bytes4096, .oneMiB): return 250
        case (.bytes4096, .twoMiB): return 500
        case (.bytes4096, .fourMiB): return 1000
        case (.bytes4096, .eightMiB): return 2000
        }
    }

    /// Sectors in one area.
    public var sectorsPerArea: Int { alignment.bytes / sectorSize.bytes }

    /// The align flag stored in a leader record's flags.
    public var alignFlag: UInt32 { LeaderFlags.alignFlag(for: alignment) }

    /// The geometry a leader record declares: its sector size and align flag,
    /// or the default align when no flag is set. Throws `.invalidGeometry`
    /// for anything else, naming where the record was read.
    public static func declared(by leader: LeaderRecord, at place: String) throws -> LeaseGeometry {
        guard let sector = SectorSize(rawValue: Int(leader.sectorSize)) else {
            throw TenureError(
                .invalidGeometry,
                "The lease at \(place) declares a sector size of \(leader.sectorSize) bytes; only 512 and 4096 exist.",
                remedy: "The record is damaged or not a lease; check the path and offset.")
        }
        guard let align = LeaderFlags.alignment(in: leader.flags) else { return defaultFor(sector) }
        do {
            return try LeaseGeometry(sectorSize: sector, alignment: align)
        } catch let error as TenureError {
            throw TenureError(error.code, "The lease at \(place) declares an invalid layout: \(error.message)",
                              remedy: "The record is damaged or was not written by sanlock or Tenure.")
        }
    }

    public var description: String { "\(sectorSize)/\(alignment)" }

    // MARK: Where things are inside an area

    /// Byte offset, from the start of a lockspace area, of host `id`'s delta lease.
    public func deltaLeaseOffset(of id: HostID) -> Int {
        precondition(id.rawValue >= 1 && id.rawValue <= UInt64(maxHosts), "host id \(id) outside 1...\(maxHosts)")
        return Int(id.rawValue - 1) * sectorSize.bytes
    }

    /// Byte offset, from the start of a resource area, of its request record.
    public var requestOffset: Int { sectorSize.bytes }

    /// Byte offset, from the start of a resource area, of host `id`'s dblock.
    public func dblockOffset(of id: HostID) -> Int {
        precondition(id.rawValue >= 1 && id.rawValue <= UInt64(maxHosts), "host id \(id) outside 1...\(maxHosts)")
        return Int(id.rawValue + 1) * sectorSize.bytes
    }

    /// Bytes to read for the leader, the request record and `numHosts` dblocks.
    public func resourceReadLength(numHosts: Int) -> Int {
        (numHosts + 2) * sectorSize.bytes
    }

    /// Checks that `id` is a usable host id for this geometry.
    public func validate(hostID id: HostID) throws {
        guard id.rawValue >= 1, id.rawValue <= UInt64(maxHosts) else {
            throw TenureError(
                .invalidArgument,
                "Host id \(id) is outside 1...\(maxHosts), the range a \(self) lease area holds.",
                remedy: "Use a host id from 1 to \(maxHosts).")
        }
    }

    /// Checks that an area at `offset` is aligned and fits in `deviceSize`.
    public func validate(areaOffset offset: UInt64, deviceSize: UInt64, path: String) throws {
        guard offset % UInt64(alignment.bytes) == 0 else {
            throw TenureError(
                .misaligned,
                "Offset \(offset) on \(path) is not a multiple of the \(alignment) lease area size.",
                remedy: "Use an offset that is a multiple of \(alignment.bytes) (e.g. \(offset / UInt64(alignment.bytes) * UInt64(alignment.bytes)) or \((offset / UInt64(alignment.bytes) + 1) * UInt64(alignment.bytes))).")
        }
        let end = offset.addingReportingOverflow(UInt64(alignment.bytes))
        guard !end.overflow, end.partialValue <= deviceSize else {
            throw TenureError(
                .outOfBounds,
                "A \(alignment) lease area at offset \(offset) ends past the end of \(path) (\(deviceSize) bytes).",
                remedy: "Use a smaller offset, or grow the file or volume to at least \(end.partialValue) bytes.")
        }
    }
}

/// Bits of a leader record's `flags` field.
public enum LeaderFlags {
    /// The lease is held only briefly (a shared acquire's exclusive step).
    public static let shortHold: UInt32 = 0x1
    static let align1M: UInt32 = 0x10
    static let align2M: UInt32 = 0x20
    static let align4M: UInt32 = 0x40
    static let align8M: UInt32 = 0x80
    static let alignMask: UInt32 = 0xF0

    public static func alignFlag(for a: Alignment) -> UInt32 {
        switch a {
        case .oneMiB: return align1M
        case .twoMiB: return align2M
        case .fourMiB: return align4M
        case .eightMiB: return align8M
        }
    }

    /// The align a flags word declares, nil when none is set. When several
    /// align bits are set, the smallest wins, as in sanlock.
    public static func alignment(in flags: UInt32) -> Alignment? {
        if flags & align1M != 0 { return .oneMiB }
        if flags & align2M != 0 { return .twoMiB }
        if flags & align4M != 0 { return .fourMiB }
        if flags & align8M != 0 { return .eightMiB }
        return nil
    }
}
