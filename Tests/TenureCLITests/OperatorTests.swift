import Foundation
import Testing
import TenureTestSupport
import TenureClient
import TenureCore

/// Regression tests for what an unprivileged peer or a careless operator
/// could do to the daemon (issue "Hardening", items 4-12). Each failed on
/// the code before its fix.
@Suite("The daemon enforces its privileges and refuses bad input", .ownThreads, .serialized)
struct OperatorTests {
    static let canSwitchUser = Harness.isRoot && Harness.which("setpriv") != nil

    func setUp(_ scratch: Scratch, extra: [String] = []) throws -> (RunningDaemon, String) {
        try DaemonTests().setUp(scratch, extra: extra)
    }

    /// Runs `executable ARGS` as user nobody (65534), with no groups.
    func asNobody(_ executable: String, _ arguments: [String]) throws -> Outcome {
        try Harness.run(Harness.which("setpriv")!, ["--reuid=65534", "--regid=65534", "--clear-groups", executable] + arguments)
    }

    /// Opens the daemon's socket and run dir to every user, as a site that
    /// wants unprivileged clients would (group access, here: everyone).
    func openToEveryone(_ scratch: Scratch, _ daemon: RunningDaemon) {
        chmod(scratch.path, 0o755)
        chmod(daemon.runDir + "/tenure.sock", 0o666)
    }

    // MARK: 4. Privileges

