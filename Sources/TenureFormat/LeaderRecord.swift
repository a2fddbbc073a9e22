import TenureCore

/// Which of the two lease kinds a leader record belongs to.
public enum LeaseKind: Sendable, CustomStringConvertible {
    /// A host's slot in a lockspace (delta lease).
    case delta
    /// A resource lease (Disk Paxos).
    case paxos

    public var magic: UInt32 { self == .delta ? Magic.deltaLease : Magic.paxosLease }
    public var version: UInt32 { self == .delta ? FormatVersion.deltaLease : FormatVersion.paxosLease }
    public var description: String { self == .delta ? "lockspace" : "resource" }
}

/// The leader record: the first 200 bytes of a delta lease sector and of
/// sector 0 of a resource area. Field by field, little-endian:
///
/// | offset | field | type |
/// |---|---|---|
/// | 0 | magic | u32 |
/// | 4 | version | u32 |
/// | 8 | flags | u32 |
/// | 12 | sector_size | u32 |
/// | 16 | num_hosts | u64 |
/// | 24 | max_hosts | u64 |
/// | 32 | owner_id | u64 |
/// | 40 | owner_generation | u64 |
/// | 48 | lver | u64 |
/// | 56 | space_name | 48 bytes |
/// | 104 | resource_name | 48 bytes |
/// | 152 | timestamp | u64 |
/// | 160 | unused | u64 |
/// | 168 | checksum | u32 (over bytes 0..<168) |
/// | 172 | unused | u16 |
/// | 174 | io_timeout | u16 |
/// | 176 | write_id | u64 |
/// | 184 | write_generation | u64 |
/// | 192 | write_timestamp | u64 |
public struct LeaderRecord: Hashable, Sendable {
    public static let encodedBytes = 200
    /// The checksum covers bytes 0..<168.
    public static let checksummedBytes = 168

    public var magic: UInt32
    public var version: UInt32
    public var flags: UInt32
    public var sectorSize: UInt32
    /// Resource: how many dblocks exist (host ids 1...numHosts). Lockspace: unused (0).
    public var numHosts: UInt64
    public var maxHosts: UInt64
    public var ownerID: HostID
    public var ownerGeneration: Generation
    public var lver: LeaseVersion
    public var spaceName: LeaseName
    /// Resource: the resource's name. Lockspace: the owning host's name.
    public var resourceName: LeaseName
    public var timestamp: DiskTimestamp
    /// Unused by sanlock (it writes 0 and never reads it back). In a delta
    /// lease Tenure keeps its ``joinIncarnation`` here.
    public var unused1: UInt64
    /// As stored; ``encoded()`` recomputes it.
    public var checksum: UInt32
    public var unused2: UInt16
    public var ioTimeout: IOTimeout
    public var writeID: HostID
    public var writeGeneration: Generation
    public var writeTimestamp: DiskTimestamp
    /// The checksum of bytes 0..<168 exactly as they were read, when the
    /// record was decoded. Damage in a name's NUL padding changes these bytes
    /// but not the decoded fields, so verification must use this. Not part
    /// of the record's equality.
    public var checksumOfBytesRead: UInt32? { bytesRead.checksum }
    var bytesRead = ReadChecksum(checksum: nil)

    /// A fresh record of `kind` with every other field zero.
    public init(kind: LeaseKind, geometry: LeaseGeometry, spaceName: LeaseName, resourceName: LeaseName) {
        magic = kind.magic
        version = kind.version
        flags = geometry.alignFlag
        sectorSize = UInt32(geometry.sectorSize.bytes)
        numHosts = 0
        maxHosts = 0
        ownerID = .none
        ownerGeneration = .zero
        lver = .zero
        self.spaceName = spaceName
        self.resourceName = resourceName
        timestamp = .free
        unused1 = 0
        checksum = 0
        unused2 = 0
        ioTimeout = IOTimeout(seconds: 0)
        writeID = .none
        writeGeneration = .zero
        writeTimestamp = .free
    }

