import Foundation
import Testing
import TenureTestSupport

/// libtenure, built by cc as it ships, against a real daemon.
@Suite("libtenure, the C client", .ownThreads, .serialized,
       .enabled(if: Harness.which("cc") != nil, "needs a C compiler (cc) to build libtenure"))
struct LibtenureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Builds libtenure.so into `dir` with the shipping script; returns its path.
    func build(into dir: String) throws -> String {
        let built = try Harness.run("/bin/bash", [Self.root + "/Tools/build-libtenure.sh", dir])
        try #require(built.status == 0, "build-libtenure.sh failed: \(built)")
        return dir + "/lib/libtenure.so.1"
    }

    @Test func theLibraryNeedsNoSwiftRuntime() throws {
        let scratch = try Scratch()
        let library = try build(into: scratch.path + "/libtenure")
        let dynamic = try Harness.run("/usr/bin/readelf", ["-d", library])
        #expect(dynamic.status == 0)
        #expect(!dynamic.stdout.lowercased().contains("swift"), "libtenure links a Swift library:\n\(dynamic.stdout)")
        #expect(dynamic.stdout.contains("libc.so.6"))
        let pc = try String(contentsOfFile: scratch.path + "/libtenure/lib/pkgconfig/tenure.pc", encoding: .utf8)
        #expect(pc.contains("Libs: -L${libdir} -ltenure"))
    }

    @Test func aCProgramRegistersAcquiresForksRestrictsAndReleases() throws {
        let scratch = try Scratch()
        let prefix = scratch.path + "/libtenure"
        _ = try build(into: prefix)
        let program = scratch.path + "/test_libtenure"
        let compiled = try Harness.run(Harness.which("cc")!, ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Werror", "-I", prefix + "/include",
                                                             Self.root + "/Tests/libtenure/test_libtenure.c", "-L", prefix + "/lib", "-ltenure",
                                                             "-Wl,-rpath," + prefix + "/lib", "-o", program])
        try #require(compiled.status == 0, "cc failed: \(compiled)")
        let file = try scratch.file("leases.img", size: 8 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "C", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        // A resource index at 2 MiB (its lease at 3, leases from 4), laid
        // out by the sanlock drop-in's `direct format -x`.
        let asSanlock = scratch.path + "/sanlock"
        try FileManager.default.createSymbolicLink(atPath: asSanlock, withDestinationPath: Harness.tenurePath)
        let index = "C:\(file):2M"
        let formatted = try Harness.run(asSanlock, ["direct", "format", "-x", index])
        try #require(formatted.status == 0, "\(formatted)")
        let daemon = try RunningDaemon(scratch: scratch)
        try daemon.clientOK(["add-lockspace", "-s", "C:1:\(file):0"])
        let resource = "C:R0:\(file):1048576"
        let run = try Harness.run(program, [daemon.runDir, resource, "C", "R0", file, "1048576", "C:\(file):2097152"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("0 failures"), "\(run.stdout)")
        #expect(!run.stdout.contains("FAIL"), "\(run.stdout)")
    }
}

/// The libvirt lock-driver plugin, dlopened by a C harness that replays
/// libvirt's call sequences against two real daemons (two hosts).
@Suite("The libvirt lock-driver plugin", .ownThreads, .serialized,
       .enabled(if: Harness.which("cc") != nil && Harness.isRoot, "needs a C compiler and root (acquiring for another pid)"))