    @Test(.enabled(if: canSwitchUser, "needs root and setpriv to run a client as another user"))
    func anUnprivilegedPeerCannotRequestJoinLeaveOrStop() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        openToEveryone(scratch, daemon)
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 })
        let attempts: [[String]] = [
            ["request", "-r", "D:R0:\(file):1M", "--force"],
            ["add-lockspace", "-s", "E:1:\(file):0"],
            ["rem-lockspace", "D"],
            ["shutdown", "--force"],
        ]
        for attempt in attempts {
            let outcome = try asNobody(Harness.tenurePath, ["client"] + attempt + ["--run-dir", daemon.runDir])
            #expect(outcome.status != 0, "nobody could \(attempt[0]): \(outcome)")
            #expect(outcome.stderr.contains("permission-denied") && outcome.stderr.contains("Only root"), "\(attempt[0]): \(outcome.stderr)")
        }
        #expect(isAlive(holder.process.processIdentifier), "an unprivileged request killed the holder")
        #expect(try daemon.status()["lockspaces"] as? [[String: Any]] != nil && (try daemon.status()["lockspaces"] as? [[String: Any]])?.count == 1)
        // What anyone may do still works: read status.
        #expect(try asNobody(Harness.tenurePath, ["client", "status", "--run-dir", daemon.runDir]).status == 0)
        kill(holder.process.processIdentifier, SIGKILL)
    }

    /// A killpath runs with the credentials of the process that set it, not
    /// as the daemon's root.
    @Test(.enabled(if: canSwitchUser, "needs root and setpriv to run a client as another user"))
    func aKillpathRunsAsTheUserWhoSetIt() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        openToEveryone(scratch, daemon)
        chmod(file, 0o666)
        let drop = scratch.path + "/drop"
        try FileManager.default.createDirectory(atPath: drop, withIntermediateDirectories: true)
        chmod(drop, 0o777)
        let script = scratch.path + "/killpath.sh"
        try "#!/bin/sh\nid -u > \(drop)/uid\nkill -9 \"$TENURE_KILL_PID\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let holder = try Background(executable: Harness.which("setpriv")!,
                                    ["--reuid=65534", "--regid=65534", "--clear-groups", Harness.tenurePath, "client", "hold",
                                     "-r", "D:R0:\(file):1M", "--killpath", script, "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 }, "nobody could not hold a lease: \(holder.output)")
        try daemon.clientOK(["request", "-r", "D:R0:\(file):1M", "--graceful"])
        // `id -u > file` creates the file before it writes: wait for the line.
        func written() -> String? {
            (try? String(contentsOfFile: drop + "/uid", encoding: .utf8)).flatMap { $0.hasSuffix("\n") ? $0 : nil }
        }
        #expect(eventually { written() != nil }, "the killpath never ran")
        let uid = written()?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(uid == "65534", "the killpath ran as user \(uid ?? "?"), not as the holder's user")
        #expect(eventually { !isAlive(holder.process.processIdentifier) })
    }

    // MARK: 5. The run dir

    @Test func aRunDirOthersCanWriteIsRefused() throws {
        let scratch = try Scratch()
        let runDir = scratch.path + "/open-run"
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        chmod(runDir, 0o777)
        let outcome = try Harness.tenure(["daemon", "--foreground", "--run-dir", runDir, "--watchdog", "none"])
        #expect(outcome.status != 0, "the daemon started on a 0777 run dir")
        #expect(outcome.stderr.contains("writable by its group or by every user") && outcome.stderr.contains("chmod go-w"), "\(outcome.stderr)")
        #expect(!FileManager.default.fileExists(atPath: runDir + "/tenure.sock"))
    }

    // MARK: 6. Device handles are closed with their last user

    @Test func handlesOfLeaseFilesAreClosedWhenNothingUsesThem() throws {
        let scratch = try Scratch()
        let (daemon, _) = try setUp(scratch)
        func openDevices() throws -> Int { try daemon.status()["open_devices"] as? Int ?? -1 }
        #expect(try openDevices() == 1, "the lockspace's file")
        for k in 0..<6 {
            // One lease file per VM disk, as the libvirt plugin's automatic leases make.
            let leaseFile = try scratch.file("disk\(k).lease", size: 1 << 20)
            try Harness.tenureOK(["direct", "init", "-r", "D:disk\(k):\(leaseFile):0", "--max-hosts", "8"])
            let holder = try Background(["client", "hold", "-r", "D:disk\(k):\(leaseFile):0", "--run-dir", daemon.runDir])
            #expect(try eventually { try daemon.leases().count == 1 && openDevices() == 2 }, "holding a lease on a new file: \(holder.output)")
            kill(holder.process.processIdentifier, SIGKILL)
            #expect(try eventually { try daemon.leases().isEmpty && openDevices() == 1 }, "the handle of \(leaseFile) stayed open")
        }
        // A request for a lockspace this host has not joined opens nothing.
        let other = try scratch.file("other.lease", size: 2 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "E", "--path", other, "--resources", "1", "--io-timeout", "1"])
        let refused = try daemon.client(["request", "-r", "E:R0:\(other):1M", "--force"])
        #expect(refused.status != 0 && refused.stderr.contains("not joined"), "\(refused)")
        #expect(try openDevices() == 1)
    }

    // MARK: 7. Idle connections cannot lock root out

    @Test(.enabled(if: canSwitchUser && FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
                   "needs root, setpriv and /usr/bin/python3 to fill the daemon with another user's idle connections"))
    func idleClientsCannotLockRootOut() throws {
        let scratch = try Scratch()
        let (daemon, _) = try setUp(scratch, extra: ["--max-connections", "4"])
        openToEveryone(scratch, daemon)
        // Another user opens every place it can and sends nothing.
        let script = """
        import socket, sys, time
        held = []
        for _ in range(8):
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); held.append(s)
        print("connected", flush=True)
        time.sleep(float(sys.argv[2]))
        """
        let filler = try Background(executable: Harness.which("setpriv")!,
                                    ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script,
                                     daemon.runDir + "/tenure.sock", "15"])
        #expect(eventually(30) { filler.output.stdout.contains("connected") }, "the filler never connected: \(filler.output)")
        // Root still gets in (a reserved place).
        #expect(try daemon.client(["status"]).status == 0, "root was locked out by idle connections")
        // Another client of that user is told plainly.
        let turnedAway = try asNobody(Harness.tenurePath, ["client", "status", "--run-dir", daemon.runDir])
        #expect(turnedAway.status != 0 && turnedAway.stderr.contains("Too many clients"), "\(turnedAway)")
        #expect(!turnedAway.stderr.contains("does not match"), "\(turnedAway.stderr)")
        // Idle connections are closed after 10 s: the user's client gets in again.
        #expect(try eventually(14) { try asNobody(Harness.tenurePath, ["client", "status", "--run-dir", daemon.runDir]).status == 0 },
                "idle connections were never closed")
        kill(filler.process.processIdentifier, SIGKILL)
    }

    // MARK: 8. Two joins of one lockspace name on one daemon

    @Test func twoConcurrentJoinsOfOneLockspaceNameAreOneJoin() throws {
        let scratch = try Scratch()
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch)
        let one = try Background(["client", "add-lockspace", "-s", "D:1:\(file):0", "--run-dir", daemon.runDir])
        let two = try Background(["client", "add-lockspace", "-s", "D:2:\(file):0", "--run-dir", daemon.runDir])
        let results = [one.wait(), two.wait()]
        #expect(results.filter { $0.status == 0 }.count == 1, "\(results)")
        #expect(results.contains { $0.stderr.contains("joined or being joined already") }, "\(results)")
        try daemon.clientOK(["rem-lockspace", "D"])
        usleep(3_000_000)
        // No host id of this daemon is left renewing: both slots read free.
        for id in [1, 2] {
            let read = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "D:\(id):\(file):0", "--json"]).stdout)
            let hosts = read["hosts"] as? [[String: Any]] ?? []
            #expect(!hosts.contains { $0["host_id"] as? Int == id && $0["held"] as? Bool != false }, "host \(id) still renews: \(read)")
        }
    }

    // MARK: 9. A reused pid is a new process

    /// Makes the next process the kernel creates get pid `pid` (root only).
    func nextPidWillBe(_ pid: Int32) -> Bool {
        (try? "\(pid - 1)".write(toFile: "/proc/sys/kernel/ns_last_pid", atomically: false, encoding: .utf8)) != nil
    }

    @Test(.enabled(if: Harness.isRoot && FileManager.default.isWritableFile(atPath: "/proc/sys/kernel/ns_last_pid"),
                   "needs root and a writable /proc/sys/kernel/ns_last_pid to make a pid be reused"))
    func aProcessThatReusesAPidGetsNoneOfTheOldProcesssSettings() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let marker = scratch.path + "/killpath-ran"
        let script = scratch.path + "/killpath.sh"
        try "#!/bin/sh\necho ran > \(marker)\nkill -9 \"$TENURE_KILL_PID\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let first = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--killpath", script, "--restrict", "sigterm", "--run-dir", daemon.runDir])
        let pid = first.process.processIdentifier
        #expect(try eventually { try daemon.leases().count == 1 })
        kill(pid, SIGKILL)
        _ = first.wait()
        #expect(try eventually { try daemon.leases().isEmpty })
        // A new process gets the same pid and holds the lease, with no killpath of its own.
        var second: Background?
        for _ in 0..<5 where second?.process.processIdentifier != pid {
            if let s = second { kill(s.process.processIdentifier, SIGKILL); _ = s.wait() }
            guard nextPidWillBe(pid) else { break }
            second = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        }
        let reused = try #require(second)
        try #require(reused.process.processIdentifier == pid, "could not make pid \(pid) be reused")
        #expect(try eventually { try daemon.leases().first?["pid"] as? Int == Int(pid) }, "the process that reused pid \(pid) never held the lease: \(reused.output)")
        try daemon.clientOK(["request", "-r", "D:R0:\(file):1M", "--graceful"])
        #expect(eventually { !isAlive(pid) }, "the new process was not stopped")
        #expect(!FileManager.default.fileExists(atPath: marker), "the dead process's killpath ran for the process that reused its pid")
        #expect(daemon.stderrSoFar.contains("sent SIGTERM to process \(pid)"), "the new process did not get its own SIGTERM")
    }

    // MARK: 10. Inputs are refused with what is allowed

    @Test func badNumbersAreRefusedWithTheirRange() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        for value in ["100000", "-5"] {
            let outcome = try daemon.client(["add-lockspace", "-s", "E:1:\(file):0", "--io-timeout", value])
            #expect(outcome.status != 0 && outcome.stderr.contains("outside 1...300"), "--io-timeout \(value): \(outcome)")
            #expect(!outcome.stderr.contains("Missing value"))
        }
        let daemonFlag = try Harness.tenure(["daemon", "--foreground", "--run-dir", scratch.path + "/r", "--io-timeout", "-3", "--watchdog", "none"])
        #expect(daemonFlag.status != 0 && daemonFlag.stderr.contains("outside 1...300"), "\(daemonFlag)")
        for hosts in ["0", "99999"] {
            let lockspace = try Harness.tenure(["direct", "init", "-s", "X:1:\(try scratch.file("x\(hosts).img", size: 1 << 20)):0", "--max-hosts", hosts])
            #expect(lockspace.status != 0 && lockspace.stderr.contains("--max-hosts"), "init -s --max-hosts \(hosts): \(lockspace)")
            let resource = try Harness.tenure(["direct", "init", "-r", "X:r:\(try scratch.file("r\(hosts).img", size: 1 << 20)):0", "--max-hosts", hosts])
            #expect(resource.status != 0 && resource.stderr.contains("outside 1..."), "init -r --max-hosts \(hosts): \(resource)")
        }
    }

    /// Protocol fields a client of the same release never sends, each refused
    /// with a message that names the field (they were defaulted: a NUL cut a
    /// path short, any flags meant exclusive, any convert mode but "shared"
    /// meant exclusive, a bad pid meant 0).
    @Test func malformedFieldsAreRefusedNotDefaulted() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let connection = try TenureConnection(runDir: daemon.runDir)
        try connection.register()
        let cases: [(Command, [String], String)] = [
            (.acquire, ["0", "0", "D:R0:\(file)\u{0}.evil:1M"], "NUL"),
            (.acquire, ["0", "4294967295", "D:R0:\(file):1M"], "acquire flags"),
            (.acquire, ["abc", "0", "D:R0:\(file):1M"], "pid"),
            (.convert, ["0", "R0", "sharedish"], "convert mode"),
            (.restrict, ["12345"], "restrict flags"),
            (.addLockspace, ["E:1:\(file):0", "", "65536"], "io_timeout"),
            (.request, ["D:R0:\(file):1M", "7"], "request mode"),
        ]
        for (command, fields, named) in cases {
            do {
                try connection.call(command, fields)
                Issue.record("\(command) \(fields) was accepted")
            } catch {
                #expect(error.code == .invalidArgument, "\(command): \(error)")
                #expect(error.message.contains(named), "\(command) \(fields): \(error.message)")
            }
        }
        #expect(try daemon.leases().isEmpty)
        #expect(try connection.acquire(["D:R0:\(file):1M"]) == ["D:R0:\(file):1048576:1"], "the connection works after refusals")
    }

    // MARK: 11. Read-only commands need no write permission

    @Test(.enabled(if: canSwitchUser, "needs root and setpriv to run a command as a user who may only read"))
    func readOnlyCommandsWorkWithReadPermissionOnly() throws {
        let scratch = try Scratch()
        chmod(scratch.path, 0o755)
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "1", "--io-timeout", "1"])
        chmod(file, 0o644)
        for arguments in [["direct", "read", "-s", "D:1:\(file):0"], ["direct", "read", "-r", "D:R0:\(file):1M"],
                          ["direct", "dump", "\(file):0:2M"], ["direct", "probe", file, "--reads", "5"]] {
            let outcome = try asNobody(Harness.tenurePath, arguments)
            #expect(outcome.status == 0, "\(arguments.prefix(2).joined(separator: " ")) as a reader: \(outcome)")
        }
        let write = try asNobody(Harness.tenurePath, ["direct", "init", "-r", "D:R9:\(file):1M", "--force"])
        #expect(write.status != 0 && write.stderr.contains("reading and writing"), "\(write)")
    }

    // MARK: 12. A full run dir is said, not lost

    @Test(.enabled(if: Harness.isRoot && Harness.which("mount") != nil, "needs root to mount a tiny tmpfs"))
    func aFullRunDirStopsTheStartWithTheCause() throws {
        let scratch = try Scratch()
        let mountPoint = scratch.path + "/tiny"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mounted = try Harness.run(Harness.which("mount")!, ["-t", "tmpfs", "-o", "size=8k,nr_inodes=4,mode=0755", "tmpfs", mountPoint])
        try #require(mounted.status == 0, "mount: \(mounted)")
        defer { _ = try? Harness.run(Harness.which("umount")!, [mountPoint]) }
        // No free inode left: the run dir cannot even be created.
        for k in 0..<8 { FileManager.default.createFile(atPath: "\(mountPoint)/f\(k)", contents: nil) }
        let noInodes = try Harness.tenure(["daemon", "--run-dir", mountPoint + "/run", "--watchdog", "none"])
        #expect(noInodes.status != 0, "\(noInodes)")
        #expect(noInodes.stderr.contains("Cannot create the run dir") && noInodes.stderr.contains("space"), "\(noInodes.stderr)")
        #expect(!noInodes.stderr.contains("NSCocoaErrorDomain"), "\(noInodes.stderr)")
        // Inodes but no space: the log's first line cannot be written.
        for k in 0..<8 { try? FileManager.default.removeItem(atPath: "\(mountPoint)/f\(k)") }
        try FileManager.default.createDirectory(atPath: mountPoint + "/run", withIntermediateDirectories: false)
        chmod(mountPoint + "/run", 0o755)
        FileManager.default.createFile(atPath: mountPoint + "/filler", contents: Data(repeating: 1, count: 8 << 10))
        let noSpace = try Harness.tenure(["daemon", "--run-dir", mountPoint + "/run", "--watchdog", "none"])
        #expect(noSpace.status != 0, "\(noSpace)")
        #expect(noSpace.stderr.contains("No space left on device"), "\(noSpace.stderr)")
        let foreground = try Harness.tenure(["daemon", "--foreground", "--run-dir", mountPoint + "/run", "--watchdog", "none"])
        #expect(foreground.status != 0 && foreground.stderr.contains("pid file"), "\(foreground)")
        let pidFile = (try? String(contentsOfFile: mountPoint + "/run/tenure.pid", encoding: .utf8))
        #expect(pidFile == nil || pidFile?.isEmpty == false, "an empty pid file was left behind")
    }
}
