import Foundation
import Testing
import TenureTestSupport

/// Where a layout is tested: a regular file, or a loop device with the
/// layout's sector size (root only).
enum Medium: String, Sendable, CaseIterable, CustomStringConvertible {
    case file, loopDevice
    var description: String { rawValue }
}

/// A place to lay leases out: `path`, kept alive with whatever backs it.
struct Target {
    let path: String
    let keepAlive: AnyObject

    init(_ medium: Medium, pair: LayoutPair, scratch: Scratch) throws {
        let size = 4 * pair.alignBytes
        switch medium {
        case .file:
            path = try scratch.file("compat.img", size: size)
            keepAlive = scratch
        case .loopDevice:
            let loop = try LoopDevice(in: scratch, size: size, sectorSize: pair.sector)
            path = loop.device
            keepAlive = loop
        }
    }
}

/// The cases to run: every layout on a file; on loop devices too when root.
let compatibilityCases: [(LayoutPair, Medium)] = LayoutPair.all.flatMap { pair in
    (Harness.canUseLoopDevices ? Medium.allCases : [.file]).map { (pair, $0) }
}

/// sanlock 3.8's own tools are the oracle: they must read what Tenure
/// writes, and Tenure must read what they write, with the same meaning.
@Suite("Compatibility with sanlock's tools", .ownThreads,
       .enabled(if: Harness.hasSanlock, "needs Debian's sanlock package (Tools/install-deps.sh installs it)"))
struct SanlockCompatibilityTests {
    /// The leader fields both tools print, compared as text.
    static let leaderFields = ["magic", "version", "flags", "sector_size", "num_hosts", "max_hosts", "owner_id",
                               "owner_generation", "lver", "space_name", "resource_name", "timestamp", "checksum", "io_timeout"]

    /// Tenure's JSON leader rendered the way `sanlock direct read_leader` prints it.
    static func sanlockStyle(_ leader: [String: Any]) -> [String: String] {
        var out: [String: String] = [:]
        for field in leaderFields {
            switch leader[field] {
            case let text as String: out[field] = text
            case let number as NSNumber: out[field] = number.stringValue
            default: out[field] = "<missing>"
            }
        }
        return out
    }

    @Test("sanlock reads what tenure direct init wrote", arguments: compatibilityCases)
    func sanlockReadsTenure(_ pair: LayoutPair, _ medium: Medium) throws {
        let scratch = try Scratch()
        let target = try Target(medium, pair: pair, scratch: scratch)
        let path = target.path, a = pair.alignBytes
        let layout = ["--sector-size", String(pair.sector), "--align", pair.align]
        try Harness.tenureOK(["direct", "init", "-s", "tls:0:\(path):0", "--io-timeout", "7"] + layout)
        try Harness.tenureOK(["direct", "init", "-r", "tls:vm-disk.1:\(path):\(a)", "--max-hosts", "64"] + layout)

        let ls = try Harness.sanlockLeader("-s", "tls:1:\(path):0", sector: pair.sector, align: pair.align)
        #expect(ls["read_leader"] == "done 0", "sanlock rejected the lockspace: \(ls)")
        #expect(ls["magic"] == "0x12212010")
        #expect(ls["version"] == "0x30004")
        #expect(ls["flags"].flatMap { Int($0.dropFirst(2), radix: 16) } == pair.alignFlag)
        #expect(ls["sector_size"] == String(pair.sector))
        #expect(ls["space_name"] == "tls")
        #expect(ls["io_timeout"] == "7")
        #expect(ls["timestamp"] == "0" && ls["owner_id"] == "0", "a fresh slot is free")

        let res = try Harness.sanlockLeader("-r", "tls:vm-disk.1:\(path):\(a)", sector: pair.sector, align: pair.align)
        #expect(res["read_leader"] == "done 0", "sanlock rejected the resource: \(res)")
        #expect(res["magic"] == "0x6152010")
        #expect(res["version"] == "0x60004")
        #expect(res["sector_size"] == String(pair.sector))
        #expect(res["num_hosts"] == "64")
        #expect(res["max_hosts"] == String(pair.maxHosts))
        #expect(res["space_name"] == "tls")
        #expect(res["resource_name"] == "vm-disk.1")
        #expect(res["lver"] == "0" && res["owner_id"] == "0" && res["timestamp"] == "0")

        let dump = try Harness.sanlock(["direct", "dump", path, "-Z", String(pair.sector), "-A", pair.align])
        let row = dump.stdout.split(separator: "\n").first { $0.contains("vm-disk.1") }
        #expect(row?.contains(String(format: "%08d", a)) == true, "sanlock dump lacks the resource row:\n\(dump.stdout)")
    }

