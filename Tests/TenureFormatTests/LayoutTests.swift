import Testing
import TenureCore
import TenureFormat

/// Pins every field's offset and width: set one field to a value whose every
/// byte is non-zero, encode, and find exactly those little-endian bytes at the
/// documented offset and zeros everywhere else (apart from the checksum, which
/// must be the independent checksum of the covered bytes).
@Suite("Pinned on-disk layout")
struct LayoutTests {
    /// Distinct non-zero bytes, so a wrong width or a byte-swap shows.
    static let pattern: UInt64 = 0x8877_6655_4433_2211

    /// Bytes of `bytes` outside `ranges` that are not zero.
    static func strayBytes(_ bytes: [UInt8], outside ranges: [Range<Int>]) -> [Int] {
        bytes.indices.filter { i in bytes[i] != 0 && !ranges.contains { $0.contains(i) } }
    }

    // MARK: Leader record

    struct LeaderField: Sendable, CustomStringConvertible {
        var name: String
        var offset: Int
        var width: Int
        var set: @Sendable (inout LeaderRecord, UInt64) -> Void
        var description: String { "\(name) @\(offset)" }
    }

    static let leaderFields: [LeaderField] = [
        LeaderField(name: "magic", offset: 0, width: 4) { $0.magic = UInt32(truncatingIfNeeded: $1) },
        LeaderField(name: "version", offset: 4, width: 4) { $0.version = UInt32(truncatingIfNeeded: $1) },
        LeaderField(name: "flags", offset: 8, width: 4) { $0.flags = UInt32(truncatingIfNeeded: $1) },
        LeaderField(name: "sector_size", offset: 12, width: 4) { $0.sectorSize = UInt32(truncatingIfNeeded: $1) },
        LeaderField(name: "num_hosts", offset: 16, width: 8) { $0.numHosts = $1 },
        LeaderField(name: "max_hosts", offset: 24, width: 8) { $0.maxHosts = $1 },
        LeaderField(name: "owner_id", offset: 32, width: 8) { $0.ownerID = HostID($1) },
        LeaderField(name: "owner_generation", offset: 40, width: 8) { $0.ownerGeneration = Generation($1) },
        LeaderField(name: "lver", offset: 48, width: 8) { $0.lver = LeaseVersion($1) },
        LeaderField(name: "timestamp", offset: 152, width: 8) { $0.timestamp = DiskTimestamp($1) },
        LeaderField(name: "unused1", offset: 160, width: 8) { $0.unused1 = $1 },
        LeaderField(name: "unused2", offset: 172, width: 2) { $0.unused2 = UInt16(truncatingIfNeeded: $1) },
        LeaderField(name: "io_timeout", offset: 174, width: 2) { $0.ioTimeout = IOTimeout(rawValue: UInt16(truncatingIfNeeded: $1)) },
        LeaderField(name: "write_id", offset: 176, width: 8) { $0.writeID = HostID($1) },
        LeaderField(name: "write_generation", offset: 184, width: 8) { $0.writeGeneration = Generation($1) },
        LeaderField(name: "write_timestamp", offset: 192, width: 8) { $0.writeTimestamp = DiskTimestamp($1) },
    ]

    static let zeroLeader = LeaderRecord(decoding: [UInt8](repeating: 0, count: LeaderRecord.encodedBytes))
    static let checksumRange = 168..<172

    @Test("leader record sizes")
    func leaderSizes() {
        #expect(LeaderRecord.encodedBytes == 200)
        #expect(LeaderRecord.checksummedBytes == 168)
        #expect(Self.zeroLeader.encoded().count == 200)
        // Whatever the sector size, the record fits before the bitmap at 256.
        #expect(LeaderRecord.encodedBytes <= HostBitmap.offsetInSector)
    }

    @Test("leader record integer field offsets", arguments: leaderFields)
    func leaderIntegerField(field: LeaderField) {
        var r = Self.zeroLeader
        field.set(&r, Self.pattern)
        let bytes = r.encoded()
        let range = field.offset..<(field.offset + field.width)
        #expect(Array(bytes[range]) == littleEndian(Self.pattern, width: field.width))
        #expect(Self.strayBytes(bytes, outside: [range, Self.checksumRange]) == [])
        #expect(readLE(bytes, at: 168, width: 4) == UInt64(sanlockRuleCRC(bytes[0..<168])))
        // And it decodes back from the same place.
        var expected = Self.zeroLeader
        field.set(&expected, Self.pattern)
        #expect(LeaderRecord(decoding: bytes) == expected.sealed)
    }

