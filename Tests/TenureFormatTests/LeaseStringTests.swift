import Testing
import TenureCore
import TenureFormat

@Suite("Lockspace strings")
struct LockspaceStringTests {
    @Test("valid forms and what they mean", arguments: [
        ("LS:1:/var/lib/tenure/leases:0", "LS", UInt64(1), "/var/lib/tenure/leases", UInt64(0)),
        ("LS:0:/dev/sdb:1048576", "LS", 0, "/dev/sdb", 1_048_576),
        ("vdsm-sd:2000:/dev/vg/ids:0", "vdsm-sd", 2000, "/dev/vg/ids", 0),
        ("LS:3:/dev/sdb:1M", "LS", 3, "/dev/sdb", 1 << 20),
        ("LS:3:/dev/sdb:8m", "LS", 3, "/dev/sdb", 8 << 20),
        ("LS:3:/dev/sdb:512K", "LS", 3, "/dev/sdb", 512 << 10),
        ("LS:3:/dev/sdb:2G", "LS", 3, "/dev/sdb", 2 << 30),
        ("LS:3:/mnt/a\\:b:0", "LS", 3, "/mnt/a:b", 0),
        ("LS:3:/mnt/my\\ disk/leases:0", "LS", 3, "/mnt/my disk/leases", 0),
        ("LS:3:/mnt/back\\\\slash:0", "LS", 3, "/mnt/back\\slash", 0),
        ("LS:3:/dev/sdb:18446744073709551615", "LS", 3, "/dev/sdb", .max),
    ])
    func valid(text: String, name: String, host: UInt64, path: String, offset: UInt64) throws {
        let spec = try LockspaceSpec(parsing: text)
        #expect(spec.name == (try LeaseName(name)))
        #expect(spec.hostID == HostID(host))
        #expect(spec.disk.path == path)
        #expect(spec.disk.offset == offset)
        // The string form parses back to the same value...
        #expect(try LockspaceSpec(parsing: spec.description) == spec)
    }

    @Test("the string form is the canonical input, escapes included", arguments: [
        "LS:1:/var/lib/tenure/leases:0",
        "LS:3:/mnt/a\\:b:0",
        "LS:3:/mnt/my\\ disk/leases:1048576",
        "LS:3:/mnt/x\\:y\\ z\\\\w:0",
    ])
    func descriptionIsCanonical(text: String) throws {
        #expect(try LockspaceSpec(parsing: text).description == text)
    }

    @Test("K/M/G offsets print as bytes")
    func suffixedOffsetPrintsBytes() throws {
        #expect(try LockspaceSpec(parsing: "LS:1:/d:1M").description == "LS:1:/d:1048576")
    }

    @Test("a lockspace name with ':' or ' ' survives the string form")
    func escapedNameRoundtrip() throws {
        // The parser accepts escapes in every field, so "L\:S" names the
        // lockspace "L:S". ResourceSpec escapes its names when printing;
        // LockspaceSpec does not, so its string form does not parse back.
        let spec = try LockspaceSpec(parsing: "L\\:S:1:/d:0")
        #expect(spec.name == (try checkedName("L:S")))
        #expect(spec.description == "L\\:S:1:/d:0")
        let reparsed = try? LockspaceSpec(parsing: spec.description)
        #expect(reparsed == spec)
    }

    @Test("wrong number of fields", arguments: [
        ("LS:1:/d", 3), ("LS", 1), ("", 1), ("LS:1:/d:0:5", 5), ("LS:1:/d:0:/e:0", 6),
    ])
    func fieldCount(text: String, count: Int) {
        expectTenureError(.invalidArgument, message: ["\"\(text)\"", "\(count) field", "NAME:HOST_ID:PATH:OFFSET"]) {
            _ = try LockspaceSpec(parsing: text)
        }
    }

    @Test("an escaped ':' is not a separator")
    func escapedSeparatorCount() {
        expectTenureError(.invalidArgument, message: ["3 fields"]) {
            _ = try LockspaceSpec(parsing: "LS:1:/d\\:0")
        }
    }

    @Test("non-numeric host id", arguments: ["x", "", "-1", "1.5", "0x3", "18446744073709551616"])
    func badHostID(id: String) {
        let text = "LS:\(id):/dev/sdb:0"
        expectTenureError(.invalidArgument, message: ["\"\(id)\"", text]) {
            _ = try LockspaceSpec(parsing: text)
        }
    }

    @Test("bad offsets", arguments: [
        "abc", "", "1T", "M", "-1", "1.5M", "0x100000", "1 M",
        "18446744073709551616",      // 2^64
        "17179869184G",              // 2^34 GiB = 2^64
        "18014398509481984K",        // 2^54 KiB = 2^64
    ])
    func badOffset(offset: String) {
        let text = "LS:1:/dev/sdb:\(offset)"
        expectTenureError(.invalidArgument, message: ["\"\(offset)\"", "offset"]) {
            _ = try LockspaceSpec(parsing: text)
        }
    }