    @Test("tenure reads what sanlock direct init wrote", arguments: compatibilityCases)
    func tenureReadsSanlock(_ pair: LayoutPair, _ medium: Medium) throws {
        let scratch = try Scratch()
        let target = try Target(medium, pair: pair, scratch: scratch)
        let path = target.path, a = pair.alignBytes
        let layout = ["-Z", String(pair.sector), "-A", pair.align]
        try Harness.sanlock(["direct", "init", "-s", "sls:0:\(path):0"] + layout)
        try Harness.sanlock(["direct", "init", "-r", "sls:res_9:\(path):\(2 * a)"] + layout)

        // The lockspace: geometry from the record itself, host 1's slot field by field.
        let ls = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "sls:1:\(path):0", "--json"]).stdout)
        #expect(ls["sector_size"] as? Int == pair.sector)
        #expect(ls["align"] as? Int == a)
        #expect(ls["max_hosts"] as? Int == pair.maxHosts)
        let sanlockLS = try Harness.sanlockLeader("-s", "sls:1:\(path):0", sector: pair.sector, align: pair.align)
        let tenureLS = Self.sanlockStyle(ls["leader"] as? [String: Any] ?? [:])
        for field in Self.leaderFields {
            #expect(tenureLS[field] == sanlockLS[field], "lockspace \(field): tenure \(tenureLS[field] ?? "-"), sanlock \(sanlockLS[field] ?? "-")")
        }

        // The resource.
        let res = try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "sls:res_9:\(path):\(2 * a)", "--json"]).stdout)
        #expect(res["state"] as? String == "free")
        let sanlockRes = try Harness.sanlockLeader("-r", "sls:res_9:\(path):\(2 * a)", sector: pair.sector, align: pair.align)
        let tenureRes = Self.sanlockStyle(res["leader"] as? [String: Any] ?? [:])
        for field in Self.leaderFields {
            #expect(tenureRes[field] == sanlockRes[field], "resource \(field): tenure \(tenureRes[field] ?? "-"), sanlock \(sanlockRes[field] ?? "-")")
        }

        // dump finds the resource at its offset.
        let dump = try Harness.tenureOK(["direct", "dump", path, "--json"]).stdout
        #expect(dump.contains("\"resource\":\"res_9\"") || dump.contains("\"name\":\"res_9\""), "tenure dump lacks res_9:\n\(dump)")
        #expect(dump.contains("\(2 * a)"), "tenure dump lacks the offset \(2 * a):\n\(dump)")
    }

    /// A lease Tenure acquired shows its owner, generation and lver in
    /// sanlock's read_leader; a released one shows free.
    @Test("sanlock sees the owner, generation and lver of a lease Tenure holds")
    func sanlockSeesTenureHolder() throws {
        let scratch = try Scratch()
        let path = try scratch.file("held.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "hl", "--path", path, "--resources", "2", "--io-timeout", "1", "--max-hosts", "16"])
        // Join twice so the generation is 2, and take the lease twice so lver is 2.
        try Harness.tenureOK(["direct", "acquire-id", "-s", "hl:7:\(path):0", "--host-name", "node7", "--io-timeout", "1"])
        try Harness.tenureOK(["direct", "release-id", "-s", "hl:7:\(path):0"])
        try Harness.tenureOK(["direct", "acquire-id", "-s", "hl:7:\(path):0", "--host-name", "node7", "--io-timeout", "1"])
        try Harness.tenureOK(["direct", "acquire", "-r", "hl:R0:\(path):1M", "--host-id", "7", "-s", "hl:7:\(path):0"])
        try Harness.tenureOK(["direct", "release", "-r", "hl:R0:\(path):1M", "--host-id", "7", "-s", "hl:7:\(path):0"])
        let acquired = try Harness.tenureOK(["direct", "acquire", "-r", "hl:R0:\(path):1M", "--host-id", "7", "-s", "hl:7:\(path):0", "--json"])
        #expect(try Harness.json(acquired.stdout)["lver"] as? Int == 2)

        let host = try Harness.sanlockLeader("-s", "hl:7:\(path):0", sector: 512, align: "1M")
        #expect(host["owner_id"] == "7")
        #expect(host["owner_generation"] == "2")
        #expect(host["resource_name"] == "node7")
        #expect(host["timestamp"] != "0")

        let lease = try Harness.sanlockLeader("-r", "hl:R0:\(path):1M", sector: 512, align: "1M")
        #expect(lease["read_leader"] == "done 0", "\(lease)")
        #expect(lease["owner_id"] == "7")
        #expect(lease["owner_generation"] == "2")
        #expect(lease["lver"] == "2")
        #expect(lease["timestamp"] != "0")
        #expect(lease["num_hosts"] == "16")

        try Harness.tenureOK(["direct", "release", "-r", "hl:R0:\(path):1M", "--host-id", "7", "-s", "hl:7:\(path):0"])
        let released = try Harness.sanlockLeader("-r", "hl:R0:\(path):1M", sector: 512, align: "1M")
        #expect(released["timestamp"] == "0", "a released lease is free (timestamp 0): \(released)")
        #expect(released["lver"] == "2", "release keeps the lver")
    }
}