    @Test("leader record name fields: space_name @56 and resource_name @104, 48 bytes, NUL-padded")
    func leaderNameFields() throws {
        let full = try LeaseName(String(repeating: "s", count: 47) + "S")   // exactly 48 bytes, no NUL
        let short = try checkedName("r1")
        for (offset, isSpace) in [(56, true), (104, false)] {
            for name in [full, short] {
                var r = Self.zeroLeader
                if isSpace { r.spaceName = name } else { r.resourceName = name }
                let bytes = r.encoded()
                let field = offset..<(offset + 48)
                let expected = name.utf8 + [UInt8](repeating: 0, count: 48 - name.utf8.count)
                #expect(Array(bytes[field]) == expected, "offset \(offset) name \(name)")
                #expect(Self.strayBytes(bytes, outside: [field, Self.checksumRange]) == [])
                let back = LeaderRecord(decoding: bytes)
                #expect((isSpace ? back.spaceName : back.resourceName) == name)
            }
        }
    }

    @Test("the leader fields tile bytes 0..<200 exactly, with no gap or overlap")
    func leaderFieldsTile() {
        var ranges = Self.leaderFields.map { $0.offset..<($0.offset + $0.width) }
        ranges += [56..<104, 104..<152, Self.checksumRange]
        ranges.sort { $0.lowerBound < $1.lowerBound }
        var next = 0
        for r in ranges {
            #expect(r.lowerBound == next, "gap or overlap at \(next)")
            next = r.upperBound
        }
        #expect(next == LeaderRecord.encodedBytes)
    }

    @Test("leader checksum sits at 168 and covers exactly bytes 0..<168")
    func leaderChecksumCoverage() {
        var r = Self.zeroLeader
        r.magic = Magic.deltaLease
        let base = r.encoded()
        // The last covered field changes it...
        var inside = r
        inside.unused1 = 1
        #expect(readLE(inside.encoded(), at: 168, width: 4) != readLE(base, at: 168, width: 4))
        // Fields after the checksum do not enter it.
        var after = r
        after.ioTimeout = IOTimeout(seconds: 77)
        after.writeID = HostID(5)
        after.writeGeneration = Generation(6)
        after.writeTimestamp = DiskTimestamp(7)
        after.unused2 = 9
        #expect(readLE(after.encoded(), at: 168, width: 4) == readLE(base, at: 168, width: 4))
    }

    // MARK: Dblock

    struct DblockField: Sendable, CustomStringConvertible {
        var name: String
        var offset: Int
        var width: Int
        var set: @Sendable (inout PaxosDblock, UInt64) -> Void
        var description: String { "\(name) @\(offset)" }
    }

    static let dblockFields: [DblockField] = [
        DblockField(name: "mbal", offset: 0, width: 8) { $0.mbal = $1 },
        DblockField(name: "bal", offset: 8, width: 8) { $0.bal = $1 },
        DblockField(name: "inp", offset: 16, width: 8) { $0.inp = HostID($1) },
        DblockField(name: "inp2", offset: 24, width: 8) { $0.inp2 = Generation($1) },
        DblockField(name: "inp3", offset: 32, width: 8) { $0.inp3 = DiskTimestamp($1) },
        DblockField(name: "lver", offset: 40, width: 8) { $0.lver = LeaseVersion($1) },
        DblockField(name: "flags", offset: 52, width: 4) { $0.flags = UInt32(truncatingIfNeeded: $1) },
    ]

    @Test("dblock sizes")
    func dblockSizes() {
        #expect(PaxosDblock.encodedBytes == 56)
        #expect(PaxosDblock.checksummedBytes == 48)
        #expect(PaxosDblock.empty.encoded().count == 56)
        #expect(PaxosDblock.encodedBytes <= ModeBlock.offsetInSector)
    }

