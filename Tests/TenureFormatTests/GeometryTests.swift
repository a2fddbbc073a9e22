import Testing
import TenureCore
import TenureFormat

@Suite("Lease geometry")
struct GeometryTests {
    /// The five pairs and host limits as `sanlock help` lists them:
    /// "valid sector/align size combinations: 512/1M, 4K/1M, 4K/2M, 4K/4M, 4K/8M"
    /// "maximum host_id for sector/align sizes: 2000, 250, 500, 1000, 2000"
    /// and the align flags seen in the golden records.
    static let valid: [(SectorSize, Alignment, Int, UInt32)] = [
        (.bytes512, .oneMiB, 2000, 0x10),
        (.bytes4096, .oneMiB, 250, 0x10),
        (.bytes4096, .twoMiB, 500, 0x20),
        (.bytes4096, .fourMiB, 1000, 0x40),
        (.bytes4096, .eightMiB, 2000, 0x80),
    ]

    @Test("the five valid pairs, their host limits and align flags", arguments: valid)
    func validPair(sector: SectorSize, align: Alignment, maxHosts: Int, flag: UInt32) throws {
        let g = try LeaseGeometry(sectorSize: sector, alignment: align)
        #expect(g.sectorSize == sector)
        #expect(g.alignment == align)
        #expect(g.maxHosts == maxHosts)
        #expect(g.alignFlag == flag)
        #expect(g.sectorsPerArea == align.bytes / sector.bytes)
        // A resource area must hold the leader, the request record and one
        // dblock per host; a lockspace area one sector per host.
        #expect(g.maxHosts + 2 <= g.sectorsPerArea)
        #expect(g.maxHosts <= LeaseGeometry.absoluteMaxHosts)
        #expect(g.maxHosts <= HostBitmap.capacity)
        #expect(g.description == "\(sector.bytes)/\(align.bytes >> 20)M")
    }

    @Test("LeaseGeometry.all is exactly the five pairs, in sanlock's order")
    func allPairs() {
        #expect(LeaseGeometry.all.map { $0.sectorSize } == Self.valid.map { $0.0 })
        #expect(LeaseGeometry.all.map { $0.alignment } == Self.valid.map { $0.1 })
        #expect(LeaseGeometry.standard512.sectorSize == .bytes512)
        #expect(LeaseGeometry.standard512.alignment == .oneMiB)
        #expect(LeaseGeometry.absoluteMaxHosts == 2000)
    }

    @Test("512-byte sectors with a larger align are refused, naming the valid pairs",
          arguments: [Alignment.twoMiB, .fourMiB, .eightMiB])
    func invalidPair(align: Alignment) {
        expectTenureError(.invalidGeometry, message: ["512", align.description],
                          remedy: ["512/1M", "4096/1M", "4096/2M", "4096/4M", "4096/8M"]) {
            _ = try LeaseGeometry(sectorSize: .bytes512, alignment: align)
        }
    }

    @Test("every pair outside the five is refused")
    func exhaustivePairs() {
        var accepted = 0
        for sector in SectorSize.allCases {
            for align in Alignment.allCases {
                let isValid = Self.valid.contains { $0.0 == sector && $0.1 == align }
                do {
                    _ = try LeaseGeometry(sectorSize: sector, alignment: align)
                    #expect(isValid, "\(sector)/\(align) should be refused")
                    accepted += 1
                } catch let e as TenureError {
                    #expect(!isValid, "\(sector)/\(align) should be accepted")
                    #expect(e.code == .invalidGeometry)
                } catch {
                    Issue.record("unexpected \(error)")
                }
            }
        }
        #expect(accepted == 5)
    }

    // MARK: declared(by:)

    static func leader(sector: UInt32, flags: UInt32) -> LeaderRecord {
        var r = LeaderRecord(decoding: SanlockGolden.delta512Init)
        r.sectorSize = sector
        r.flags = flags
        return r.sealed
    }

    @Test("no align flag: 1M for 512-byte sectors, 8M for 4096", arguments: [
        (UInt32(512), UInt32(0), Alignment.oneMiB), (4096, 0, .eightMiB),
        (512, 0x1, .oneMiB), (4096, 0x1, .eightMiB),           // short-hold flag only
    ])
    func declaredWithoutFlag(sector: UInt32, flags: UInt32, expected: Alignment) throws {
        let g = try LeaseGeometry.declared(by: Self.leader(sector: sector, flags: flags), at: "x:0")
        #expect(g.sectorSize.bytes == Int(sector))
        #expect(g.alignment == expected)
        #expect(LeaseGeometry.defaultFor(g.sectorSize) == g)
    }

