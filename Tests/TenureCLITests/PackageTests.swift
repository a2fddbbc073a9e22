import Foundation
import Testing
import TenureTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// The package Tools/build-deb.sh built, when TENURE_DEB names it.
enum PackageUnderTest {
    static var deb: String? {
        ProcessInfo.processInfo.environment["TENURE_DEB"].flatMap { FileManager.default.fileExists(atPath: $0) ? $0 : nil }
    }
}

/// The Debian package as a user gets it: installed on this machine, its
/// binary run with no Swift toolchain, the daemon started from the unit's
/// own command line, the plugin under a real libvirtd with
/// `<on_lockfailure>`, then removed (the daemon stopped, the changed config
/// kept) and purged. Tools/package-check.sh builds the package and runs
/// this with TENURE_DEB set.
@Suite("The Debian package", .ownThreads, .serialized,
       .enabled(if: PackageUnderTest.deb != nil && Harness.isRoot,
                "needs root and TENURE_DEB naming a package built by Tools/build-deb.sh (Tools/package-check.sh sets both up)"))
struct PackageTests {
    static let installedFiles = [
        "./usr/sbin/tenure", "./usr/sbin/tenured", "./usr/lib/x86_64-linux-gnu/libtenure.so.1", "./usr/include/tenure.h", "./usr/include/tenure_proto.h",
        "./usr/lib/x86_64-linux-gnu/pkgconfig/tenure.pc", "./usr/lib/x86_64-linux-gnu/libvirt/lock-driver/tenure.so",
        "./usr/libexec/tenure/tenure-lockfailure", "./usr/lib/tenure/sanlock", "./lib/systemd/system/tenure.service", "./etc/tenure/tenure.conf",
        "./etc/libvirt/qemu-tenure.conf", "./usr/share/man/man8/tenure.8.gz", "./usr/share/man/man5/tenure.conf.5.gz",
        "./usr/share/bash-completion/completions/tenure", "./usr/share/zsh/vendor-completions/_tenure",
        "./usr/share/fish/vendor_completions.d/tenure.fish", "./usr/share/doc/tenure/operations.md", "./usr/share/doc/tenure/sanlock-compatibility.md",
    ]

    func dpkg(_ arguments: [String]) throws -> Outcome { try Harness.run("/usr/bin/dpkg", arguments) }

    @Test func thePackageInstallsRunsAndIsRemovedCleanly() throws {
        let deb = try #require(PackageUnderTest.deb)
        let listing = try dpkg(["-c", deb])
        for file in Self.installedFiles {
            #expect(listing.stdout.contains(" \(file)"), "dpkg -c does not list \(file)")
        }
        let installed = try dpkg(["-i", deb])
        try #require(installed.status == 0, "dpkg -i failed: \(installed)")
        defer { _ = try? dpkg(["--purge", "tenure"]) }

        // The binary needs no Swift runtime: nothing of Swift's on its library list.
        for binary in ["/usr/sbin/tenure", "/usr/sbin/tenured"] {
            let ldd = try Harness.run("/usr/bin/ldd", [binary])
            #expect(!ldd.stdout.contains("libswift") && !ldd.stdout.contains("libFoundation"), "\(binary) links Swift's libraries:\n\(ldd.stdout)")
        }
        let clean = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C"]
        let demo = try Harness.run("/usr/bin/env", ["-i"] + clean + ["/usr/sbin/tenure", "demo"])
        #expect(demo.status == 0, "tenure demo from the package failed:\n\(demo)")
        // sanlock's command line is there, not installed as sanlock unless asked.
        let version = try Harness.run("/usr/lib/tenure/sanlock", ["version"])
        #expect(version.status == 0 && version.stdout.contains("3.8.5"), "\(version)")
        #expect(try Harness.run("/usr/bin/env", ["-i"] + clean + ["/bin/sh", "-c", "readlink -f $(command -v sanlock) || true"]).stdout.contains("tenure") == false)
        let man = try Harness.run("/usr/bin/env", ["-i"] + clean + ["/usr/bin/zcat", "/usr/share/man/man5/tenure.conf.5.gz"])
        #expect(man.stdout.contains("metrics\\-listen"), "tenure.conf(5) does not list the keys")

        // The daemon, from the installed unit's own command line, with the
        // installed config (made usable on a machine without a watchdog).
        let unit = try String(contentsOfFile: "/lib/systemd/system/tenure.service", encoding: .utf8)
        #expect(unit.contains("Type=notify") && unit.contains("Documentation=man:tenure(8)"), "\(unit)")
        let exec = try #require(unit.split(separator: "\n").first { $0.hasPrefix("ExecStart=") }).dropFirst("ExecStart=".count)
        try "watchdog=none\nlock-memory=off\nrealtime=off\nio-timeout=1\nwatchdog-fire=4\n".write(toFile: "/etc/tenure/tenure.conf", atomically: true, encoding: .utf8)
        let scratch = try Scratch()
        chmod(scratch.path, 0o755)
        let daemon = try Background(executable: "/usr/bin/env", ["-i"] + clean + exec.split(separator: " ").map(String.init))
        defer { if daemon.process.isRunning { kill(daemon.process.processIdentifier, SIGKILL) } }
        let runDir = "/run/tenure"
        #expect(eventually(20) { (try? Harness.run("/usr/sbin/tenure", ["client", "status", "--run-dir", runDir]))?.status == 0 },
                "the packaged daemon did not come up:\n\(daemon.output)")
        #expect(daemon.output.stderr.contains("settings: run-dir=/run/tenure") && daemon.output.stderr.contains("watchdog=none"), "\(daemon.output.stderr)")
        // The unit's process is the daemon's own binary, handed over to in place.
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(daemon.process.processIdentifier)/exe")) == "/usr/sbin/tenured")

