import Testing
import TenureCore
import TenureFormat

/// Tenure against bytes the real sanlock wrote (see SanlockGoldens.swift).
@Suite("Records written by sanlock 3.8.5")
struct GoldenRecordTests {
    @Test("decoding gives the fields sanlock's read_leader printed", arguments: GoldenLeader.all)
    func decodesPrintedFields(golden: GoldenLeader) {
        let r = LeaderRecord(decoding: golden.bytes)
        let p = golden.printed
        #expect(r.magic == p.magic)
        #expect(r.version == p.version)
        #expect(r.flags == p.flags)
        #expect(r.sectorSize == p.sectorSize)
        #expect(r.numHosts == p.numHosts)
        #expect(r.maxHosts == p.maxHosts)
        #expect(r.ownerID == HostID(p.ownerID))
        #expect(r.ownerGeneration == Generation(p.ownerGeneration))
        #expect(r.lver == LeaseVersion(p.lver))
        #expect(r.spaceName.description == p.spaceName)
        #expect(r.resourceName.description == p.resourceName)
        #expect(r.timestamp == DiskTimestamp(p.timestamp))
        #expect(r.checksum == p.checksum)
        #expect(r.ioTimeout == IOTimeout(seconds: p.ioTimeout))
        #expect(r.writeID == HostID(p.writeID))
        #expect(r.writeGeneration == Generation(p.writeGeneration))
        #expect(r.writeTimestamp == DiskTimestamp(p.writeTimestamp))
        #expect(r.unused1 == 0)
        #expect(r.unused2 == 0)
    }

    @Test("magic and version are the ones Tenure names", arguments: GoldenLeader.all)
    func magicAndVersionConstants(golden: GoldenLeader) {
        let r = LeaderRecord(decoding: golden.bytes)
        switch golden.kind {
        case .delta:
            #expect(r.magic == Magic.deltaLease)
            #expect(r.version == FormatVersion.deltaLease)
        case .paxos:
            #expect(r.magic == Magic.paxosLease)
            #expect(r.version == FormatVersion.paxosLease)
        }
        #expect(golden.kind.magic == golden.printed.magic)
        #expect(golden.kind.version == golden.printed.version)
    }

    @Test("verified(as:) accepts every sanlock record with its own names", arguments: GoldenLeader.all)
    func verifiedAccepts(golden: GoldenLeader) throws {
        let r = LeaderRecord(decoding: golden.bytes)
        let lockspace = try LeaseName(golden.printed.spaceName)
        switch golden.kind {
        case .delta:
            let v = try r.verified(as: .delta, lockspace: lockspace, at: "golden:0")
            #expect(v == r)
        case .paxos:
            let resource = try LeaseName(golden.printed.resourceName)
            let v = try r.verified(as: .paxos, lockspace: lockspace, resource: resource, at: "golden:0")
            #expect(v == r)
        }
        // Without names to compare, too.
        try r.verified(as: golden.kind, at: "golden:0")
    }

    @Test("re-encoding a decoded record reproduces sanlock's bytes exactly", arguments: GoldenLeader.all)
    func reencodeIsByteExact(golden: GoldenLeader) {
        let r = LeaderRecord(decoding: golden.bytes)
        #expect(r.encoded() == golden.bytes)
        #expect(r.sealed == r, "a sanlock record is already sealed")
        // The whole sector: sanlock left everything after the record zero.
        var sector = golden.bytes
        sector += [UInt8](repeating: 0, count: golden.sectorSize.bytes - sector.count)
        #expect(r.encodedSector(golden.sectorSize) == sector)
        #expect(r.encodedSector(golden.sectorSize, bitmap: HostBitmap()) == sector)
    }

