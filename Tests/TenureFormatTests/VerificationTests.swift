import Testing
import TenureCore
import TenureFormat

/// `LeaderRecord.verified(as:lockspace:resource:at:)`: each refusal, its code,
/// and a message that names the place and what was found.
@Suite("Leader verification errors")
struct VerificationTests {
    static let place = "/dev/mapper/vg-leases:1048576"
    static let delta = LeaderRecord(decoding: SanlockGolden.delta512Init)
    static let paxos = LeaderRecord(decoding: SanlockGolden.paxos512Init)

    // MARK: Magic

    @Test("zero magic: never initialised")
    func zeroMagic() {
        let zero = LeaderRecord(decoding: [UInt8](repeating: 0, count: 200))
        for kind in [LeaseKind.delta, .paxos] {
            expectTenureError(.badMagic, message: [Self.place, "magic is zero", kind.description]) {
                try zero.verified(as: kind, at: Self.place)
            }
        }
    }

    @Test("the other kind's magic is named as such")
    func otherKind() {
        expectTenureError(.badMagic, message: [Self.place, "a resource lease", "lockspace"]) {
            try Self.paxos.verified(as: .delta, at: Self.place)
        }
        expectTenureError(.badMagic, message: [Self.place, "a lockspace host slot"]) {
            try Self.delta.verified(as: .paxos, at: Self.place)
        }
    }

    @Test("a cleared resource's magic")
    func clearedMagic() {
        var r = Self.paxos
        r.magic = 0x1128_2016
        #expect(Magic.paxosCleared == 0x1128_2016)
        expectTenureError(.badMagic, message: [Self.place, "cleared"]) {
            try r.sealed.verified(as: .paxos, at: Self.place)
        }
    }

    @Test("random magics are shown in hex", arguments: [UInt32(0xDEAD_BEEF), 0x0829_2011, 0x0104_2018, 1, 0xFFFF_FFFF])
    func randomMagic(magic: UInt32) {
        var r = Self.delta
        r.magic = magic
        let hex = "0x" + String(magic, radix: 16)
        expectTenureError(.badMagic, message: [Self.place, hex]) {
            try r.sealed.verified(as: .delta, at: Self.place)
        }
    }

    @Test("magic is checked before the checksum")
    func magicBeforeChecksum() {
        var bytes = SanlockGolden.delta512Init
        bytes[0] ^= 0xFF      // magic wrong, checksum now wrong too
        expectTenureError(.badMagic) {
            try LeaderRecord(decoding: bytes).verified(as: .delta, at: Self.place)
        }
    }

    // MARK: Version

    @Test("another major version is refused", arguments: [
        (LeaseKind.delta, UInt32(0x0004_0004)), (.delta, 0x0002_0004), (.delta, 0x0000_0003), (.delta, 0x0006_0004),
        (.paxos, 0x0007_0004), (.paxos, 0x0005_0004), (.paxos, 0xFFFF_0004), (.paxos, 0x0003_0004),
    ])
    func otherMajor(kind: LeaseKind, version: UInt32) {
        var r = kind == .delta ? Self.delta : Self.paxos
        r.version = version
        let readable = kind == .delta ? "0x3" : "0x6"
        expectTenureError(.unsupportedVersion, message: [Self.place, "0x" + String(version, radix: 16), readable]) {
            try r.sealed.verified(as: kind, at: Self.place)
        }
    }

    @Test("the same major with another minor is accepted", arguments: [UInt32(0x0000), 0x0001, 0x0005, 0xFFFF])
    func otherMinor(minor: UInt32) throws {
        var r = Self.delta
        r.version = 0x0003_0000 | minor
        try r.sealed.verified(as: .delta, lockspace: "LS", at: Self.place)
        var p = Self.paxos
        p.version = 0x0006_0000 | minor
        try p.sealed.verified(as: .paxos, lockspace: "LS", resource: "R1", at: Self.place)
    }

    // MARK: Checksum

    /// Offsets inside 0..<168 that hold an integer field or a name's used
    /// bytes (or its first NUL), after magic and version.
    static let fieldBytes: [Int] = Array(8..<56) + Array(56..<59) + Array(104..<107) + Array(152..<168)

