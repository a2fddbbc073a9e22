import TenureCore

/// sanlock's resource index ("rindex"): a directory of resource leases that
/// lets a program find a lease by name instead of keeping its offset.
///
/// It takes two areas of one geometry, followed by the leases it lists:
///
/// | area | holds |
/// |---|---|
/// | `rx` | sector 0: the header; sectors 1…: 64-byte entries |
/// | `rx + align` | the paxos lease `rindex_lease` that guards changes to the index |
/// | `rx + (2 + i) · align` | the resource lease entry `i` describes |
///
/// Entry `i` is at byte `sector + 64 · i` of the index, and names the lease
/// at `rx + (2 + i) · align`; a zero entry is free. The header carries no
/// checksum: its magic, version, lockspace name and own offset are checked.
public struct ResourceIndexHeader: Sendable, Equatable {
    /// Where the header's own fields lie, pinned by the layout tests.
    public static let encodedBytes = 80
    static let maxResourcesOffset = 16
    static let offsetOffset = 24
    static let lockspaceOffset = 32

    public var geometry: LeaseGeometry
    /// Entries searched and used; at most ``ResourceIndexLayout/capacity``.
    public var maxResources: Int
    /// The header's own place on the device (sanlock's rx_offset).
    public var offset: UInt64
    public var lockspace: LeaseName

    public init(geometry: LeaseGeometry, maxResources: Int, offset: UInt64, lockspace: LeaseName) {
        self.geometry = geometry
        self.maxResources = maxResources
        self.offset = offset
        self.lockspace = lockspace
    }

    /// The header's flag for each area size (RHF_ALIGN_*; not the leader's).
    public static func alignFlag(_ alignment: Alignment) -> UInt32 {
        switch alignment {
        case .oneMiB: 0x1
        case .twoMiB: 0x2
        case .fourMiB: 0x4
        case .eightMiB: 0x8
        }
    }

    static func alignment(in flags: UInt32) -> Alignment? {
        if flags & 0x1 != 0 { return .oneMiB }
        if flags & 0x2 != 0 { return .twoMiB }
        if flags & 0x4 != 0 { return .fourMiB }
        if flags & 0x8 != 0 { return .eightMiB }
        return nil
    }

    /// The header as sector 0 of the index holds it.
    public func encodedSector() -> [UInt8] {
        var w = ByteWriter(count: geometry.sectorSize.bytes)
        w.put(Magic.resourceIndex, at: 0)
        w.put(FormatVersion.resourceIndex, at: 4)
        w.put(Self.alignFlag(geometry.alignment), at: 8)
        w.put(UInt32(geometry.sectorSize.bytes), at: 12)
        w.put(UInt32(maxResources), at: Self.maxResourcesOffset)
        w.put(offset, at: Self.offsetOffset)
        w.put(lockspace, at: Self.lockspaceOffset)
        return w.bytes
    }

    /// Reads and checks a header found at `offset` for `lockspace` (nil:
    /// any). Each refusal says what was found and where.
    public init(decoding bytes: ArraySlice<UInt8>, at offset: UInt64, lockspace expected: LeaseName?, place: String) throws {
        guard bytes.count >= Self.encodedBytes else {
            throw TenureError(.badRecord, "The resource index header at \(place) is cut short (\(bytes.count) bytes).")
        }
        let r = ByteReader(bytes)
        let magic = r.u32(at: 0)
        guard magic == Magic.resourceIndex else {
            throw TenureError(.badMagic, "No resource index at \(place): magic 0x\(String(magic, radix: 16)), not 0x\(String(Magic.resourceIndex, radix: 16)).",
                              remedy: "Check the path and offset, or format one there (`sanlock client format -x LOCKSPACE:PATH:OFFSET`).")
        }
        let version = r.u32(at: 4)
        guard FormatVersion.sameMajor(version, FormatVersion.resourceIndex) else {
            throw TenureError(.unsupportedVersion, "The resource index at \(place) has version 0x\(String(version, radix: 16)); this reads major 0x\(String(FormatVersion.resourceIndex >> 16, radix: 16)).")
        }
        guard let alignment = Self.alignment(in: r.u32(at: 8)), let sector = SectorSize(rawValue: Int(r.u32(at: 12))),
              let geometry = try? LeaseGeometry(sectorSize: sector, alignment: alignment) else {
            throw TenureError(.invalidGeometry, "The resource index at \(place) declares flags 0x\(String(r.u32(at: 8), radix: 16)) and \(r.u32(at: 12))-byte sectors, not a lease layout.")
        }
        let name = LeaseName(diskBytes: r.nameBytes(at: Self.lockspaceOffset))
        if let expected, name != expected {
            throw TenureError(.nameMismatch, "The resource index at \(place) belongs to lockspace \"\(name)\", not \"\(expected)\".",
                              remedy: "Name the lockspace the index was formatted for.")
        }
        let recorded = r.u64(at: Self.offsetOffset)
        guard recorded == offset else {
            throw TenureError(.badRecord, "The resource index at \(place) records its offset as \(recorded): it was copied or the offset is wrong.",
                              remedy: "Give the offset it was formatted at, or format it again.")
        }
        let capacity = ResourceIndexLayout.capacity(of: geometry)
        let declared = Int(r.u32(at: Self.maxResourcesOffset))
        self.init(geometry: geometry, maxResources: declared == 0 ? capacity : min(declared, capacity), offset: offset, lockspace: name)
    }
}