    @Test("the geometry a record declares is the one sanlock was given", arguments: GoldenLeader.all)
    func declaredGeometry(golden: GoldenLeader) throws {
        let r = LeaderRecord(decoding: golden.bytes)
        let g = try LeaseGeometry.declared(by: r, at: "golden:0")
        #expect(g.sectorSize == golden.sectorSize)
        #expect(g.alignment == golden.alignment)
        #expect(g.alignFlag == golden.printed.flags)
        if golden.kind == .paxos {
            // sanlock's init -r sets num_hosts = max_hosts = the geometry's host limit.
            #expect(UInt64(g.maxHosts) == golden.printed.maxHosts)
        }
    }

    @Test("decoding works from a slice inside a larger buffer", arguments: GoldenLeader.all)
    func decodesFromSlice(golden: GoldenLeader) {
        // As if the whole area had been read and the record sits at some offset in it.
        let prefix = [UInt8](repeating: 0xA5, count: 3 * 512)
        let buffer = prefix + golden.bytes + [UInt8](repeating: 0x5A, count: 64)
        let r = LeaderRecord(decoding: buffer[prefix.count...])
        #expect(r == LeaderRecord(decoding: golden.bytes))
        #expect(r.encoded() == golden.bytes)
    }

    // MARK: Building sanlock's records from fields

    @Test("a fresh record built by Tenure equals what sanlock's init wrote",
          arguments: GoldenLeader.all.filter { $0.label.hasSuffix("after init") })
    func buildsInitRecord(golden: GoldenLeader) throws {
        #expect(golden.printed.ownerID == 0)
        let g = try LeaseGeometry(sectorSize: golden.sectorSize, alignment: golden.alignment)
        var r = LeaderRecord(kind: golden.kind, geometry: g, spaceName: try checkedName(golden.printed.spaceName),
                             resourceName: try checkedName(golden.printed.resourceName))
        switch golden.kind {
        case .delta:
            // What sanlock's init -s writes into every host slot.
            r.maxHosts = 1
            r.ioTimeout = .standard
        case .paxos:
            // What sanlock's init -r writes: every dblock of the geometry exists.
            r.numHosts = UInt64(g.maxHosts)
            r.maxHosts = UInt64(g.maxHosts)
        }
        #expect(r.encoded() == golden.bytes)
    }

    @Test("an owned resource record built by Tenure equals what sanlock acquire wrote")
    func buildsAcquiredResource() throws {
        var r = LeaderRecord(kind: .paxos, geometry: .standard512, spaceName: "LS", resourceName: "R1")
        r.numHosts = 2000
        r.maxHosts = 2000
        r.ownerID = HostID(3)
        r.ownerGeneration = Generation(1)
        r.lver = LeaseVersion(1)
        r.timestamp = DiskTimestamp(3114)
        r.writeID = HostID(3)
        r.writeGeneration = Generation(1)
        r.writeTimestamp = DiskTimestamp(3114)
        #expect(r.encoded() == SanlockGolden.paxos512Acquired)
    }

    @Test("a live delta lease built by Tenure equals what sanlock acquire_id wrote")
    func buildsAcquiredDelta() throws {
        var r = LeaderRecord(kind: .delta, geometry: .standard512, spaceName: "LS",
                             resourceName: try checkedName("09c34ee8-0b98-4f2c-8d54-4da9e670bf50.vm"))
        r.maxHosts = 1
        r.ownerID = HostID(3)
        r.ownerGeneration = Generation(1)
        r.timestamp = DiskTimestamp(3081)
        r.ioTimeout = .standard
        #expect(r.encoded() == SanlockGolden.delta512AcquiredHost3)
    }

    // MARK: Request record and dblocks