    @Test("one flipped byte in a field inside 0..<168 is a checksum mismatch")
    func flippedFieldByte() {
        for golden in [SanlockGolden.paxos512Init, SanlockGolden.paxos512Acquired] {
            let stored = LeaderRecord(decoding: golden).checksum
            for i in Self.fieldBytes {
                var bytes = golden
                bytes[i] ^= 0x01
                let r = LeaderRecord(decoding: bytes)
                expectTenureError(.checksumMismatch, message: [Self.place, "0x" + String(stored, radix: 16)]) {
                    try r.verified(as: .paxos, at: Self.place)
                }
            }
        }
    }

    @Test("a flipped byte in the checksum itself is a mismatch", arguments: 168..<172)
    func flippedChecksumByte(i: Int) {
        var bytes = SanlockGolden.delta512AcquiredHost3
        bytes[i] ^= 0x80
        let found = LeaderRecord(decoding: bytes).checksum
        expectTenureError(.checksumMismatch, message: [Self.place, "0x" + String(found, radix: 16), "0x90d67a9e"]) {
            try LeaderRecord(decoding: bytes).verified(as: .delta, at: Self.place)
        }
    }

    @Test("a flipped byte in the NUL padding of a name is a checksum mismatch, as in sanlock")
    func flippedNamePaddingByte() {
        // sanlock sums the raw bytes 0..<168, padding included, so it rejects
        // these records. The decoded name stops at its first NUL, so Tenure
        // must sum the bytes as read, not the re-encoded fields.
        let padding = Array(59..<104) + Array(107..<152)
        var accepted: [Int] = []
        for i in padding {
            var bytes = SanlockGolden.paxos512Init
            bytes[i] ^= 0x01
            #expect(sanlockRuleCRC(bytes[0..<168]) != 0x2073_a773, "the raw bytes no longer match at \(i)")
            do {
                try LeaderRecord(decoding: bytes).verified(as: .paxos, at: Self.place)
                accepted.append(i)
            } catch let e as TenureError {
                #expect(e.code == .checksumMismatch)
                #expect(e.message.contains(Self.place))
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
        #expect(accepted == [], "damaged records accepted, flipped byte at these offsets")
    }

    @Test("bytes after the checksum are not covered")
    func uncoveredBytes() throws {
        for i in 172..<200 {
            var bytes = SanlockGolden.delta512AcquiredHost3
            bytes[i] ^= 0x01
            try LeaderRecord(decoding: bytes).verified(as: .delta, at: Self.place)
        }
    }

    // MARK: Names

    @Test("wrong lockspace name")
    func wrongLockspace() {
        expectTenureError(.nameMismatch, message: [Self.place, "\"LS\"", "\"OTHER\""]) {
            try Self.delta.verified(as: .delta, lockspace: "OTHER", at: Self.place)
        }
        expectTenureError(.nameMismatch, message: [Self.place, "\"LS\"", "\"L\""]) {
            try Self.paxos.verified(as: .paxos, lockspace: "L", resource: "R1", at: Self.place)
        }
        // A name that is a prefix-extension of the stored one is different too.
        expectTenureError(.nameMismatch, message: ["\"LS2\""]) {
            try Self.delta.verified(as: .delta, lockspace: "LS2", at: Self.place)
        }
    }

    @Test("wrong resource name")
    func wrongResource() {
        expectTenureError(.nameMismatch, message: [Self.place, "\"R1\"", "\"R2\""]) {
            try Self.paxos.verified(as: .paxos, lockspace: "LS", resource: "R2", at: Self.place)
        }
        expectTenureError(.nameMismatch, message: [Self.place, "\"R1\"", "\"r1\""]) {
            try Self.paxos.verified(as: .paxos, resource: "r1", at: Self.place)
        }
    }

    @Test("a 48-byte name with no NUL verifies against the same name")
    func fullWidthName() throws {
        let name = try LeaseName(String(repeating: "x", count: 48))
        var r = LeaderRecord(kind: .paxos, geometry: .standard512, spaceName: name, resourceName: name)
        r.numHosts = 2000
        let back = LeaderRecord(decoding: r.encoded())
        try back.verified(as: .paxos, lockspace: name, resource: name, at: Self.place)
        expectTenureError(.nameMismatch) {
            try back.verified(as: .paxos, lockspace: try LeaseName(String(repeating: "x", count: 47)), at: Self.place)
        }
    }
}
