import Testing
import TenureTestSupport
import TenureCore
import TenureFormat

/// decode(encode(x)) == x.sealed over many seeded random values.
// Thousands of random records per test: seconds of CPU in a debug build,
// which on the cooperative pool stalled every other test (issue 26).
@Suite("Encode/decode roundtrips", .cpuBound)
struct RoundtripTests {
    static let rounds = 2000

    static func randomLeader(_ rng: inout SeededGenerator) throws -> LeaderRecord {
        let g = LeaseGeometry.all.randomElement(using: &rng)!
        var r = LeaderRecord(kind: Bool.random(using: &rng) ? .delta : .paxos, geometry: g,
                             spaceName: try rng.leaseName(), resourceName: try rng.leaseName())
        r.magic = Bool.random(using: &rng) ? r.magic : rng.edgy32()
        r.version = Bool.random(using: &rng) ? r.version : rng.edgy32()
        r.flags = rng.edgy32()
        r.sectorSize = rng.edgy32()
        r.numHosts = rng.edgy64()
        r.maxHosts = rng.edgy64()
        r.ownerID = HostID(rng.edgy64())
        r.ownerGeneration = Generation(rng.edgy64())
        r.lver = LeaseVersion(rng.edgy64())
        r.timestamp = DiskTimestamp(rng.edgy64())
        r.unused1 = rng.edgy64()
        r.checksum = rng.edgy32()     // whatever it was, encoding recomputes it
        r.unused2 = rng.edgy16()
        r.ioTimeout = IOTimeout(rawValue: rng.edgy16())
        r.writeID = HostID(rng.edgy64())
        r.writeGeneration = Generation(rng.edgy64())
        r.writeTimestamp = DiskTimestamp(rng.edgy64())
        return r
    }

    static func randomDblock(_ rng: inout SeededGenerator) -> PaxosDblock {
        var d = PaxosDblock(mbal: rng.edgy64(), bal: rng.edgy64(), inp: HostID(rng.edgy64()),
                            inp2: Generation(rng.edgy64()), inp3: DiskTimestamp(rng.edgy64()),
                            lver: LeaseVersion(rng.edgy64()), flags: rng.edgy32())
        d.checksum = rng.edgy32()
        return d
    }

    @Test("leader records", arguments: [UInt64(1), 0xDEC0DE, 0x5A71_0C4B])
    func leaders(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        for round in 0..<Self.rounds {
            let x = try Self.randomLeader(&rng)
            let bytes = x.encoded()
            #expect(bytes.count == LeaderRecord.encodedBytes)
            let back = LeaderRecord(decoding: bytes)
            #expect(back == x.sealed, "seed \(seed) round \(round)")
            #expect(back.encoded() == bytes, "seed \(seed) round \(round)")
            // The stored checksum is the independent checksum of the covered bytes.
            #expect(back.checksum == sanlockRuleCRC(bytes[0..<168]), "seed \(seed) round \(round)")
            // A sealed record of the right kind and version verifies.
            if x.magic == Magic.deltaLease, FormatVersion.sameMajor(x.version, FormatVersion.deltaLease) {
                #expect(throws: Never.self) { try back.verified(as: .delta, lockspace: x.spaceName, at: "rt") }
            }
            if x.magic == Magic.paxosLease, FormatVersion.sameMajor(x.version, FormatVersion.paxosLease) {
                #expect(throws: Never.self) {
                    try back.verified(as: .paxos, lockspace: x.spaceName, resource: x.resourceName, at: "rt")
                }
            }
        }
    }

    @Test("leader records inside whole sectors, with a bitmap", arguments: [UInt64(7), 0xB17]) 
    func leaderSectors(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        for round in 0..<500 {
            let x = try Self.randomLeader(&rng)
            var bitmap = HostBitmap()
            for _ in 0..<Int.random(in: 0...20, using: &rng) {
                bitmap.insert(HostID(UInt64.random(in: 1...UInt64(HostBitmap.capacity), using: &rng)))
            }
            let sectorSize = SectorSize.allCases.randomElement(using: &rng)!
            let sector = x.encodedSector(sectorSize, bitmap: bitmap)
            #expect(sector.count == sectorSize.bytes)
            #expect(LeaderRecord(decoding: sector) == x.sealed, "seed \(seed) round \(round)")
            #expect(HostBitmap(decoding: sector) == bitmap, "seed \(seed) round \(round)")
        }
    }

    @Test("dblocks", arguments: [UInt64(2), 0xD1B, 0x0BA1_10])
    func dblocks(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        for round in 0..<Self.rounds {
            let x = Self.randomDblock(&rng)
            let bytes = x.encoded()
            #expect(bytes.count == PaxosDblock.encodedBytes)
            let back = PaxosDblock(decoding: bytes)
            #expect(back == x.sealed, "seed \(seed) round \(round)")
            #expect(back.isValid, "seed \(seed) round \(round)")
            #expect(back.checksum == sanlockRuleCRC(bytes[0..<48]), "seed \(seed) round \(round)")
            #expect(back.isReleased == (x.flags & 1 == 1))
        }
    }

    @Test("dblock sectors with a mode block", arguments: [UInt64(3), 0x30DE])
    func dblockSectors(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        for round in 0..<500 {
            let x = Self.randomDblock(&rng)
            let mode = ModeBlock(flags: rng.edgy32(), generation: Generation(rng.edgy64()))
            let sectorSize = SectorSize.allCases.randomElement(using: &rng)!
            let sector = x.encodedSector(sectorSize, mode: mode)
            #expect(PaxosDblock(decoding: sector) == x.sealed, "seed \(seed) round \(round)")
            #expect(ModeBlock(decoding: sector[ModeBlock.offsetInSector...]) == mode, "seed \(seed) round \(round)")
        }
    }

    @Test("request records", arguments: [UInt64(4)])
    func requests(seed: UInt64) {
        var rng = SeededGenerator(seed: seed)
        for round in 0..<Self.rounds {
            var x = RequestRecord(lver: LeaseVersion(rng.edgy64()), forceMode: .force)
            x.magic = Bool.random(using: &rng) ? x.magic : rng.edgy32()
            x.version = Bool.random(using: &rng) ? x.version : rng.edgy32()
            x.forceModeRaw = rng.edgy32()
            #expect(RequestRecord(decoding: x.encoded()) == x, "seed \(seed) round \(round)")
        }
    }

    @Test("sealing is idempotent and encoding ignores the stored checksum")
    func sealing() throws {
        var rng = SeededGenerator(seed: 99)
        for _ in 0..<200 {
            let x = try Self.randomLeader(&rng)
            #expect(x.sealed.sealed == x.sealed)
            var y = x
            y.checksum = ~x.checksum
            #expect(y.encoded() == x.encoded())
            let d = Self.randomDblock(&rng)
            #expect(d.sealed.sealed == d.sealed)
        }
    }
}