    @Test("an align flag is honoured, and other bits do not disturb it", arguments: [
        (UInt32(512), UInt32(0x10), Alignment.oneMiB), (4096, 0x10, .oneMiB), (4096, 0x20, .twoMiB),
        (4096, 0x40, .fourMiB), (4096, 0x80, .eightMiB), (4096, 0x41, .fourMiB), (4096, 0x0100_0020, .twoMiB),
    ])
    func declaredWithFlag(sector: UInt32, flags: UInt32, expected: Alignment) throws {
        let g = try LeaseGeometry.declared(by: Self.leader(sector: sector, flags: flags), at: "x:0")
        #expect(g.alignment == expected)
        #expect(LeaderFlags.alignment(in: flags) == expected)
        #expect(LeaderFlags.alignFlag(for: expected) & flags == LeaderFlags.alignFlag(for: expected))
    }

    @Test("more than one align flag: sanlock takes the lowest (1M before 2M before 4M before 8M)",
          arguments: [(UInt32(0x30), Alignment.oneMiB), (0x60, .twoMiB), (0xC0, .fourMiB), (0xF0, .oneMiB)])
    func declaredWithSeveralFlags(flags: UInt32, expected: Alignment) throws {
        // sanlock tests the 1M, 2M, 4M and 8M bits in that order; so does Tenure.
        #expect(LeaderFlags.alignment(in: flags) == expected)
        let g = try LeaseGeometry.declared(by: Self.leader(sector: 4096, flags: flags), at: "x:0")
        #expect(g.alignment == expected)
    }

    @Test("a sector size other than 512 or 4096 is refused, naming the place and the size",
          arguments: [UInt32(0), 1024, 2048, 8192, 0xFFFF_FFFF])
    func declaredBadSector(sector: UInt32) {
        expectTenureError(.invalidGeometry, message: ["/dev/sdz:2097152", String(sector)]) {
            _ = try LeaseGeometry.declared(by: Self.leader(sector: sector, flags: 0x10), at: "/dev/sdz:2097152")
        }
    }

    @Test("512-byte sectors declaring a larger align are refused", arguments: [UInt32(0x20), 0x40, 0x80])
    func declaredBadPair(flags: UInt32) {
        expectTenureError(.invalidGeometry, message: ["512"]) {
            _ = try LeaseGeometry.declared(by: Self.leader(sector: 512, flags: flags), at: "/dev/sdz:0")
        }
    }

    @Test("a refused declared pair names the place it was read from")
    func declaredBadPairNamesPlace() {
        // declared(by:at:) promises to name where the record was read; the
        // sector-size error does, the pair error (rethrown from init) does not.
        expectTenureError(.invalidGeometry, message: ["/dev/sdz:0"]) {
            _ = try LeaseGeometry.declared(by: Self.leader(sector: 512, flags: 0x80), at: "/dev/sdz:0")
        }
    }

    // MARK: Offsets inside an area

    @Test("delta lease offsets: host N in sector N-1", arguments: valid)
    func deltaOffsets(sector: SectorSize, align: Alignment, maxHosts: Int, flag: UInt32) throws {
        let g = try LeaseGeometry(sectorSize: sector, alignment: align)
        #expect(g.deltaLeaseOffset(of: HostID(1)) == 0)
        #expect(g.deltaLeaseOffset(of: HostID(2)) == sector.bytes)
        #expect(g.deltaLeaseOffset(of: HostID(3)) == 2 * sector.bytes)
        #expect(g.deltaLeaseOffset(of: HostID(UInt64(maxHosts))) == (maxHosts - 1) * sector.bytes)
        #expect(g.deltaLeaseOffset(of: HostID(UInt64(maxHosts))) + sector.bytes <= align.bytes)
    }

    @Test("resource offsets: request in sector 1, host h's dblock in sector h+1", arguments: valid)
    func resourceOffsets(sector: SectorSize, align: Alignment, maxHosts: Int, flag: UInt32) throws {
        let g = try LeaseGeometry(sectorSize: sector, alignment: align)
        #expect(g.requestOffset == sector.bytes)
        #expect(g.dblockOffset(of: HostID(1)) == 2 * sector.bytes)
        #expect(g.dblockOffset(of: HostID(3)) == 4 * sector.bytes)
        #expect(g.dblockOffset(of: HostID(UInt64(maxHosts))) == (maxHosts + 1) * sector.bytes)
        #expect(g.dblockOffset(of: HostID(UInt64(maxHosts))) + sector.bytes <= align.bytes)
        #expect(g.resourceReadLength(numHosts: maxHosts) == (maxHosts + 2) * sector.bytes)
        #expect(g.resourceReadLength(numHosts: 0) == 2 * sector.bytes)
        #expect(g.resourceReadLength(numHosts: maxHosts) <= align.bytes)
    }