    @Test("sanlock's request record after init decodes as 'no request'",
          arguments: [SanlockGolden.request512Init, SanlockGolden.request4KInit])
    func requestRecordAfterInit(golden: [UInt8]) {
        let rr = RequestRecord(decoding: golden)
        #expect(rr.magic == 0x0829_2011)
        #expect(rr.version == 0x0001_0001)
        #expect(rr.magic == Magic.requestRecord)
        #expect(rr.version == FormatVersion.requestRecord)
        #expect(rr.lver == .zero)
        #expect(rr.forceModeRaw == 0)
        #expect(rr.forceMode == RequestRecord.ForceMode.none)
        #expect(rr.isValid)
        #expect(rr == RequestRecord.none)
        #expect(Array(RequestRecord.none.encoded()) == Array(golden.prefix(RequestRecord.encodedBytes)))
        #expect(RequestRecord.none.encodedSector(.bytes512) == golden + [UInt8](repeating: 0, count: 512 - golden.count))
    }

    @Test("host 3's dblock written by sanlock's acquire decodes, verifies and re-encodes exactly")
    func acquiredDblock() {
        let golden = SanlockGolden.dblock512AcquiredHost3
        let d = PaxosDblock(decoding: golden)
        #expect(d.mbal == 3)
        #expect(d.bal == 3)
        #expect(d.inp == HostID(3))
        #expect(d.inp2 == Generation(1))
        #expect(d.inp3 == DiskTimestamp(3114))
        #expect(d.lver == LeaseVersion(1))
        #expect(d.checksum == 0xd4dc_9a8c)
        #expect(d.flags == 0)
        #expect(d.isValid)
        #expect(!d.isReleased)
        #expect(d.encoded() == golden)
        // Built from fields, too.
        let built = PaxosDblock(mbal: 3, bal: 3, inp: HostID(3), inp2: Generation(1), inp3: DiskTimestamp(3114), lver: LeaseVersion(1))
        #expect(built.encoded() == golden)
        #expect(built.sealed == d)
        // The winner's dblock agrees with the leader sanlock committed.
        let leader = LeaderRecord(decoding: SanlockGolden.paxos512Acquired)
        #expect(leader.ownerID == d.inp)
        #expect(leader.ownerGeneration == d.inp2)
        #expect(leader.timestamp == d.inp3)
        #expect(leader.lver == d.lver)
        // And the whole sector: the mode block sanlock left is zero (exclusive).
        let sector = golden + [UInt8](repeating: 0, count: 512 - golden.count)
        #expect(d.encodedSector(.bytes512) == sector)
        #expect(ModeBlock(decoding: sector[ModeBlock.offsetInSector...]) == .exclusive)
    }

    @Test("the dblock sector of a host that never took part is all zero and valid",
          arguments: SectorSize.allCases)
    func neverWrittenDblock(sector: SectorSize) {
        // sanlock's init -r leaves every dblock sector zero (observed on both sector sizes).
        let bytes = [UInt8](repeating: 0, count: sector.bytes)
        let d = PaxosDblock(decoding: bytes)
        #expect(d == .empty)
        #expect(d.checksum == 0)
        #expect(d.isValid)
        #expect(!d.isReleased)
        let mode = ModeBlock(decoding: bytes[ModeBlock.offsetInSector...])
        #expect(mode == .exclusive)
        #expect(!mode.isShared)
    }

    @Test("init wrote sector 0 with its magic last: the first write had magic zero and its own checksum")
    func initFirstWriteHadNoMagic() throws {
        // From strace of `sanlock direct init -s ST:0:st512:0`: the whole-area
        // write carried sector 0 with magic 0 and checksum 0x2e5f58df; the
        // second write put the magic in, with checksum 0x54a3e2c4.
        var r = LeaderRecord(kind: .delta, geometry: .standard512, spaceName: "ST", resourceName: .empty)
        r.maxHosts = 1
        r.ioTimeout = .standard
        #expect(readLE(r.encoded(), at: 168, width: 4) == 0x54a3_e2c4)
        r.magic = 0
        #expect(readLE(r.encoded(), at: 168, width: 4) == 0x2e5f_58df)
        expectTenureError(.badMagic, message: ["st512:0", "zero"]) {
            try r.sealed.verified(as: .delta, at: "st512:0")
        }
    }
}
