import Foundation
import Testing
import TenureTestSupport

/// A real libvirtd with QEMU (TCG) loads the plugin: a domain with a
/// <lease> starts with its lease held by the Tenure daemon for QEMU's pid; a
/// second domain on the same lease is refused with a clear message; destroy
/// frees it. Tools/install-deps.sh installs libvirt and QEMU.
@Suite("A real libvirtd with the Tenure plugin, and with libvirt's own sanlock plugin", .ownThreads, .serialized,
       .enabled(if: Harness.isRoot && ["libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "cc"].allSatisfy { Harness.which($0) != nil },
                "needs root, libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients, qemu-system-x86 and cc (Tools/install-deps.sh installs them)"))
struct LibvirtdTests {
    func virsh(_ arguments: [String]) throws -> Outcome { try Libvirtd.virsh(arguments) }

    func domainXML(name: String, disk: String, leases: String, key: String = "R0", offset: Int = 1 << 20, onLockFailure: String? = nil) -> String {
        """
        <domain type='qemu'>
          <name>\(name)</name>
          \(onLockFailure.map { "<on_lockfailure>\($0)</on_lockfailure>" } ?? "")
          <memory unit='MiB'>64</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <devices>
            <lease>
              <lockspace>LIBVIRT</lockspace>
              <key>\(key)</key>
              <target path='\(leases)' offset='\(offset)'/>
            </lease>
            <disk type='file' device='disk'>
              <driver name='qemu' type='raw'/>
              <source file='\(disk)'/>
              <target dev='vda' bus='virtio'/>
            </disk>
          </devices>
        </domain>
        """
    }

    @Test func aDomainsLeaseIsHeldForQEMUAndASecondDomainIsRefused() throws {
        let scratch = try Scratch()
        chmod(scratch.path, 0o755)
        // libtenure and the plugin, built as they ship.
        let prefix = scratch.path + "/libtenure"
        let built = try Harness.run("/bin/bash", [LibtenureTests.root + "/Tools/build-libtenure.sh", prefix])
        try #require(built.status == 0, "\(built)")
        // The lease file and the Tenure daemon, joined as host 1.
        let leases = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LIBVIRT", "--path", leases, "--resources", "2", "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch, name: "kvmhost")
        try daemon.clientOK(["add-lockspace", "-s", "LIBVIRT:1:\(leases):0"])
        // Each domain has its own disk (QEMU's own image locking would stop a
        // second domain on the same file first); they share the lease.
        let disks = ["tenure-vm1": try scratch.file("disk1.img", size: 1 << 20), "tenure-vm2": try scratch.file("disk2.img", size: 1 << 20),
                     "tenure-vm3": try scratch.file("disk3.img", size: 1 << 20)]

        let libvirtd = try Libvirtd(scratch: scratch, lockManager: "tenure",
                                    pluginConfig: "auto_disk_leases = 0\nrequire_lease_for_disks = 1\nrun_dir = \"\(daemon.runDir)\"\nlockfailure_helper = \"\(LibtenureTests.root)/Tools/libvirt/tenure-lockfailure\"\n",
                                    environment: ["LIBVIRT_LOCK_MANAGER_PLUGIN_DIR": prefix + "/lib/libvirt/lock-driver"],
                                    domains: ["tenure-vm1", "tenure-vm2", "tenure-vm3"])

        for name in ["tenure-vm1", "tenure-vm2", "tenure-vm3"] {
            // Domains left by an interrupted run would stop define.
            _ = try? virsh(["destroy", name])
            _ = try? virsh(["undefine", name])
            let xml = try scratch.file("\(name).xml", size: 0)
            let text = name == "tenure-vm3"
                ? domainXML(name: name, disk: disks[name]!, leases: leases, key: "R1", offset: 2 << 20, onLockFailure: "pause")
                : domainXML(name: name, disk: disks[name]!, leases: leases)
            try text.write(toFile: xml, atomically: true, encoding: .utf8)
            let defined = try virsh(["define", xml])
            try #require(defined.status == 0, "\(defined)")
        }
        let started = try virsh(["start", "tenure-vm1"])
        let log = (try? String(contentsOfFile: scratch.path + "/libvirtd.log", encoding: .utf8)) ?? ""
        try #require(started.status == 0, "virsh start failed:\n\(started)\nlibvirtd log:\n\(log.suffix(3000))")
        let pidText = try String(contentsOfFile: "/run/libvirt/qemu/tenure-vm1.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let leasesHeld = try daemon.leases()
        #expect(leasesHeld.count == 1, "\(leasesHeld)")
        #expect(leasesHeld.first?["pid"] as? Int == Int(pidText), "the lease is held for QEMU's pid \(pidText): \(leasesHeld)")
        #expect(leasesHeld.first?["resource"] as? String == "LIBVIRT:R0:\(leases):1048576:1")

        let second = try virsh(["start", "tenure-vm2"])
        #expect(second.status != 0, "a second domain on the same lease started")
        #expect(second.stderr.contains("R0") && second.stderr.contains("held by"), "virsh says which lease and who holds it:\n\(second.stderr)")

        let destroyed = try virsh(["destroy", "tenure-vm1"])
        #expect(destroyed.status == 0, "\(destroyed)")
        #expect(try eventually { try daemon.leases().isEmpty }, "QEMU's death did not release its lease")
        let again = try virsh(["start", "tenure-vm2"])
        #expect(again.status == 0, "once the first domain is gone the second starts:\n\(again)")
        #expect(try daemon.leases().first?["resource"] as? String == "LIBVIRT:R0:\(leases):1048576:2")

        // <on_lockfailure>pause</on_lockfailure>: a graceful request for the
        // domain's lease runs the helper, which pauses it through libvirt;
        // libvirt then releases the lease, and QEMU lives on, paused.
        let third = try virsh(["start", "tenure-vm3"])
        try #require(third.status == 0, "\(third)")
        let pid3 = try String(contentsOfFile: "/run/libvirt/qemu/tenure-vm3.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        try Harness.tenureOK(["direct", "request", "-r", "LIBVIRT:R1:\(leases):2M", "--graceful"])
        #expect(eventually(15) { (try? virsh(["domstate", "tenure-vm3"]))?.stdout.contains("paused") == true },
                "the domain was not paused; the daemon said:\n\(daemon.process.output.stderr.suffix(3000))")
        #expect(try eventually { try daemon.leases().allSatisfy { ($0["resource"] as? String)?.contains(":R1:") != true } },
                "the paused domain's lease was not released")
        #expect(Int32(pid3).map { isAlive($0) } == true, "QEMU was killed instead of paused")
        withExtendedLifetime(libvirtd) {}
    }

    static let sanlockPlugin = "/usr/lib/x86_64-linux-gnu/libvirt/lock-driver/sanlock.so"

    /// libvirt's own sanlock plugin (Debian's libvirt-sanlock), unchanged,
    /// against Tenure's daemon serving sanlock's socket: QEMU registers and
    /// acquires the domain's <lease> over libsanlock, a second domain on it
    /// is refused, and destroy frees it.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: LibvirtdTests.sanlockPlugin), "needs libvirt-sanlock (Tools/install-deps.sh installs it)"))
    func libvirtsOwnSanlockPluginHoldsADomainsLeaseInTenure() throws {
        let scratch = try Scratch()
        chmod(scratch.path, 0o755)
        let leases = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LIBVIRT", "--path", leases, "--resources", "2", "--io-timeout", "1", "--max-hosts", "8"])
        let sanlockDir = scratch.path + "/sanlock-run"
        let daemon = try RunningDaemon(scratch: scratch, name: "kvmhost", extra: ["--sanlock-run-dir", sanlockDir])
        try daemon.clientOK(["add-lockspace", "-s", "LIBVIRT:1:\(leases):0"])
        let names = ["sanlock-vm1", "sanlock-vm2"]
        let libvirtd = try Libvirtd(scratch: scratch, lockManager: "sanlock", pluginConfig: "auto_disk_leases = 0\nrequire_lease_for_disks = 0\n",
                                    environment: ["SANLOCK_RUN_DIR": sanlockDir], domains: names)
        for name in names {
            _ = try? virsh(["destroy", name])
            _ = try? virsh(["undefine", name])
            let xml = try scratch.file("\(name).xml", size: 0)
            try domainXML(name: name, disk: try scratch.file("\(name).img", size: 1 << 20), leases: leases).write(toFile: xml, atomically: true, encoding: .utf8)
            let defined = try virsh(["define", xml])
            try #require(defined.status == 0, "\(defined)")
        }
        let started = try virsh(["start", "sanlock-vm1"])
        let log = (try? String(contentsOfFile: scratch.path + "/libvirtd.log", encoding: .utf8)) ?? ""
        try #require(started.status == 0, "virsh start failed:\n\(started)\nlibvirtd log:\n\(log.suffix(3000))\ndaemon:\n\(daemon.process.output.stderr.suffix(3000))")
        let pid = try String(contentsOfFile: "/run/libvirt/qemu/sanlock-vm1.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let held = try daemon.leases()
        #expect(held.count == 1 && held.first?["pid"] as? Int == Int(pid), "the lease is held for QEMU's pid \(pid): \(held)")
        #expect(held.first?["resource"] as? String == "LIBVIRT:R0:\(leases):1048576:1", "\(held)")

        let second = try virsh(["start", "sanlock-vm2"])
        #expect(second.status != 0, "a second domain on the same lease started")

        #expect(try virsh(["destroy", "sanlock-vm1"]).status == 0)
        #expect(try eventually { try daemon.leases().isEmpty }, "QEMU's death did not release its lease")
        let again = try virsh(["start", "sanlock-vm2"])
        #expect(again.status == 0, "once the first domain is gone the second starts:\n\(again)")
        #expect(try daemon.leases().first?["resource"] as? String == "LIBVIRT:R0:\(leases):1048576:2")
        withExtendedLifetime(libvirtd) {}
    }
}

/// libvirtd and virtlogd for one test, with libvirt's configuration for
/// `lockManager` written (and the previous one put back when done).
final class Libvirtd {
    static let etc = "/etc/libvirt"
    let files: [String]
    let saved: [String?]
    let domains: [String]
    let virtlogd = Process(), libvirtd = Process()

    init(scratch: Scratch, lockManager: String, pluginConfig: String, environment extra: [String: String], domains: [String]) throws {
        files = ["\(Self.etc)/qemu.conf", "\(Self.etc)/qemu-\(lockManager).conf"]
        saved = files.map { try? String(contentsOfFile: $0, encoding: .utf8) }
        self.domains = domains
        try FileManager.default.createDirectory(atPath: Self.etc, withIntermediateDirectories: true)
        try "user = \"root\"\ngroup = \"root\"\nlock_manager = \"\(lockManager)\"\n".write(toFile: files[0], atomically: true, encoding: .utf8)
        try pluginConfig.write(toFile: files[1], atomically: true, encoding: .utf8)
        for dir in ["/var/log/libvirt/qemu", "/var/lib/libvirt/qemu", "/var/cache/libvirt/qemu", "/run/libvirt"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        if (try? Harness.run("/usr/bin/getent", ["group", "libvirt-qemu"]))?.status != 0 {
            _ = try Harness.run("/usr/sbin/groupadd", ["--system", "libvirt-qemu"])
        }
        if (try? Harness.run("/usr/bin/getent", ["passwd", "libvirt-qemu"]))?.status != 0 {
            _ = try Harness.run("/usr/sbin/useradd", ["--system", "--no-create-home", "-g", "libvirt-qemu", "libvirt-qemu"])
        }
        virtlogd.executableURL = URL(fileURLWithPath: Harness.which("virtlogd")!)
        libvirtd.executableURL = URL(fileURLWithPath: Harness.which("libvirtd")!)
        libvirtd.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        for p in [virtlogd, libvirtd] {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle(forWritingAtPath: try scratch.file("\(p.executableURL!.lastPathComponent).log", size: 0))
        }
        try virtlogd.run()
        try libvirtd.run()
        guard eventually(30, { (try? Self.virsh(["version"]))?.status == 0 }) else {
            throw HarnessError("libvirtd did not answer")
        }
    }

    deinit {
        for name in domains {
            _ = try? Self.virsh(["destroy", name])
            _ = try? Self.virsh(["undefine", name])
        }
        // SIGKILL: the test runner's children inherit SIGTERM ignored.
        kill(libvirtd.processIdentifier, SIGKILL); libvirtd.waitUntilExit()
        kill(virtlogd.processIdentifier, SIGKILL); virtlogd.waitUntilExit()
        for (file, text) in zip(files, saved) {
            if let text { try? text.write(toFile: file, atomically: true, encoding: .utf8) } else { unlink(file) }
        }
    }

    /// Runs `virsh -c qemu:///system ARGS`.
    static func virsh(_ arguments: [String]) throws -> Outcome {
        try Harness.run(Harness.which("virsh")!, ["-c", "qemu:///system"] + arguments)
    }
}
