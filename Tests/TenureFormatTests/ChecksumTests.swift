import Testing
import TenureFormat

@Suite("sanlock's checksum")
struct ChecksumTests {
    @Test("the independent reference CRC-32C gives the published check value")
    func referenceImplementationIsRight() {
        // If this fails, the helper below is wrong, not Tenure.
        #expect(standardCRC32C(Array("123456789".utf8)) == 0xE306_9283)
        #expect(standardCRC32C([UInt8]()) == 0)
    }

    @Test("constants are sanlock's")
    func constants() {
        #expect(LeaseChecksum.seed == 0xFFFF_FFFE)
        #expect(LeaseChecksum.seed == ~UInt32(1))
        #expect(LeaseChecksum.polynomial == 0x82F6_3B78)
    }

    @Test("reproduces the checksum sanlock stored in each leader record", arguments: GoldenLeader.all)
    func reproducesGoldenLeaderChecksums(golden: GoldenLeader) {
        let covered = golden.bytes[0..<LeaderRecord.checksummedBytes]
        #expect(LeaderRecord.checksummedBytes == 168)
        let stored = UInt32(readLE(golden.bytes, at: 168, width: 4))
        #expect(stored == golden.printed.checksum)
        #expect(LeaseChecksum.compute(covered) == golden.printed.checksum)
        #expect(sanlockRuleCRC(covered) == golden.printed.checksum)
        #expect(LeaderRecord(decoding: golden.bytes).computedChecksum == golden.printed.checksum)
    }

    @Test("differs from standard CRC-32C of the same bytes", arguments: GoldenLeader.all)
    func differsFromStandard(golden: GoldenLeader) {
        let covered = golden.bytes[0..<LeaderRecord.checksummedBytes]
        #expect(LeaseChecksum.compute(covered) != standardCRC32C(covered))
    }

    @Test("reproduces the checksum sanlock stored in a dblock")
    func reproducesGoldenDblockChecksum() {
        let golden = SanlockGolden.dblock512AcquiredHost3
        let covered = golden[0..<PaxosDblock.checksummedBytes]
        #expect(PaxosDblock.checksummedBytes == 48)
        #expect(LeaseChecksum.compute(covered) == 0xd4dc_9a8c)
        #expect(sanlockRuleCRC(covered) == 0xd4dc_9a8c)
        #expect(standardCRC32C(covered) != 0xd4dc_9a8c)
    }

    @Test("of no bytes is the seed itself: no final XOR")
    func emptyInput() {
        #expect(LeaseChecksum.compute([UInt8]()) == 0xFFFF_FFFE)
    }

    @Test("agrees with the bitwise reference on random buffers")
    func randomBuffers() {
        let seed: UInt64 = 0x7E17_C0DE
        var rng = SeededGenerator(seed: seed)
        for round in 0..<300 {
            let count = Int.random(in: 0...700, using: &rng)
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let got = LeaseChecksum.compute(bytes)
            #expect(got == sanlockRuleCRC(bytes), "seed \(seed) round \(round) count \(count)")
        }
    }

    @Test("works on slices and other collections the same as on arrays")
    func collectionsAgree() {
        let bytes = SanlockGolden.paxos512Acquired
        let array = Array(bytes[0..<168])
        let slice = bytes[0..<168]
        let shifted = ([0xFF] + bytes)[1..<169]
        #expect(LeaseChecksum.compute(array) == 0xf74a_9b48)
        #expect(LeaseChecksum.compute(slice) == 0xf74a_9b48)
        #expect(LeaseChecksum.compute(shifted) == 0xf74a_9b48)
    }
}