    @Test("the largest offsets that do not overflow")
    func largestOffsets() throws {
        #expect(try LockspaceSpec(parsing: "LS:1:/d:17179869183G").disk.offset == 17_179_869_183 << 30)
        #expect(try LockspaceSpec(parsing: "LS:1:/d:17592186044415M").disk.offset == 17_592_186_044_415 << 20)
    }

    @Test("a trailing backslash is refused")
    func trailingBackslash() {
        expectTenureError(.invalidArgument, message: ["LS:1:/d:0\\", "backslash"]) {
            _ = try LockspaceSpec(parsing: "LS:1:/d:0\\")
        }
    }

    @Test("an over-long or empty name, an empty path")
    func badNameOrPath() {
        let long = String(repeating: "L", count: 49)
        expectTenureError(.nameTooLong, message: [long, "49", "lockspace name"]) {
            _ = try LockspaceSpec(parsing: "\(long):1:/d:0")
        }
        #expect((try? LockspaceSpec(parsing: "\(String(repeating: "L", count: 48)):1:/d:0")) != nil)
        expectTenureError(.invalidArgument, message: ["empty name"]) {
            _ = try LockspaceSpec(parsing: ":1:/d:0")
        }
        expectTenureError(.invalidArgument, message: ["path is empty"]) {
            _ = try LockspaceSpec(parsing: "LS:1::0")
        }
    }

    @Test("path length limit: 1023 bytes")
    func pathLimit() throws {
        #expect(LeaseDisk.maxPathBytes == 1023)
        let ok = "/" + String(repeating: "p", count: 1022)
        #expect(try LockspaceSpec(parsing: "LS:1:\(ok):0").disk.path == ok)
        expectTenureError(.invalidArgument, message: ["1024"]) {
            _ = try LockspaceSpec(parsing: "LS:1:\(ok)p:0")
        }
    }
}

@Suite("Resource strings")
struct ResourceStringTests {
    @Test("one disk")
    func oneDisk() throws {
        let r = try ResourceSpec(parsing: "LS:R1:/dev/sdb:1048576")
        #expect(r.lockspace == "LS")
        #expect(r.name == "R1")
        #expect(r.disks == [try LeaseDisk(path: "/dev/sdb", offset: 1_048_576)])
        #expect(r.lver == nil)
        #expect(!r.shared)
        #expect(r.description == "LS:R1:/dev/sdb:1048576")
    }

    @Test("up to four disks", arguments: 1...4)
    func multiDisk(count: Int) throws {
        let pairs = (0..<count).map { "/dev/sd\(["b", "c", "d", "e"][$0]):\($0 + 1)M" }
        let text = "LS:R:" + pairs.joined(separator: ":")
        let r = try ResourceSpec(parsing: text)
        #expect(ResourceSpec.maxDisks == 4)
        #expect(r.disks.count == count)
        for (i, d) in r.disks.enumerated() {
            #expect(d.path == "/dev/sd\(["b", "c", "d", "e"][i])")
            #expect(d.offset == UInt64(i + 1) << 20)
        }
        #expect(try ResourceSpec(parsing: r.description) == r)
        // With a suffix, too.
        let withLver = try ResourceSpec(parsing: text + ":7")
        #expect(withLver.disks == r.disks)
        #expect(withLver.lver == LeaseVersion(7))
        let withSH = try ResourceSpec(parsing: text + ":SH")
        #expect(withSH.disks == r.disks)
        #expect(withSH.shared)
    }

    @Test("five disks are refused, with or without a suffix", arguments: ["", ":3", ":SH"])
    func fiveDisks(suffix: String) {
        let text = "LS:R:/a:0:/b:0:/c:0:/d:0:/e:0" + suffix
        expectTenureError(.invalidArgument, message: ["5 disks", "4", text]) {
            _ = try ResourceSpec(parsing: text)
        }
    }

    @Test(":LVER and :SH suffixes", arguments: [
        ("LS:R:/d:0:0", UInt64?(0), false),
        ("LS:R:/d:0:42", 42, false),
        ("LS:R:/d:0:18446744073709551615", .max, false),
        ("LS:R:/d:0:SH", nil, true),
        ("LS:R:/d:0:sh", nil, true),
    ])
    func suffixes(text: String, lver: UInt64?, shared: Bool) throws {
        let r = try ResourceSpec(parsing: text)
        #expect(r.lver == lver.map { LeaseVersion($0) })
        #expect(r.shared == shared)
        #expect(try ResourceSpec(parsing: r.description) == r)
    }