    @Test("dblock field offsets", arguments: dblockFields)
    func dblockField(field: DblockField) {
        var d = PaxosDblock.empty
        field.set(&d, Self.pattern)
        let bytes = d.encoded()
        let range = field.offset..<(field.offset + field.width)
        #expect(Array(bytes[range]) == littleEndian(Self.pattern, width: field.width))
        #expect(Self.strayBytes(bytes, outside: [range, 48..<52]) == [])
        #expect(readLE(bytes, at: 48, width: 4) == UInt64(sanlockRuleCRC(bytes[0..<48])))
        #expect(PaxosDblock(decoding: bytes) == d.sealed)
    }

    @Test("dblock flags are outside the checksum")
    func dblockFlagsNotCovered() {
        let d = PaxosDblock(mbal: 1, bal: 1, inp: HostID(1), inp2: Generation(1), inp3: DiskTimestamp(9), lver: LeaseVersion(1))
        var released = d
        released.flags = PaxosDblock.releasedFlag
        #expect(readLE(d.encoded(), at: 48, width: 4) == readLE(released.encoded(), at: 48, width: 4))
    }

    // MARK: Mode block

    @Test("mode block: flags u32 at byte 128 of the dblock sector, generation u64 at 136", arguments: SectorSize.allCases)
    func modeBlockInSector(sector: SectorSize) {
        #expect(ModeBlock.offsetInSector == 128)
        #expect(ModeBlock.encodedBytes == 16)
        let mode = ModeBlock(flags: UInt32(truncatingIfNeeded: Self.pattern), generation: Generation(Self.pattern))
        let bytes = PaxosDblock.empty.encodedSector(sector, mode: mode)
        #expect(bytes.count == sector.bytes)
        #expect(Array(bytes[128..<132]) == littleEndian(Self.pattern, width: 4))
        #expect(Array(bytes[136..<144]) == littleEndian(Self.pattern, width: 8))
        #expect(Array(bytes[0..<56]) == PaxosDblock.empty.encoded())
        #expect(Self.strayBytes(bytes, outside: [0..<56, 128..<132, 136..<144]) == [])
        #expect(ModeBlock(decoding: bytes[128...]) == mode)
    }

    @Test("mode block on its own: flags @0, generation @8")
    func modeBlockAlone() {
        let shared = ModeBlock.shared(Generation(0x0102_0304_0506_0708))
        #expect(shared.isShared)
        #expect(shared.flags == ModeBlock.sharedFlag)
        #expect(ModeBlock.sharedFlag == 0x1)
        let bytes = shared.encoded()
        #expect(bytes == [1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
        #expect(ModeBlock(decoding: bytes) == shared)
        #expect(ModeBlock.exclusive.encoded() == [UInt8](repeating: 0, count: 16))
        #expect(!ModeBlock.exclusive.isShared)
    }

    @Test("a dblock sector with a shared mode keeps the dblock at 0 intact")
    func dblockAndModeTogether() {
        let d = PaxosDblock(mbal: 7, bal: 7, inp: HostID(2), inp2: Generation(4), inp3: DiskTimestamp(100), lver: LeaseVersion(9))
        let sector = d.encodedSector(.bytes512, mode: .shared(Generation(4)))
        #expect(PaxosDblock(decoding: sector) == d.sealed)
        #expect(PaxosDblock(decoding: sector).isValid)
        #expect(ModeBlock(decoding: sector[ModeBlock.offsetInSector...]) == .shared(Generation(4)))
    }

    // MARK: Request record

    @Test("request record: magic @0, version @4, lver @8, force_mode @16; nothing else in its sector")
    func requestRecordFields() {
        #expect(RequestRecord.encodedBytes == 20)
        let zero = RequestRecord(decoding: [UInt8](repeating: 0, count: 20))
        let cases: [(Int, Int, @Sendable (inout RequestRecord) -> Void)] = [
            (0, 4, { $0.magic = UInt32(truncatingIfNeeded: LayoutTests.pattern) }),
            (4, 4, { $0.version = UInt32(truncatingIfNeeded: LayoutTests.pattern) }),
            (8, 8, { $0.lver = LeaseVersion(LayoutTests.pattern) }),
            (16, 4, { $0.forceModeRaw = UInt32(truncatingIfNeeded: LayoutTests.pattern) }),
        ]
        for (offset, width, set) in cases {
            var rr = zero
            set(&rr)
            for sector in SectorSize.allCases {
                let bytes = rr.encodedSector(sector)
                #expect(bytes.count == sector.bytes)
                let range = offset..<(offset + width)
                #expect(Array(bytes[range]) == littleEndian(Self.pattern, width: width), "offset \(offset)")
                #expect(Self.strayBytes(bytes, outside: [range]) == [], "offset \(offset)")
                #expect(RequestRecord(decoding: bytes) == rr)
            }
        }
    }