struct LockDriverTests {
    @Test func libvirtsCallSequencesWorkAcrossTwoHosts() throws {
        let scratch = try Scratch()
        let prefix = scratch.path + "/libtenure"
        let built = try Harness.run("/bin/bash", [LibtenureTests.root + "/Tools/build-libtenure.sh", prefix])
        try #require(built.status == 0, "\(built)")
        let plugin = prefix + "/lib/libvirt/lock-driver/tenure.so"
        let exported = try Harness.run("/usr/bin/nm", ["-D", "--defined-only", plugin])
        #expect(exported.stdout.split(separator: "\n").map { $0.split(separator: " ").last.map(String.init) ?? "" } == ["virLockDriverImpl"],
                "the plugin exports only virLockDriverImpl:\n\(exported.stdout)")
        let dynamic = try Harness.run("/usr/bin/readelf", ["-d", plugin])
        #expect(!dynamic.stdout.lowercased().contains("swift") && !dynamic.stdout.contains("libtenure"), "\(dynamic.stdout)")
        let harness = scratch.path + "/test_lock_driver"
        let compiled = try Harness.run(Harness.which("cc")!, ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Werror", "-rdynamic",
                                                             LibtenureTests.root + "/Tests/libtenure/test_lock_driver.c", "-ldl", "-o", harness])
        try #require(compiled.status == 0, "\(compiled)")

        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LIBVIRT", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let hostA = try RunningDaemon(scratch: scratch, name: "hostA")
        let hostB = try RunningDaemon(scratch: scratch, name: "hostB")
        try hostA.clientOK(["add-lockspace", "-s", "LIBVIRT:1:\(file):0"])
        try hostB.clientOK(["add-lockspace", "-s", "LIBVIRT:2:\(file):0"])
        let confA = try scratch.file("qemu-tenure-a.conf", size: 0), confB = try scratch.file("qemu-tenure-b.conf", size: 0)
        try "auto_disk_leases = 0\nrequire_lease_for_disks = 1\nrun_dir = \"\(hostA.runDir)\"\n".write(toFile: confA, atomically: true, encoding: .utf8)
        try "auto_disk_leases = 0\nhost_id = 2\nrun_dir = \"\(hostB.runDir)\"\n".write(toFile: confB, atomically: true, encoding: .utf8)
        let run = try Harness.run(harness, [plugin, confA, confB, "LIBVIRT", "R0", file, "1048576"])
        #expect(run.status == 0 && run.stdout.contains("0 failures") && !run.stdout.contains("FAIL"), "\(run.stdout)\(run.stderr)")
    }
}

/// auto_disk_leases = 1: the plugin lays out the __LIBVIRT__DISKS__
/// lockspace in disk_lease_dir, joins it with host_id, and guards every
/// writable disk with a lease in a file of its own.
@Suite("The libvirt plugin's automatic disk leases", .ownThreads, .serialized,
       .enabled(if: Harness.which("cc") != nil && Harness.isRoot, "needs a C compiler and root (acquiring for another pid)"))
struct AutoDiskLeaseTests {
    @Test func writableDisksGetLeasesOfTheirOwn() throws {
        let scratch = try Scratch()
        let prefix = scratch.path + "/libtenure"
        let built = try Harness.run("/bin/bash", [LibtenureTests.root + "/Tools/build-libtenure.sh", prefix])
        try #require(built.status == 0, "\(built)")
        let harness = scratch.path + "/test_auto_disk_leases"
        let compiled = try Harness.run(Harness.which("cc")!, ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Werror", "-rdynamic",
                                                             LibtenureTests.root + "/Tests/libtenure/test_auto_disk_leases.c", "-ldl", "-o", harness])
        try #require(compiled.status == 0, "\(compiled)")
        let daemon = try RunningDaemon(scratch: scratch)
        let leaseDir = scratch.path + "/disk-leases"
        let conf = try scratch.file("qemu-tenure.conf", size: 0)
        try """
        auto_disk_leases = 1
        host_id = 1
        io_timeout = 1
        disk_lease_dir = "\(leaseDir)"
        run_dir = "\(daemon.runDir)"
        tenure_binary = "\(Harness.tenurePath)"

        """.write(toFile: conf, atomically: true, encoding: .utf8)
        let run = try Harness.run(harness, [prefix + "/lib/libvirt/lock-driver/tenure.so", conf, leaseDir])
        #expect(run.status == 0 && run.stdout.contains("0 failures") && !run.stdout.contains("FAIL"), "\(run.stdout)\(run.stderr)")
        // sanlock's tools read the lockspace the plugin laid out.
        let lockspace = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "__LIBVIRT__DISKS__:1:\(leaseDir)/__LIBVIRT__DISKS__:0", "--json"]).stdout)
        #expect((lockspace["leader"] as? [String: Any])?["owner_id"] as? Int == 1, "host 1 joined the disk lockspace: \(lockspace)")
    }
}
