import TenureCore

/// A host's Disk Paxos block in a resource area: the first 56 bytes of
/// sector hostID + 1. All zero (checksum included) means "never written".
///
/// | offset | field | meaning |
/// |---|---|---|
/// | 0 | mbal u64 | highest ballot this host has started |
/// | 8 | bal u64 | highest ballot this host has voted in |
/// | 16 | inp u64 | proposed owner: host id |
/// | 24 | inp2 u64 | proposed owner: generation |
/// | 32 | inp3 u64 | proposed owner: monotonic timestamp |
/// | 40 | lver u64 | the lease version this ballot is for |
/// | 48 | checksum u32 | over bytes 0..<48 |
/// | 52 | flags u32 | 0x1 released |
public struct PaxosDblock: Hashable, Sendable {
    public static let encodedBytes = 56
    public static let checksummedBytes = 48
    public static let releasedFlag: UInt32 = 0x1

    public var mbal: UInt64
    public var bal: UInt64
    public var inp: HostID
    public var inp2: Generation
    public var inp3: DiskTimestamp
    public var lver: LeaseVersion
    public var checksum: UInt32
    public var flags: UInt32

    public init(mbal: UInt64 = 0, bal: UInt64 = 0, inp: HostID = .none, inp2: Generation = .zero,
                inp3: DiskTimestamp = .free, lver: LeaseVersion = .zero, flags: UInt32 = 0) {
        self.mbal = mbal
        self.bal = bal
        self.inp = inp
        self.inp2 = inp2
        self.inp3 = inp3
        self.lver = lver
        self.checksum = 0
        self.flags = flags
    }

    public static let empty = PaxosDblock()

    public init<C: Collection>(decoding bytes: C) where C.Element == UInt8 {
        precondition(bytes.count >= Self.encodedBytes)
        let r = ByteReader(bytes)
        mbal = r.u64(at: 0)
        bal = r.u64(at: 8)
        inp = HostID(r.u64(at: 16))
        inp2 = Generation(r.u64(at: 24))
        inp3 = DiskTimestamp(r.u64(at: 32))
        lver = LeaseVersion(r.u64(at: 40))
        checksum = r.u32(at: 48)
        flags = r.u32(at: 52)
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(count: Self.encodedBytes)
        w.put(mbal, at: 0)
        w.put(bal, at: 8)
        w.put(inp.rawValue, at: 16)
        w.put(inp2.rawValue, at: 24)
        w.put(inp3.rawValue, at: 32)
        w.put(lver.rawValue, at: 40)
        w.put(flags, at: 52)
        w.put(LeaseChecksum.compute(w.bytes[0..<Self.checksummedBytes]), at: 48)
        return w.bytes
    }

    public var computedChecksum: UInt32 {
        LeaseChecksum.compute(encoded()[0..<Self.checksummedBytes])
    }

    /// A never-written block (every field zero) is valid; otherwise the checksum must match.
    public var isValid: Bool {
        (self == Self.empty && checksum == 0) || checksum == computedChecksum
    }

    public var isReleased: Bool { flags & Self.releasedFlag != 0 }

    /// A copy with ``checksum`` set to the computed value.
    public var sealed: PaxosDblock {
        var copy = self
        copy.checksum = computedChecksum
        return copy
    }

    /// A whole dblock sector: this block at 0 and `mode` at byte 128.
    public func encodedSector(_ sectorSize: SectorSize, mode: ModeBlock = .exclusive) -> [UInt8] {
        var sector = [UInt8](repeating: 0, count: sectorSize.bytes)
        sector.replaceSubrange(0..<Self.encodedBytes, with: encoded())
        sector.replaceSubrange(ModeBlock.offsetInSector..<(ModeBlock.offsetInSector + ModeBlock.encodedBytes),
                               with: mode.encoded())
        return sector
    }
}

/// A host's shared-lease marker, at byte 128 of its dblock sector:
/// flags u32 @0 (0x1 shared), generation u64 @8 (the holder's host generation).
public struct ModeBlock: Hashable, Sendable {
    public static let offsetInSector = 128
    public static let encodedBytes = 16
    public static let sharedFlag: UInt32 = 0x1

    public var flags: UInt32
    public var generation: Generation

    public init(flags: UInt32, generation: Generation) {
        self.flags = flags
        self.generation = generation
    }

    public static let exclusive = ModeBlock(flags: 0, generation: .zero)
    public static func shared(_ generation: Generation) -> ModeBlock {
        ModeBlock(flags: sharedFlag, generation: generation)
    }