/// One entry of the index: the name of the lease at `resourceOffset`.
public struct ResourceIndexEntry: Sendable, Equatable {
    public static let encodedBytes = 64
    static let nameOffset = 16

    public var resourceOffset: UInt64
    public var name: LeaseName

    public init(resourceOffset: UInt64, name: LeaseName) {
        self.resourceOffset = resourceOffset
        self.name = name
    }

    public static let free = ResourceIndexEntry(resourceOffset: 0, name: .empty)
    /// sanlock's test: no offset and no name.
    public var isFree: Bool { resourceOffset == 0 && name.isEmpty }

    public init(decoding bytes: ArraySlice<UInt8>) {
        let r = ByteReader(bytes)
        self.init(resourceOffset: r.u64(at: 0), name: LeaseName(diskBytes: r.nameBytes(at: Self.nameOffset)))
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: Self.encodedBytes)
        w.put(resourceOffset, at: 0)
        w.put(name, at: Self.nameOffset)
        return w.bytes
    }
}

/// Where things are in an index of a given header: pure arithmetic.
public struct ResourceIndexLayout: Sendable, Equatable {
    public let header: ResourceIndexHeader

    public init(_ header: ResourceIndexHeader) { self.header = header }

    /// Entries a geometry's index area can hold (sanlock's limits: the
    /// entries fill the area after the header sector, to a round number).
    public static func capacity(of geometry: LeaseGeometry) -> Int {
        switch (geometry.sectorSize, geometry.alignment) {
        case (.bytes512, _), (.bytes4096, .oneMiB): 16_000
        case (.bytes4096, .twoMiB): 32_000
        case (.bytes4096, .fourMiB): 64_000
        case (.bytes4096, .eightMiB): 128_000
        }
    }

    /// The entries a new index uses when its caller names none: few enough
    /// that a search reads little.
    public static let defaultMaxResources = 4096

    var align: UInt64 { UInt64(header.geometry.alignment.bytes) }
    var sector: Int { header.geometry.sectorSize.bytes }

    /// The paxos lease guarding the index, in the area after it.
    public var indexLeaseOffset: UInt64 { header.offset + align }
    /// The name that lease has on disk.
    public static let indexLeaseName: LeaseName = "rindex_lease"

    /// The first resource lease the index describes.
    public var firstResourceOffset: UInt64 { header.offset + 2 * align }

    /// Byte of entry `i` within the index area.
    public func entryOffset(_ i: Int) -> Int { sector + i * ResourceIndexEntry.encodedBytes }

    /// The lease entry `i` describes.
    public func resourceOffset(ofEntry i: Int) -> UInt64 { firstResourceOffset + UInt64(i) * align }

    /// The entry that describes the lease at `offset`; refuses an offset
    /// that is not one of the index's lease areas.
    public func entry(forResourceAt offset: UInt64) throws -> Int {
        guard offset >= firstResourceOffset, (offset - firstResourceOffset) % align == 0,
              (offset - firstResourceOffset) / align < UInt64(header.maxResources) else {
            throw TenureError(.misaligned, "Offset \(offset) is not one of this index's lease areas (\(firstResourceOffset), then every \(align) bytes, \(header.maxResources) of them).",
                              remedy: "Give an offset the index lists (`lookup`), or leave it out.")
        }
        return Int((offset - firstResourceOffset) / align)
    }

    /// The sector of the index area holding entry `i`: the unit each change writes.
    public func sectorRange(ofEntry i: Int) -> Range<Int> {
        let start = entryOffset(i) / sector * sector
        return start..<(start + sector)
    }

    /// The entries of an index area read whole.
    public func entries(in area: [UInt8]) -> [ResourceIndexEntry] {
        (0..<header.maxResources).map { i in
            let at = entryOffset(i)
            return ResourceIndexEntry(decoding: area[at..<(at + ResourceIndexEntry.encodedBytes)])
        }
    }
}