    /// Decodes the fields as they are, without judging them; see ``verified(as:lockspace:resource:at:)``.
    /// `bytes` must hold at least ``encodedBytes``.
    public init<C: Collection>(decoding bytes: C) where C.Element == UInt8 {
        precondition(bytes.count >= Self.encodedBytes, "leader record needs \(Self.encodedBytes) bytes")
        let r = ByteReader(bytes)
        magic = r.u32(at: 0)
        version = r.u32(at: 4)
        flags = r.u32(at: 8)
        sectorSize = r.u32(at: 12)
        numHosts = r.u64(at: 16)
        maxHosts = r.u64(at: 24)
        ownerID = HostID(r.u64(at: 32))
        ownerGeneration = Generation(r.u64(at: 40))
        lver = LeaseVersion(r.u64(at: 48))
        spaceName = LeaseName(diskBytes: r.nameBytes(at: 56))
        resourceName = LeaseName(diskBytes: r.nameBytes(at: 104))
        timestamp = DiskTimestamp(r.u64(at: Self.timestampOffset))
        unused1 = r.u64(at: 160)
        checksum = r.u32(at: 168)
        unused2 = r.u16(at: 172)
        ioTimeout = IOTimeout(rawValue: r.u16(at: 174))
        writeID = HostID(r.u64(at: 176))
        writeGeneration = Generation(r.u64(at: 184))
        writeTimestamp = DiskTimestamp(r.u64(at: 192))
        bytesRead = ReadChecksum(checksum: LeaseChecksum.compute(r.slice(at: 0, count: Self.checksummedBytes)))
    }

    /// Whether the stored checksum matches the record's bytes (as read, when decoded).
    public var checksumMatches: Bool { checksum == (bytesRead.checksum ?? computedChecksum) }

    /// The 200 encoded bytes, with the checksum computed over bytes 0..<168.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(count: Self.encodedBytes)
        w.put(magic, at: 0)
        w.put(version, at: 4)
        w.put(flags, at: 8)
        w.put(sectorSize, at: 12)
        w.put(numHosts, at: 16)
        w.put(maxHosts, at: 24)
        w.put(ownerID.rawValue, at: 32)
        w.put(ownerGeneration.rawValue, at: 40)
        w.put(lver.rawValue, at: 48)
        w.put(spaceName, at: 56)
        w.put(resourceName, at: 104)
        w.put(timestamp.rawValue, at: Self.timestampOffset)
        w.put(unused1, at: 160)
        w.put(unused2, at: 172)
        w.put(ioTimeout.rawValue, at: 174)
        w.put(writeID.rawValue, at: 176)
        w.put(writeGeneration.rawValue, at: 184)
        w.put(writeTimestamp.rawValue, at: 192)
        w.put(LeaseChecksum.compute(w.bytes[0..<Self.checksummedBytes]), at: 168)
        return w.bytes
    }

    /// The checksum the stored fields should carry.
    public var computedChecksum: UInt32 {
        LeaseChecksum.compute(encoded()[0..<Self.checksummedBytes])
    }

    /// A copy with ``checksum`` set to the computed value (as if written and read back).
    public var sealed: LeaderRecord {
        var copy = self
        copy.checksum = computedChecksum
        copy.bytesRead = ReadChecksum(checksum: nil)
        return copy
    }

    /// A whole sector: this record, then `bitmap` at byte 256 when given, zeros elsewhere.
    public func encodedSector(_ sectorSize: SectorSize, bitmap: HostBitmap? = nil) -> [UInt8] {
        var sector = [UInt8](repeating: 0, count: sectorSize.bytes)
        sector.replaceSubrange(0..<Self.encodedBytes, with: encoded())
        if let bitmap {
            sector.replaceSubrange(HostBitmap.offsetInSector..<(HostBitmap.offsetInSector + HostBitmap.bytes), with: bitmap.bytes)
        }
        return sector
    }

    /// Where the timestamp lies in the sector.
    public static let timestampOffset = 152

    /// Whether the timestamp field of the record in `sector` is 0, without
    /// decoding the rest (a host slot that is not free needs no more).
    public static func timestampIsFree(inSector sector: ArraySlice<UInt8>) -> Bool {
        let at = sector.startIndex + timestampOffset
        return sector[at..<(at + 8)].allSatisfy { $0 == 0 }
    }

    /// The kind this record validly is (magic, major version and checksum all
    /// right), or nil when it is neither.
    public var validKind: LeaseKind? {
        for kind in [LeaseKind.delta, .paxos] where magic == kind.magic {
            return FormatVersion.sameMajor(version, kind.version) && checksumMatches ? kind : nil
        }
        return nil
    }

    /// Checks, in this order, that the record is a `kind` record of a
    /// supported major version with a good checksum and the expected names.
    /// Each failure names what was expected, what was found, and `place`
    /// (a path and offset) so the user can find it.
    @discardableResult
    public func verified(as kind: LeaseKind, lockspace: LeaseName? = nil, resource: LeaseName? = nil,
                         at place: String) throws -> LeaderRecord {
        guard magic == kind.magic else {
            let found: String
            switch magic {
            case 0: found = "no lease (the magic is zero: never initialised?)"
            case Magic.deltaLease: found = "a lockspace host slot"
            case Magic.paxosLease: found = "a resource lease"
            case Magic.paxosCleared: found = "a resource lease that was cleared"
            default: found = "magic 0x\(String(magic, radix: 16))"
            }
            throw TenureError(
                .badMagic,
                "Expected a \(kind) lease at \(place) but found \(found).",
                remedy: "Check the path and offset, or initialise the area with `tenure direct init`.")
        }
        guard FormatVersion.sameMajor(version, kind.version) else {
            throw TenureError(
                .unsupportedVersion,
                "The \(kind) lease at \(place) has format version 0x\(String(version, radix: 16)); Tenure reads major version 0x\(String(kind.version >> 16, radix: 16)).",
                remedy: "The area was written by an incompatible sanlock or Tenure release; re-initialise it only if nothing uses it.")
        }
        guard checksumMatches else {
            let actual = bytesRead.checksum ?? computedChecksum
            throw TenureError(
                .checksumMismatch,
                "The \(kind) lease at \(place) has checksum 0x\(String(checksum, radix: 16)) but its contents sum to 0x\(String(actual, radix: 16)).",
                remedy: "The record is damaged or was torn by a partial write; re-read it, and re-initialise the area only if no host uses it.")
        }
        if let lockspace, spaceName != lockspace {
            throw TenureError(
                .nameMismatch,
                "The \(kind) lease at \(place) belongs to lockspace \"\(spaceName)\", not \"\(lockspace)\".",
                remedy: "Check the lockspace name, path and offset.")
        }
        if let resource, resourceName != resource {
            throw TenureError(
                .nameMismatch,
                "The resource lease at \(place) is named \"\(resourceName)\", not \"\(resource)\".",
                remedy: "Check the resource name, path and offset.")
        }
        return self
    }
}

