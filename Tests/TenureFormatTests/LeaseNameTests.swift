import Testing
import TenureCore
import TenureFormat

@Suite("Lease names")
struct LeaseNameTests {
    @Test("up to 48 bytes is accepted and fills the on-disk field exactly", arguments: [0, 1, 47, 48])
    func lengthsAccepted(count: Int) throws {
        #expect(LeaseName.maxBytes == 48)
        let text = String(repeating: "n", count: count)
        let name = try LeaseName(text)
        #expect(name.utf8.count == count)
        #expect(name.description == text)
        #expect(name.isEmpty == (count == 0))
    }

    @Test("49 bytes or more is refused with the length in the message", arguments: [49, 50, 100])
    func lengthsRefused(count: Int) {
        let text = String(repeating: "n", count: count)
        expectTenureError(.nameTooLong, message: [String(count), "48", "lockspace name"], remedy: ["48"]) {
            _ = try LeaseName(text, what: "lockspace name")
        }
    }

    @Test("length is counted in UTF-8 bytes, not characters")
    func multibyte() throws {
        let e = "é"                                          // 2 bytes
        #expect(try LeaseName(String(repeating: e, count: 24)).utf8.count == 48)
        expectTenureError(.nameTooLong, message: ["49"]) {
            _ = try LeaseName(String(repeating: e, count: 24) + "a")   // 25 characters, 49 bytes
        }
        #expect(try LeaseName(String(repeating: "🙂", count: 12)).utf8.count == 48)
        expectTenureError(.nameTooLong, message: ["52"]) {
            _ = try LeaseName(String(repeating: "🙂", count: 13))       // 13 characters, 52 bytes
        }
        expectTenureError(.nameTooLong, message: ["51"]) {
            _ = try LeaseName(String(repeating: "字", count: 17))       // 17 characters, 51 bytes
        }
    }

    @Test("a NUL byte is refused, anywhere", arguments: ["\u{0}", "a\u{0}", "\u{0}b", "ab\u{0}cd"])
    func nulRefused(text: String) {
        expectTenureError(.invalidArgument, message: ["NUL", "resource name"]) {
            _ = try LeaseName(text, what: "resource name")
        }
    }

    @Test("names compare by bytes, like the on-disk field")
    func byteEquality() throws {
        // Canonically equivalent strings are equal as Swift Strings but are
        // different bytes on disk, so they are different lease names.
        let composed = try checkedName("caf\u{E9}")
        let decomposed = try checkedName("cafe\u{301}")
        #expect("caf\u{E9}" == "cafe\u{301}")
        #expect(composed != decomposed)
        #expect(composed == (try checkedName("caf\u{E9}")))
        #expect(composed.utf8 == [0x63, 0x61, 0x66, 0xC3, 0xA9])
    }

    @Test("a literal and a checked name are the same value")
    func literal() throws {
        let literal: LeaseName = "LS"
        #expect(literal == (try checkedName("LS")))
        #expect(LeaseName.empty == (try checkedName("")))
    }

    @Test("multibyte names survive a leader record roundtrip")
    func multibyteOnDisk() throws {
        let name = try LeaseName(String(repeating: "é", count: 20) + "字🙂a")   // 40 + 3 + 4 + 1 = 48 bytes
        #expect(name.utf8.count == 48)
        var r = LeaderRecord(kind: .paxos, geometry: .standard512, spaceName: name, resourceName: "R")
        r.numHosts = 2000
        let bytes = r.encoded()
        #expect(Array(bytes[56..<104]) == Array((String(repeating: "é", count: 20) + "字🙂a").utf8))
        let back = LeaderRecord(decoding: bytes)
        #expect(back.spaceName == name)
        #expect(back.spaceName.description == String(repeating: "é", count: 20) + "字🙂a")
    }
}