    @Test("request record force modes", arguments: [(RequestRecord.ForceMode.none, UInt32(0)), (.force, 1), (.graceful, 2)])
    func forceModes(mode: RequestRecord.ForceMode, raw: UInt32) {
        let rr = RequestRecord(lver: LeaseVersion(12), forceMode: mode)
        let bytes = rr.encoded()
        #expect(readLE(bytes, at: 16, width: 4) == UInt64(raw))
        #expect(readLE(bytes, at: 8, width: 8) == 12)
        #expect(RequestRecord(decoding: bytes).forceMode == mode)
        #expect(RequestRecord(decoding: bytes).isValid)
    }

    @Test("request record with an unknown force mode or magic")
    func requestRecordOddValues() {
        var rr = RequestRecord(lver: .zero, forceMode: .none)
        rr.forceModeRaw = 7
        #expect(rr.forceMode == nil)
        rr.magic = 0
        #expect(!rr.isValid)
        rr.magic = Magic.requestRecord
        rr.version = 0x0002_0001
        #expect(!rr.isValid)
        rr.version = 0x0001_0009
        #expect(rr.isValid)
    }

    // MARK: Host bitmap

    @Test("host h sets bit (h-1)%8 of byte 256+(h-1)/8 and nothing else",
          arguments: [1, 2, 7, 8, 9, 16, 17, 250, 1000, 1999, 2000, 2001, 2047, 2048] as [UInt64])
    func bitmapPosition(h: UInt64) {
        var bitmap = HostBitmap()
        bitmap.insert(HostID(h))
        let leader = LeaderRecord(decoding: SanlockGolden.delta512Init)
        let sector = leader.encodedSector(.bytes512, bitmap: bitmap)
        let byte = 256 + Int((h - 1) / 8)
        let bit = UInt8(1) << UInt8((h - 1) % 8)
        #expect(sector[byte] == bit)
        #expect(Self.strayBytes(sector, outside: [0..<200, byte..<(byte + 1)]) == [])
        #expect(Array(sector[0..<200]) == SanlockGolden.delta512Init)
        let back = HostBitmap(decoding: sector)
        #expect(back == bitmap)
        #expect(back.contains(HostID(h)))
        #expect(back.members == [HostID(h)])
    }

    @Test("bitmap geometry and a few hosts together")
    func bitmapSeveral() {
        #expect(HostBitmap.offsetInSector == 256)
        #expect(HostBitmap.bytes == 256)
        #expect(HostBitmap.capacity == 2048)
        var bitmap = HostBitmap()
        for h: UInt64 in [3, 1, 2000, 9] { bitmap.insert(HostID(h)) }
        #expect(bitmap.members == [1, 3, 9, 2000].map { HostID($0) })
        #expect(bitmap.bytes[0] == 0b0000_0101)
        #expect(bitmap.bytes[1] == 0b0000_0001)
        #expect(bitmap.bytes[249] == 0b1000_0000)
        bitmap.remove(HostID(3))
        #expect(!bitmap.contains(HostID(3)))
        #expect(bitmap.bytes[0] == 0b0000_0001)
        // Out-of-range ids are simply absent.
        #expect(!bitmap.contains(HostID(0)))
        #expect(!bitmap.contains(HostID(2049)))
        bitmap.remove(HostID(0))
        #expect(bitmap.members.count == 3)
        // A bitmap in a 4096-byte sector is at the same place.
        let sector = LeaderRecord(decoding: SanlockGolden.delta4KInit).encodedSector(.bytes4096, bitmap: bitmap)
        #expect(sector[256] == 0b0000_0001)
        #expect(sector[256 + 249] == 0b1000_0000)
        #expect(Self.strayBytes(sector, outside: [0..<200, 256..<512]) == [])
        #expect(HostBitmap(decoding: sector) == bitmap)
    }
}
