import Foundation
import Testing
import TenureTestSupport

/// The daemon under a service manager and a package manager (issue 27): the
/// shipped unit never SIGKILLs it, and the package's maintainer scripts
/// never stop it under its lease holders. The scripts run here as dpkg runs
/// them, against a real daemon holding a real lease, with a stand-in
/// `systemctl` on PATH that records what it is asked.
@Suite("The unit and the package never stop the daemon under its holders", .ownThreads, .serialized)
struct ServiceLifecycleTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let unitPath = root + "/Tools/systemd/tenure.service"
    static let maintainer = root + "/Tools/package/maintainer"

    /// The unit's `key=value` lines, values of repeated keys joined by spaces.
    static func unitSettings() throws -> [String: String] {
        var settings: [String: String] = [:]
        for line in try String(contentsOfFile: unitPath, encoding: .utf8).split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { continue }
            settings[parts[0]] = [settings[parts[0]], parts[1]].compactMap { $0 }.joined(separator: " ")
        }
        return settings
    }

    @Test func theUnitNeverKillsTheDaemonAndIsOrderedBetweenStorageAndUsers() throws {
        let unit = try Self.unitSettings()
        #expect(unit["SendSIGKILL"] == "no", "a stop that times out would SIGKILL the daemon under its holders")
        #expect(unit["KillMode"] == "process", "a stop must not signal the lease holders the daemon started (killpaths)")
        let conflicts = Set((unit["Conflicts"] ?? "").split(separator: " ").map(String.init))
        #expect(conflicts.isSuperset(of: ["sanlock.service", "wdmd.service"]), "\(conflicts)")
        let after = Set((unit["After"] ?? "").split(separator: " ").map(String.init))
        #expect(after.isSuperset(of: ["iscsid.service", "multipathd.service", "remote-fs.target"]), "\(after)")
        let before = Set((unit["Before"] ?? "").split(separator: " ").map(String.init))
        #expect(before.isSuperset(of: ["libvirtd.service", "lvmlockd.service", "vdsmd.service"]), "\(before)")
        #expect(unit["Restart"] == "on-failure" && unit["RuntimeDirectoryPreserve"] == "yes",
                "a restarted daemon must find the run dir's holder record")
    }

    /// systemd itself reads the unit: no unknown key, no bad value (both
    /// are only warnings, with exit status 0, so the output must be empty).
    @Test(.enabled(if: Harness.which("systemd-analyze") != nil, "needs systemd-analyze (apt-get install systemd; Tools/install-deps.sh does)"))
    func systemdAnalyzeVerifiesTheUnit() throws {
        let scratch = try Scratch()
        // The unit as installed, with the binary this build made (verify checks ExecStart exists).
        let unit = try String(contentsOfFile: Self.unitPath, encoding: .utf8).replacingOccurrences(of: "/usr/sbin/tenure", with: Harness.tenurePath)
        let path = scratch.path + "/tenure.service"
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        // --man=no: the man pages are checked where they are installed (PackageTests).
        let verified = try Harness.run(Harness.which("systemd-analyze")!, ["verify", "--man=no", path])
        #expect(verified.status == 0 && verified.stderr.isEmpty && verified.stdout.isEmpty, "\(verified)")

        // The check can fail: a misspelt key is reported.
        try unit.replacingOccurrences(of: "SendSIGKILL=no", with: "SendSIGKIL=no").write(toFile: path, atomically: true, encoding: .utf8)
        let misspelt = try Harness.run(Harness.which("systemd-analyze")!, ["verify", "--man=no", path])
        #expect(misspelt.stderr.contains("SendSIGKIL"), "\(misspelt)")
    }

    /// A stand-in for systemd: `systemctl` records its arguments; a dir
    /// stands for /run/systemd/system.
    struct FakeSystemd {
        let bin: String
        let log: String
        let runtime: String

        init(_ scratch: Scratch) throws {
            bin = scratch.path + "/fake-bin"
            log = scratch.path + "/systemctl.log"
            runtime = scratch.path + "/run-systemd-system"
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
            try "#!/bin/sh\necho \"$*\" >> '\(log)'\nexit 0\n".write(toFile: bin + "/systemctl", atomically: true, encoding: .utf8)
            chmod(bin + "/systemctl", 0o755)
            FileManager.default.createFile(atPath: log, contents: nil)
        }

        var calls: [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }

        /// Runs maintainer script `name` with `arguments`, as dpkg does, for the daemon of `runDir`.
        func script(_ name: String, _ arguments: [String], runDir: String) throws -> Outcome {
            try Harness.run("/bin/sh", [ServiceLifecycleTests.maintainer + "/" + name] + arguments, environment: [
                "PATH": bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "TENURE_BIN": Harness.tenurePath,
                "TENURE_RUN_DIR": runDir, "TENURE_SYSTEMD_DIR": runtime,
            ])
        }
    }

    /// A daemon and a process holding R0 through it (`client hold`, kept
    /// by the caller: dropping it would stop it).
    func daemonWithAHolder(_ scratch: Scratch) throws -> (RunningDaemon, Background) {
        let (daemon, file) = try DaemonTests().setUp(scratch)
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir, "--", "/bin/sleep", "600"])
        let pid = holder.process.processIdentifier
        #expect(try eventually { try daemon.leases().first?["pid"] as? Int == Int(pid) }, "the holder never held R0: \(holder.output)")
        return (daemon, holder)
    }

    /// An upgrade while a process holds a lease: the daemon is not stopped,
    /// the holder keeps its lease, and postinst says the restart waits.
    @Test func anUpgradeUnderAHolderDefersTheRestart() throws {
        let scratch = try Scratch()
        let systemd = try FakeSystemd(scratch)
        let (daemon, holder) = try daemonWithAHolder(scratch)
        let pid = holder.process.processIdentifier
        defer { kill(pid, SIGKILL) }

        let prerm = try systemd.script("prerm", ["upgrade", "0.3.0"], runDir: daemon.runDir)
        #expect(prerm.status == 0, "\(prerm)")
        #expect(prerm.stderr.contains("\(pid)") && prerm.stderr.contains("systemctl restart tenure"), "the message names neither the holder nor what to do: \(prerm)")
        let postinst = try systemd.script("postinst", ["configure", "0.2.0"], runDir: daemon.runDir)
        #expect(postinst.status == 0, "\(postinst)")
        #expect(postinst.stderr.contains("still runs the previous version"), "\(postinst)")
        #expect(!systemd.calls.contains { $0.contains("stop") || $0.contains("start") || $0.contains("kill") }, "\(systemd.calls)")
        #expect(daemon.process.process.isRunning && isAlive(pid))
        #expect(try daemon.leases().first?["pid"] as? Int == Int(pid), "the holder lost its lease")
    }

    /// Removing the package while a process holds a lease is refused, naming it.
    @Test func aRemovalUnderAHolderIsRefused() throws {
        let scratch = try Scratch()
        let systemd = try FakeSystemd(scratch)
        let (daemon, holder) = try daemonWithAHolder(scratch)
        let pid = holder.process.processIdentifier
        defer { kill(pid, SIGKILL) }

        let prerm = try systemd.script("prerm", ["remove"], runDir: daemon.runDir)
        #expect(prerm.status == 1, "\(prerm)")
        #expect(prerm.stderr.contains("refusing to remove") && prerm.stderr.contains("\(pid)"), "\(prerm)")
        #expect(!systemd.calls.contains { $0.contains("stop") }, "\(systemd.calls)")
        #expect(daemon.process.process.isRunning && isAlive(pid))
    }

    /// With nothing held an upgrade stops the daemon and starts the new one.
    @Test func anUpgradeWithNothingHeldRestartsTheDaemon() throws {
        let scratch = try Scratch()
        let systemd = try FakeSystemd(scratch)
        let (daemon, _) = try DaemonTests().setUp(scratch)
        let prerm = try systemd.script("prerm", ["upgrade", "0.3.0"], runDir: daemon.runDir)
        #expect(prerm.status == 0, "\(prerm)")
        #expect(eventually { !daemon.process.process.isRunning }, "the daemon still runs")
        let postinst = try systemd.script("postinst", ["configure", "0.2.0"], runDir: daemon.runDir)
        #expect(postinst.status == 0, "\(postinst)")
        #expect(systemd.calls.contains("start tenure.service"), "postinst did not start the new version: \(systemd.calls)")
    }
}