    @Test("sanlock wrote host 3's dblock at byte 2048 of a 512/1M area (sector 4)")
    func dblockOffsetMatchesSanlock() {
        // The acquire capture changed exactly sectors 0 and 4 of the area.
        #expect(LeaseGeometry.standard512.dblockOffset(of: HostID(3)) == 2048)
        #expect(LeaseGeometry.standard512.deltaLeaseOffset(of: HostID(3)) == 1024)   // acquire_id wrote sector 2
    }

    @Test("host ids outside 1...maxHosts are refused", arguments: valid)
    func hostIDRange(sector: SectorSize, align: Alignment, maxHosts: Int, flag: UInt32) throws {
        let g = try LeaseGeometry(sectorSize: sector, alignment: align)
        try g.validate(hostID: HostID(1))
        try g.validate(hostID: HostID(UInt64(maxHosts)))
        for bad in [UInt64(0), UInt64(maxHosts) + 1, .max] {
            expectTenureError(.invalidArgument, message: [String(bad), String(maxHosts)]) {
                try g.validate(hostID: HostID(bad))
            }
        }
    }

    // MARK: Area offsets on a device

    @Test("misaligned area offsets are refused, suggesting the neighbouring multiples")
    func misalignedArea() throws {
        let g = LeaseGeometry.standard512
        expectTenureError(.misaligned, message: ["1049088", "/dev/sdb"], remedy: ["1048576", "2097152"]) {
            try g.validate(areaOffset: 1_049_088, deviceSize: 1 << 30, path: "/dev/sdb")
        }
        expectTenureError(.misaligned, message: ["512"], remedy: ["0", "1048576"]) {
            try g.validate(areaOffset: 512, deviceSize: 1 << 30, path: "/dev/sdb")
        }
        let g8 = try LeaseGeometry(sectorSize: .bytes4096, alignment: .eightMiB)
        expectTenureError(.misaligned, message: ["1048576", "8M"], remedy: ["0", "8388608"]) {
            try g8.validate(areaOffset: 1_048_576, deviceSize: 1 << 30, path: "/dev/sdb")
        }
    }

    @Test("area offsets are accepted up to the last area that fits exactly", arguments: valid)
    func lastArea(sector: SectorSize, align: Alignment, maxHosts: Int, flag: UInt32) throws {
        let g = try LeaseGeometry(sectorSize: sector, alignment: align)
        let a = UInt64(align.bytes)
        let size = 5 * a
        try g.validate(areaOffset: 0, deviceSize: size, path: "/f")
        try g.validate(areaOffset: 4 * a, deviceSize: size, path: "/f")
        expectTenureError(.outOfBounds, message: [String(5 * a), "/f", String(size)], remedy: [String(6 * a)]) {
            try g.validate(areaOffset: 5 * a, deviceSize: size, path: "/f")
        }
        // One byte short of the last area.
        expectTenureError(.outOfBounds, message: [String(4 * a)]) {
            try g.validate(areaOffset: 4 * a, deviceSize: size - 1, path: "/f")
        }
        // An area too big for a tiny device.
        expectTenureError(.outOfBounds) {
            try g.validate(areaOffset: 0, deviceSize: a - UInt64(sector.bytes), path: "/f")
        }
    }

    @Test("offsets near the top of UInt64 do not overflow")
    func hugeOffset() {
        let top = UInt64.max / (1 << 20) * (1 << 20)     // a multiple of 1M
        expectTenureError(.outOfBounds) {
            try LeaseGeometry.standard512.validate(areaOffset: top, deviceSize: .max, path: "/f")
        }
    }

    // MARK: Parsing sizes

    @Test("sector sizes and aligns parse from what users type")
    func parsing() {
        #expect(SectorSize(parsing: "512") == .bytes512)
        #expect(SectorSize(parsing: "4096") == .bytes4096)
        #expect(SectorSize(parsing: "4k") == .bytes4096)
        #expect(SectorSize(parsing: "1024") == nil)
        #expect(Alignment(parsing: "1M") == .oneMiB)
        #expect(Alignment(parsing: "8m") == .eightMiB)
        #expect(Alignment(parsing: "2MiB") == .twoMiB)
        #expect(Alignment(parsing: "4194304") == .fourMiB)
        #expect(Alignment(parsing: "3M") == nil)
        #expect(Alignment(parsing: "16M") == nil)
    }
}