    @Test("the string form ends in the lver or SH", arguments: [
        "LS:R:/d:0:42", "LS:R:/d:0:SH", "LS:R:/a:0:/b:1048576:9",
    ])
    func descriptionWithSuffix(text: String) throws {
        #expect(try ResourceSpec(parsing: text).description == text)
    }

    @Test("a bad suffix names itself", arguments: ["xyz", "EX", "-1", "18446744073709551616", ""])
    func badSuffix(suffix: String) {
        let text = "LS:R:/d:0:\(suffix)"
        expectTenureError(.invalidArgument, message: ["\"\(suffix)\"", text]) {
            _ = try ResourceSpec(parsing: text)
        }
    }

    @Test("too few fields", arguments: [("LS:R:/d", 3), ("LS:R", 2), ("LS", 1)])
    func tooFew(text: String, count: Int) {
        expectTenureError(.invalidArgument, message: ["\"\(text)\"", "\(count) field"]) {
            _ = try ResourceSpec(parsing: text)
        }
    }

    @Test("non-numeric offsets on any disk", arguments: ["LS:R:/d:x", "LS:R:/a:0:/b:y", "LS:R:/a:0:/b:1Q:5"])
    func badOffsets(text: String) {
        expectTenureError(.invalidArgument, message: ["offset", text]) {
            _ = try ResourceSpec(parsing: text)
        }
    }

    @Test("escapes in paths and names roundtrip through the string form", arguments: [
        "LS:R:/mnt/a\\:b\\ c:0",
        "L\\:S:R\\ 1:/d:0",
        "LS:R:/x\\\\y:0:/mnt/p\\ q:1048576:SH",
    ])
    func escapes(text: String) throws {
        let r = try ResourceSpec(parsing: text)
        #expect(r.description == text)
        #expect(try ResourceSpec(parsing: r.description) == r)
    }

    @Test("what escapes mean")
    func escapeMeaning() throws {
        let r = try ResourceSpec(parsing: "L\\:S:R\\ 1:/mnt/a\\:b\\ c:0")
        #expect(r.lockspace == (try checkedName("L:S")))
        #expect(r.name == (try checkedName("R 1")))
        #expect(r.disks[0].path == "/mnt/a:b c")
        #expect(LeaseStringSyntax.escape("/a:b c\\d") == "/a\\:b\\ c\\\\d")
        #expect(try LeaseStringSyntax.split("a\\:b:c\\ d:\\e") == ["a:b", "c d", "e"])
    }

    @Test("names too long, or empty")
    func badNames() {
        let long = String(repeating: "r", count: 49)
        expectTenureError(.nameTooLong, message: ["resource name", "49"]) {
            _ = try ResourceSpec(parsing: "LS:\(long):/d:0")
        }
        expectTenureError(.nameTooLong, message: ["lockspace name", "49"]) {
            _ = try ResourceSpec(parsing: "\(long):R:/d:0")
        }
        expectTenureError(.invalidArgument, message: ["empty"]) {
            _ = try ResourceSpec(parsing: "LS::/d:0")
        }
        expectTenureError(.invalidArgument, message: ["empty"]) {
            _ = try ResourceSpec(parsing: ":R:/d:0")
        }
    }

    @Test("a trailing backslash is refused")
    func trailingBackslash() {
        expectTenureError(.invalidArgument, message: ["backslash"]) {
            _ = try ResourceSpec(parsing: "LS:R:/d:0\\")
        }
    }

    @Test("random specs roundtrip through the string form")
    func randomRoundtrip() throws {
        let seed: UInt64 = 0x57_2123
        var rng = SeededGenerator(seed: seed)
        let pathPieces = ["/", "dev", "sd", "a", ":", " ", "\\", "é", "-", "1"]
        for round in 0..<500 {
            var disks: [LeaseDisk] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                var path = "/"
                for _ in 0..<Int.random(in: 1...20, using: &rng) { path += pathPieces.randomElement(using: &rng)! }
                disks.append(try LeaseDisk(path: path, offset: rng.edgy64()))
            }
            var lockspace = try rng.leaseName()
            if lockspace.isEmpty { lockspace = "L" }
            var name = try rng.leaseName()
            if name.isEmpty { name = "N" }
            let suffix = Int.random(in: 0..<3, using: &rng)
            let spec = ResourceSpec(lockspace: lockspace, name: name, disks: disks,
                                    lver: suffix == 1 ? LeaseVersion(rng.edgy64()) : nil, shared: suffix == 2)
            #expect(try ResourceSpec(parsing: spec.description) == spec, "seed \(seed) round \(round): \(spec)")
        }
    }
}
