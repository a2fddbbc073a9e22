import Testing
import TenureCore
import TenureFormat

@Suite("Paxos dblock validity")
struct DblockTests {
    static let written = PaxosDblock(decoding: SanlockGolden.dblock512AcquiredHost3)

    @Test("an all-zero block, checksum included, is valid: never written")
    func allZero() {
        let zero = PaxosDblock(decoding: [UInt8](repeating: 0, count: 56))
        #expect(zero == .empty)
        #expect(zero.isValid)
        // The checksum of 48 zero bytes is not zero, so this is a special case.
        #expect(sanlockRuleCRC([UInt8](repeating: 0, count: 48)) != 0)
        #expect(zero.computedChecksum != 0)
    }

    @Test("one flipped byte in the covered bytes or the checksum makes a written block invalid", arguments: 0..<52)
    func flippedWritten(i: Int) {
        var bytes = SanlockGolden.dblock512AcquiredHost3
        bytes[i] ^= 0x04
        #expect(!PaxosDblock(decoding: bytes).isValid)
    }

    @Test("one flipped byte in mbal, bal, inp, lver or the checksum of a zero block makes it invalid",
          arguments: Array(0..<24) + Array(40..<52))
    func flippedZero(i: Int) {
        // sanlock treats a block as blank only when checksum, mbal, bal, inp and
        // lver are all zero; any of these non-zero with a zero (or wrong) checksum is damage.
        var bytes = [UInt8](repeating: 0, count: 56)
        bytes[i] = 0x01
        #expect(!PaxosDblock(decoding: bytes).isValid)
    }

    @Test("the flags word is outside the checksum: flipping it keeps a written block valid", arguments: 52..<56)
    func flippedFlags(i: Int) {
        var bytes = SanlockGolden.dblock512AcquiredHost3
        bytes[i] ^= 0x01
        let d = PaxosDblock(decoding: bytes)
        #expect(d.isValid)
        #expect(d.isReleased == (i == 52))
    }

    @Test("released flag")
    func released() {
        #expect(PaxosDblock.releasedFlag == 0x1)
        var d = Self.written
        #expect(!d.isReleased)
        d.flags = PaxosDblock.releasedFlag
        #expect(d.isReleased)
        let bytes = d.encoded()
        #expect(Array(bytes[52..<56]) == [1, 0, 0, 0])
        // Same checksum as before: flags are not covered.
        #expect(Array(bytes[48..<52]) == Array(SanlockGolden.dblock512AcquiredHost3[48..<52]))
        let back = PaxosDblock(decoding: bytes)
        #expect(back.isReleased)
        #expect(back.isValid)
        // Other flag bits do not mean released.
        d.flags = 0xFFFF_FFFE
        #expect(!d.isReleased)
        d.flags = 0x8000_0001
        #expect(d.isReleased)
    }

    @Test("a decoded block with a stale checksum is invalid until sealed")
    func staleChecksum() {
        var d = Self.written
        d.mbal = 4
        #expect(!d.isValid)
        #expect(d.sealed.isValid)
        #expect(d.sealed.checksum == sanlockRuleCRC(d.encoded()[0..<48]))
    }

    @Test("the empty block encodes with the checksum of zeros, and that is valid too")
    func emptyEncoded() {
        // Tenure seals whatever it writes; sanlock writes a blank dblock as all
        // zeros. Both must read back as valid.
        let bytes = PaxosDblock.empty.encoded()
        #expect(Array(bytes[0..<48]) == [UInt8](repeating: 0, count: 48))
        #expect(readLE(bytes, at: 48, width: 4) == UInt64(sanlockRuleCRC([UInt8](repeating: 0, count: 48))))
        #expect(PaxosDblock(decoding: bytes).isValid)
    }
}