        // The plugin under a real libvirtd, with the helper where the package
        // put it (the plugin's default): <on_lockfailure>pause</on_lockfailure>.
        if Self.canRunLibvirt {
            try pauseOnLockFailure(scratch, runDir: runDir)
        }

        // Removal stops the daemon and keeps the changed config; purge removes it.
        let removed = try dpkg(["-r", "tenure"])
        #expect(removed.status == 0, "\(removed)")
        #expect(eventually(10) { !daemon.process.isRunning }, "the daemon still runs after the package was removed")
        #expect(!FileManager.default.fileExists(atPath: "/usr/sbin/tenure") && !FileManager.default.fileExists(atPath: "/usr/sbin/tenured"))
        #expect(FileManager.default.fileExists(atPath: "/etc/tenure/tenure.conf"), "remove dropped the changed config")
        let purged = try dpkg(["--purge", "tenure"])
        #expect(purged.status == 0, "\(purged)")
        #expect(!FileManager.default.fileExists(atPath: "/etc/tenure"), "purge left /etc/tenure")
    }

    static var canRunLibvirt: Bool {
        ["libvirtd", "virtlogd", "virsh", "qemu-system-x86_64"].allSatisfy { Harness.which($0) != nil }
    }

    /// A domain with a <lease> and <on_lockfailure>pause</on_lockfailure>
    /// under libvirtd with the installed plugin; a graceful request for its
    /// lease runs the installed helper, which pauses it.
    func pauseOnLockFailure(_ scratch: Scratch, runDir: String) throws {
        let leases = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "LIBVIRT", "--path", leases, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        #expect(try Harness.run("/usr/sbin/tenure", ["client", "add-lockspace", "-s", "LIBVIRT:1:\(leases):0", "--run-dir", runDir]).status == 0)
        let disk = try scratch.file("disk.img", size: 1 << 20)
        let libvirtd = try Libvirtd(scratch: scratch, lockManager: "tenure", pluginConfig: "require_lease_for_disks = 1\n",
                                    environment: [:], domains: ["tenure-pkg"])
        _ = try? Libvirtd.virsh(["destroy", "tenure-pkg"])
        _ = try? Libvirtd.virsh(["undefine", "tenure-pkg"])
        let xml = try scratch.file("tenure-pkg.xml", size: 0)
        try LibvirtdTests().domainXML(name: "tenure-pkg", disk: disk, leases: leases, onLockFailure: "pause")
            .write(toFile: xml, atomically: true, encoding: .utf8)
        #expect(try Libvirtd.virsh(["define", xml]).status == 0)
        let started = try Libvirtd.virsh(["start", "tenure-pkg"])
        try #require(started.status == 0, "the installed plugin did not start the domain: \(started)")
        try Harness.tenureOK(["direct", "request", "-r", "LIBVIRT:R0:\(leases):1M", "--graceful"])
        #expect(eventually(15) { (try? Libvirtd.virsh(["domstate", "tenure-pkg"]))?.stdout.contains("paused") == true },
                "the installed helper did not pause the domain")
        _ = try? Libvirtd.virsh(["destroy", "tenure-pkg"])
        withExtendedLifetime(libvirtd) {}
    }
}