/// A value that never takes part in equality or hashing: what a decoded
/// record remembers of the bytes it came from.
struct ReadChecksum: Hashable, Sendable {
    var checksum: UInt32?
    static func == (_: ReadChecksum, _: ReadChecksum) -> Bool { true }
    func hash(into hasher: inout Hasher) {}
}

extension LeaderRecord {
    /// A delta lease's join incarnation: a random non-zero number drawn by
    /// each join and kept by its renewals, so two joins of one host id can
    /// never write identical records — not even two daemons with the same
    /// host name joining in the same second. It lives in the record's unused
    /// word (offset 160, inside the checksum); sanlock writes 0 there and
    /// ignores it, so either side's tools read the record as before.
    public var joinIncarnation: UInt64 {
        get { unused1 }
        set { unused1 = newValue }
    }
}

/// An event one host sends another through its delta lease (sanlock's host
/// events): the recipient's generation, the event number and its data, in
/// the record's write_id, write_generation and write_timestamp words (which
/// a delta lease does not otherwise use), with the recipient's bit set in
/// the sender's bitmap.
public struct HostEvent: Sendable, Equatable {
    public var generation: Generation
    public var event: UInt64
    public var data: UInt64

    public init(generation: Generation, event: UInt64, data: UInt64) {
        self.generation = generation
        self.event = event
        self.data = data
    }

    public static let none = HostEvent(generation: .zero, event: 0, data: 0)
}

extension LeaderRecord {
    /// The host event a delta lease carries (``HostEvent/none`` when none).
    public var hostEvent: HostEvent {
        get { HostEvent(generation: Generation(writeID.rawValue), event: writeGeneration.rawValue, data: writeTimestamp.rawValue) }
        set {
            writeID = HostID(newValue.generation.rawValue)
            writeGeneration = Generation(newValue.event)
            writeTimestamp = DiskTimestamp(newValue.data)
        }
    }
}