    public var isShared: Bool { flags & Self.sharedFlag != 0 }

    public init<C: Collection>(decoding bytes: C) where C.Element == UInt8 {
        precondition(bytes.count >= Self.encodedBytes)
        let r = ByteReader(bytes)
        flags = r.u32(at: 0)
        generation = Generation(r.u64(at: 8))
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(count: Self.encodedBytes)
        w.put(flags, at: 0)
        w.put(generation.rawValue, at: 8)
        return w.bytes
    }
}

/// The request record in sector 1 of a resource area: a host that wants a
/// held lease writes the lver it wants and how forcefully.
///
/// magic u32 @0, version u32 @4, lver u64 @8, force_mode u32 @16. No checksum.
public struct RequestRecord: Hashable, Sendable {
    public static let encodedBytes = 20

    /// How the holder is asked to give the lease up.
    public enum ForceMode: UInt32, Sendable, CustomStringConvertible {
        case none = 0
        /// Kill the holder (SIGKILL).
        case force = 1
        /// Ask the holder to stop (killpath or SIGTERM).
        case graceful = 2
        public var description: String {
            switch self {
            case .none: return "none"
            case .force: return "force"
            case .graceful: return "graceful"
            }
        }
    }

    public var magic: UInt32
    public var version: UInt32
    public var lver: LeaseVersion
    public var forceModeRaw: UInt32

    public init(lver: LeaseVersion, forceMode: ForceMode) {
        magic = Magic.requestRecord
        version = FormatVersion.requestRecord
        self.lver = lver
        forceModeRaw = forceMode.rawValue
    }

    /// What `init` writes: no request.
    public static let none = RequestRecord(lver: .zero, forceMode: .none)

    public var forceMode: ForceMode? { ForceMode(rawValue: forceModeRaw) }
    public var isValid: Bool { magic == Magic.requestRecord && FormatVersion.sameMajor(version, FormatVersion.requestRecord) }

    public init<C: Collection>(decoding bytes: C) where C.Element == UInt8 {
        precondition(bytes.count >= Self.encodedBytes)
        let r = ByteReader(bytes)
        magic = r.u32(at: 0)
        version = r.u32(at: 4)
        lver = LeaseVersion(r.u64(at: 8))
        forceModeRaw = r.u32(at: 16)
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(count: Self.encodedBytes)
        w.put(magic, at: 0)
        w.put(version, at: 4)
        w.put(lver.rawValue, at: 8)
        w.put(forceModeRaw, at: 16)
        return w.bytes
    }

    public func encodedSector(_ sectorSize: SectorSize) -> [UInt8] {
        var sector = [UInt8](repeating: 0, count: sectorSize.bytes)
        sector.replaceSubrange(0..<Self.encodedBytes, with: encoded())
        return sector
    }
}

/// The 2048-bit host bitmap at bytes 256..<512 of a delta lease sector.
/// A host sets another host's bit to ask it to look at its leases.
/// Host h is bit (h-1) % 8 of byte (h-1) / 8, least significant first.
public struct HostBitmap: Hashable, Sendable {
    public static let offsetInSector = 256
    public static let bytes = 256
    public static let capacity = bytes * 8

    public private(set) var bytes: [UInt8]

    public init() { bytes = [UInt8](repeating: 0, count: Self.bytes) }

    public init<C: Collection>(decoding sector: C) where C.Element == UInt8 {
        precondition(sector.count >= Self.offsetInSector + Self.bytes)
        bytes = Array(ByteReader(sector).slice(at: Self.offsetInSector, count: Self.bytes))
    }

    public func contains(_ host: HostID) -> Bool {
        guard let (byte, bit) = Self.position(of: host) else { return false }
        return bytes[byte] & (1 << bit) != 0
    }

    public mutating func insert(_ host: HostID) {
        guard let (byte, bit) = Self.position(of: host) else { preconditionFailure("host \(host) outside bitmap") }
        bytes[byte] |= 1 << bit
    }

    public mutating func remove(_ host: HostID) {
        guard let (byte, bit) = Self.position(of: host) else { return }
        bytes[byte] &= ~(1 << bit)
    }

    /// Every host whose bit is set, ascending.
    public var members: [HostID] {
        (1...UInt64(Self.capacity)).map { HostID($0) }.filter { contains($0) }
    }

    private static func position(of host: HostID) -> (Int, UInt8)? {
        guard host.rawValue >= 1, host.rawValue <= UInt64(capacity) else { return nil }
        let i = Int(host.rawValue - 1)
        return (i / 8, UInt8(i % 8))
    }
}
