import Foundation
import Synchronization
import Testing
import TenureTestSupport
import TenureClient
import TenureCore

/// A real `tenure daemon --foreground` on a private run dir, stopped (and
/// its holders killed) when dropped.
final class RunningDaemon {
    let runDir: String
    let process: Background

    init(scratch: Scratch, name: String = "nodeA", extra: [String] = [], wrapper: [String] = []) throws {
        runDir = scratch.path + "/run-" + name
        let arguments = ["daemon", "--foreground", "--run-dir", runDir, "--host-name", name, "--watchdog", "none",
                         "--watchdog-fire", "4", "--io-timeout", "1", "--log-level", "debug"] + extra
        if wrapper.isEmpty {
            process = try Background(arguments)
        } else {
            process = try Background(shell: wrapper, arguments)
        }
        // A bound only a failure reaches: a debug daemon on a busy machine may take seconds.
        let started = eventually(60) {
            guard process.process.isRunning else { return true }
            return FileManager.default.fileExists(atPath: runDir + "/tenure.sock") && (try? client(["status"]))?.status == 0
        }
        guard started, process.process.isRunning else { throw HarnessError("the daemon did not start:\n\(process.wait())") }
    }

    func client(_ arguments: [String]) throws -> Outcome {
        try Harness.tenure(["client"] + [arguments[0]] + ["--run-dir", runDir] + arguments.dropFirst())
    }

    @discardableResult
    func clientOK(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        let outcome = try client(arguments)
        #expect(outcome.status == 0, "tenure client \(arguments.joined(separator: " ")):\n\(outcome)", sourceLocation: sourceLocation)
        return outcome
    }

    func status() throws -> [String: Any] { try Harness.json(try clientOK(["status", "--json"]).stdout) }

    func leases() throws -> [[String: Any]] { try status()["leases"] as? [[String: Any]] ?? [] }

    deinit {
        _ = try? client(["shutdown", "--force"])
        for _ in 0..<100 where process.process.isRunning { usleep(50_000) }
        if process.process.isRunning { kill(process.process.processIdentifier, SIGKILL) }
    }
}

extension Background {
    /// Runs `tenure ARGS` through `sh -c` with `shell` commands before exec.
    convenience init(shell: [String], _ arguments: [String]) throws {
        let quoted = ([Harness.tenurePath] + arguments).map { "'\($0)'" }.joined(separator: " ")
        try self.init(executable: "/bin/sh", ["-c", (shell + ["exec \(quoted)"]).joined(separator: " && ")])
    }
}

/// Polls `condition` every 50 ms for up to `seconds`.
func eventually(_ seconds: Double = 10, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        usleep(50_000)
    }
    return try condition()
}

func monotonicSeconds() -> Double { Double(monotonicNanoseconds()) / 1e9 }

func isAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    guard let close = stat.lastIndex(of: ")") else { return false }
    return stat[stat.index(close, offsetBy: 2)] != "Z"
}

@Suite("The daemon holds leases for processes", .ownThreads, .serialized)
struct DaemonTests {
    /// `tenure daemon --foreground` hands over to `tenured`, its own binary,
    /// in the same process: what started is what serves (a supervisor's
    /// child, systemd's MAINPID), and none of the command line's Foundation
    /// is in the process that locks its memory.
    @Test func theDaemonServesAsTenuredInTheProcessThatStarted() throws {
        let scratch = try Scratch()
        let daemon = try RunningDaemon(scratch: scratch)
        let pid = daemon.process.process.processIdentifier
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        #expect(exe == Harness.tenurePath + "d", "the started pid runs \(exe)")
        let maps = try procText("/proc/\(pid)/maps")
        let foundation = maps.split(separator: "\n").filter { $0.contains("Foundation") }
        #expect(foundation.isEmpty, "Foundation mapped into the daemon: \(foundation.prefix(3))")
        // The witness that the check can see it: this test process links Foundation.
        #expect(try procText("/proc/self/maps").contains("Foundation"))
        try daemon.clientOK(["status"])
    }

    @Test func tenuredRefusesWhatIsNotASettingAndPointsToTenureDaemon() throws {
        let misspelled = try Harness.run(Harness.tenurePath + "d", ["--io-timout", "3"])
        #expect(misspelled.status == 1)
        #expect(misspelled.stderr.contains("--io-timout is not a daemon setting") && misspelled.stderr.contains("Did you mean --io-timeout?"), "\(misspelled)")
        let bare = try Harness.run(Harness.tenurePath + "d", ["stray"])
        #expect(bare.status == 1 && bare.stderr.contains("tenure daemon"), "\(bare)")
        let help = try Harness.run(Harness.tenurePath + "d", ["--help"])
        #expect(help.status == 0 && help.stdout.contains("--watchdog-fire") && help.stdout.contains("tenure daemon --help"), "\(help)")
        let badValue = try Harness.run(Harness.tenurePath + "d", ["--io-timeout", "soon", "--watchdog", "none"])
        #expect(badValue.status == 1 && badValue.stderr.contains("--io-timeout soon is not a whole number"), "\(badValue)")
    }

    /// A lockspace and two resources in a new file; the daemon joined as host 1.
    func setUp(_ scratch: Scratch, extra: [String] = []) throws -> (RunningDaemon, String) {
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "2", "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch, extra: extra)
        try daemon.clientOK(["add-lockspace", "-s", "D:1:\(file):0"])
        return (daemon, file)
    }

    func diskState(_ file: String, _ r: Int) throws -> [String: Any] {
        try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "D:R\(r):\(file):\((r + 1) << 20)", "--json"]).stdout)
    }

    /// What an operator looks at after trouble: the renewals' times and the
    /// recent log.
    @Test func renewalHistoryAndTheLogDumpAreThereForTheOperator() throws {
        let scratch = try Scratch()
        let (daemon, _) = try setUp(scratch)
        #expect(eventually(6) { (try? daemon.client(["renewal", "D"]))?.stdout.contains("read_ms=") == true })
        let renewal = try daemon.clientOK(["renewal", "D"])
        #expect(renewal.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("timestamp=") && $0.contains(" write_ms=") }, "\(renewal)")
        let dump = try daemon.clientOK(["log-dump"])
        #expect(dump.stdout.contains("joined lockspace D"), "\(dump.stdout.suffix(2000))")
        let unknown = try daemon.client(["renewal", "NOPE"])
        #expect(unknown.status != 0 && unknown.stderr.contains("not joined"), "\(unknown)")
    }

    /// Tenure's own command line for what sanlock's clients have: a lock
    /// value block passed from one holder to the next, a persistent lease
    /// kept as an orphan and released, and a host event sent.
    @Test func lockValueBlocksOrphansAndHostEventsFromTenuresCommandLine() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let r0 = "D:R0:\(file):1048576"
        let environment = ProcessInfo.processInfo.environment.merging([Wire.runDirEnvironment: daemon.runDir]) { $1 }
        let tenure = Harness.tenurePath
        // The command holds the lease itself (exec), so its pid is $$.
        let setter = try Harness.run(tenure, ["client", "hold", "-r", r0, "--lvb", "--", "/bin/sh", "-c", "'\(tenure)' client set-lvb R0 --pid $$ --text v7"],
                                     environment: environment)
        #expect(setter.status == 0 && setter.stdout.contains("Set the lock value block of R0 (2 bytes)"), "\(setter)")
        #expect(eventually { (try? daemon.leases())?.isEmpty == true }, "the setter's lease was not released")
        // The daemon may still be writing the previous holder's release (its
        // status no longer lists the lease): the refusal says to retry, so retry.
        func holdAfterRelease(_ arguments: [String]) throws -> Outcome {
            var outcome = Outcome(status: -1, stdout: "", stderr: "")
            _ = try eventually {
                outcome = try Harness.run(tenure, ["client", "hold", "-r", r0] + arguments, environment: environment)
                return !outcome.stderr.contains("is being released")
            }
            return outcome
        }
        let getter = try holdAfterRelease(["--lvb", "--", "/bin/sh", "-c", "'\(tenure)' client get-lvb R0 --pid $$"])
        #expect(getter.stdout.hasSuffix("v7\n"), "the next holder did not read the block: \(getter)")
        #expect(eventually { (try? daemon.leases())?.isEmpty == true })

        // Persistent: the holder exits, the host keeps the lease.
        let keeper = try holdAfterRelease(["--persistent", "--", "/bin/true"])
        #expect(keeper.status == 0, "\(keeper)")
        var status = ""
        #expect(eventually { status = (try? daemon.clientOK(["status"]).stdout) ?? ""; return status.contains("orphan") && status.contains("D:R0:") },
                "status does not show the orphan: \(status)")
        let refused = try daemon.client(["hold", "-r", r0, "--seconds", "0"])
        #expect(refused.status != 0 && refused.stderr.contains("orphan"), "a plain acquire took the orphan: \(refused)")
        try daemon.clientOK(["release-orphans", "D", "R0"])
        try daemon.clientOK(["hold", "-r", r0, "--seconds", "0"])
        let none = try daemon.client(["release-orphans", "D"])
        #expect(none.status != 0 && none.stderr.contains("no orphan"), "\(none)")

        try daemon.clientOK(["set-event", "D", "--host-id", "2", "--event", "1", "--data", "9"])
        let both = try daemon.client(["set-event", "D", "--host-id", "2", "--all-hosts", "--event", "1"])
        #expect(both.status != 0, "\(both)")
    }

    @Test func aProcessHoldsALeaseUntilItDies() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        let pid = holder.process.processIdentifier
        #expect(try eventually { try daemon.leases().count == 1 }, "the lease was never held")
        let lease = try #require(try daemon.leases().first)
        #expect(lease["pid"] as? Int == Int(pid), "the holder is the pid from SO_PEERCRED")
        #expect(lease["lver"] as? Int == 1)
        #expect(try daemon.clientOK(["inquire", "--pid", String(pid)]).stdout.contains("D:R0:\(file):1048576:1"))
        let inquired = try Harness.json(try daemon.clientOK(["inquire", "--pid", String(pid), "--json"]).stdout)
        #expect(inquired["leases"] as? [String] == ["D:R0:\(file):1048576:1"])
        let text = try daemon.clientOK(["status"]).stdout
        #expect(text.contains("valid") && text.contains("\(pid)") && text.contains("D:R0:\(file):1048576:1"), "\(text)")
        // Renewal is never delayed by client work: the worst gap between renewals stays near 2N.
        let gap = (try daemon.status()["lockspaces"] as? [[String: Any]])?.first?["worst_renewal_gap_ms"] as? Int ?? -1
        #expect(gap >= 0 && gap < 3000, "worst renewal gap \(gap) ms")
        #expect(try diskState(file, 0)["state"] as? String != "free")

        // Another host cannot take it while host 1 is alive.
        try Harness.tenureOK(["direct", "acquire-id", "-s", "D:2:\(file):0", "--io-timeout", "1"])
        let refused = try Harness.tenure(["direct", "acquire", "-r", "D:R0:\(file):1M", "--host-id", "2", "-s", "D:2:\(file):0", "--no-wait"])
        #expect(refused.status == 1 && refused.stderr.contains("held-by-live-host"), "\(refused)")

        // The holder dies without releasing: its connection closes, the daemon releases.
        kill(pid, SIGKILL)
        #expect(try eventually { try daemon.leases().isEmpty }, "the dead holder's lease was not released")
        #expect(try diskState(file, 0)["state"] as? String == "free")
    }

    /// Renewal keeps its own thread and handles, off the event loop that
    /// serves the clients: 32 clients acquiring and releasing as fast as
    /// the daemon answers them neither delay a renewal nor fail one.
    @Test func renewalsKeepTheirScheduleUnderThirtyTwoClients() throws {
        let scratch = try Scratch()
        let file = try scratch.file("load.img", size: 80 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "64", "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch)
        try daemon.clientOK(["add-lockspace", "-s", "D:1:\(file):0"])
        func lockspace() throws -> [String: Any] {
            try #require((try daemon.status()["lockspaces"] as? [[String: Any]])?.first)
        }
        let before = try lockspace()["renewals"] as? Int ?? -1
        let started = ContinuousClock.now
        let load = try Harness.tenureOK(["bench", "acquire", "--run-dir", daemon.runDir, "--lockspace", "D", "--path", file,
                                         "--resources", "64", "--clients", "32", "--cycles", "40", "--json"])
        let loaded = ContinuousClock.now - started
        let results = load.stdout.split(separator: "\n").compactMap { try? Harness.json(String($0)) }
        let thirtyTwo = try #require(results.first { $0["clients"] as? Int == 32 }, "the bench printed no 32-client line: \(load.stdout)")
        #expect(thirtyTwo["cycles"] as? Int == 32 * 40, "\(thirtyTwo)")
        let after = try lockspace()
        let renewals = (after["renewals"] as? Int ?? 0) - before
        // One renewal per 2N = 2 s; the load ran for `loaded`.
        let expected = Int(loaded.components.seconds) / 2 - 1
        #expect(renewals >= expected, "\(renewals) renewals in \(loaded) of load")
        #expect(after["failed_renewals"] as? Int == 0, "\(after)")
        let gap = after["worst_renewal_gap_ms"] as? Int ?? -1
        #expect(gap >= 0 && gap < 3000, "worst renewal gap \(gap) ms under load (2N is 2000 ms)")
    }

    @Test func aLockspaceIsAddedAsynchronously() throws {
        let scratch = try Scratch()
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "1", "--io-timeout", "1"])
        let daemon = try RunningDaemon(scratch: scratch)
        let added = try daemon.clientOK(["add-lockspace", "-s", "D:3:\(file):0", "--async"])
        #expect(added.stdout.contains("Joining"))
        #expect(try daemon.status()["joining"] as? [String] == ["D"], "the join goes on in the daemon")
        #expect(try eventually { (try daemon.status()["lockspaces"] as? [[String: Any]])?.first?["valid"] as? Bool == true })
        #expect(try daemon.status()["joining"] as? [String] == [])
    }

    @Test func aForcedRequestKillsTheHolderAndFreesTheLease() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let holder = try Background(["client", "hold", "-r", "D:R1:\(file):2M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 })
        // Host 2 (no daemon) asks for it with force.
        try Harness.tenureOK(["direct", "request", "-r", "D:R1:\(file):2M", "--force"])
        #expect(eventually { !isAlive(holder.process.processIdentifier) }, "the holder was not killed")
        #expect(holder.wait().status != 0)
        #expect(try eventually { try diskState(file, 1)["state"] as? String == "free" }, "the lease was not given up")
        try Harness.tenureOK(["direct", "acquire-id", "-s", "D:2:\(file):0", "--io-timeout", "1"])
        let taken = try Harness.tenureOK(["direct", "acquire", "-r", "D:R1:\(file):2M", "--host-id", "2", "-s", "D:2:\(file):0", "--json"])
        #expect(try Harness.json(taken.stdout)["lver"] as? Int == 2)
    }

    /// A requester with a daemon signals the holder through its delta
    /// lease's bitmap, so the holder reads its request records at once
    /// instead of at its every-2N poll.
    @Test func aRequestThroughADaemonSignalsTheHolder() throws {
        let scratch = try Scratch()
        // io_timeout 3: the holder's unprompted poll of request records comes every 6 s.
        let (holderDaemon, file) = try setUp(scratch, extra: ["--io-timeout", "3"])
        let requester = try RunningDaemon(scratch: scratch, name: "nodeB")
        try requester.clientOK(["add-lockspace", "-s", "D:2:\(file):0"])
        let holder = try Background(["client", "hold", "-r", "D:R1:\(file):2M", "--run-dir", holderDaemon.runDir])
        #expect(try eventually { try holderDaemon.leases().count == 1 })
        // The first poll after the lease was taken is an unprompted one; let it pass.
        usleep(1_500_000)
        try requester.clientOK(["request", "-r", "D:R1:\(file):2M", "--force"])
        #expect(eventually { !isAlive(holder.process.processIdentifier) }, "the holder was not killed")
        #expect(try eventually { try diskState(file, 1)["state"] as? String == "free" }, "the lease was not given up")
        let sleeper = try Background(["client", "hold", "-r", "D:R1:\(file):2M", "--run-dir", requester.runDir])
        #expect(try eventually { try requester.leases().first?["lver"] as? Int == 2 }, "the requester took the lease")
        kill(sleeper.process.processIdentifier, SIGKILL)
        _ = try holderDaemon.clientOK(["shutdown", "--force"])
        #expect(holderDaemon.process.wait().stderr.contains("another host signalled this one"), "the request arrived by the bitmap")
    }

    @Test func aPrivilegedClientAcquiresForAnotherProcess() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["60"]
        try sleeper.run()
        let pid = sleeper.processIdentifier
        let acquired = try daemon.clientOK(["acquire", "--pid", String(pid), "-r", "D:R0:\(file):1M"])
        #expect(acquired.stdout.contains(":1048576:1"))
        #expect(try daemon.leases().first?["pid"] as? Int == Int(pid))
        // The acquiring client has gone; the lease stays with the sleeper until it exits.
        usleep(1_500_000)
        #expect(try daemon.leases().count == 1)
        kill(pid, SIGKILL)
        sleeper.waitUntilExit()
        #expect(try eventually { try daemon.leases().isEmpty }, "the exited process's lease was not released")
    }

    @Test func shutdownIsRefusedWhileLeasesAreHeldAndASecondDaemonIsRefused() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let second = try Harness.tenure(["daemon", "--foreground", "--run-dir", daemon.runDir, "--watchdog", "none"])
        #expect(second.status == 1 && second.stderr.contains("Another Tenure daemon (pid \(daemon.process.process.processIdentifier)) runs on this run dir"), "\(second)")
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 })
        let refused = try daemon.client(["shutdown"])
        #expect(refused.status == 1 && refused.stderr.contains("hold leases"), "\(refused)")
        kill(daemon.process.process.processIdentifier, SIGTERM)
        usleep(500_000)
        #expect(daemon.process.process.isRunning, "SIGTERM stops a daemon whose leases are held")
        try daemon.clientOK(["shutdown", "--force"])
        #expect(eventually { !daemon.process.process.isRunning }, "a forced shutdown stops it")
        #expect(!isAlive(holder.process.processIdentifier), "a forced shutdown kills the holders first")
        #expect(try diskState(file, 0)["state"] as? String == "free")
        let left = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "D:1:\(file):0", "--json"]).stdout)
        #expect((left["leader"] as? [String: Any])?["timestamp"] as? Int == 0, "the host id was released")
    }

    /// The storage under host A becomes slower than io_timeout (a
    /// blkio-throttled loop device; host B's path stays fast): A's renewals
    /// fail, its lockspace is lost 8 × io_timeout after the last good
    /// renewal, and its daemon kills the holder. Host B keeps trying to take
    /// the lease; the witness (the holder's death and B's win, timed from
    /// outside) shows B gets it only after A's holder is dead.
    @Test(.enabled(if: ThrottledGroup.available, "needs root, loop devices and a writable cgroup-v1 blkio hierarchy"))
    func aLostLockspaceKillsItsHoldersBeforeAnotherHostTakesOver() throws {
        let scratch = try Scratch()
        let loop = try LoopDevice(in: scratch, size: 4 << 20, sectorSize: 512)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", loop.device, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let group = try ThrottledGroup(device: loop.device, readsPerSecond: nil)
        let hostA = try RunningDaemon(scratch: scratch, name: "hostA", wrapper: ["echo $$ > \(group.path)/cgroup.procs"])
        let hostB = try RunningDaemon(scratch: scratch, name: "hostB")
        try hostA.clientOK(["add-lockspace", "-s", "D:1:\(loop.device):0"])
        try hostB.clientOK(["add-lockspace", "-s", "D:2:\(loop.device):0"])
        let holder = try Background(["client", "hold", "-r", "D:R0:\(loop.device):1M", "--run-dir", hostA.runDir])
        #expect(try eventually { try hostA.leases().count == 1 })
        let start = monotonicSeconds()
        try group.throttle(readsPerSecond: 1, writesPerSecond: 1)
        var holderDied: Double?, bWon: Double?, bState = ""
        while monotonicSeconds() - start < 40, bWon == nil {
            if holderDied == nil && !isAlive(holder.process.processIdentifier) { holderDied = monotonicSeconds() }
            let attempt = try hostB.client(["hold", "-r", "D:R0:\(loop.device):1M", "--seconds", "0"])
            if attempt.status == 0 {
                bWon = monotonicSeconds()
                bState = attempt.stdout
            } else {
                usleep(200_000)
            }
        }
        if holderDied == nil && !isAlive(holder.process.processIdentifier) { holderDied = monotonicSeconds() }
        try group.throttle(readsPerSecond: nil, writesPerSecond: nil)
        let died = try #require(holderDied, "host A's holder survived the loss of its lockspace")
        let won = try #require(bWon, "host B never took the lease over")
        #expect(died < won, "host B took the lease \(died - won) s before host A's holder died")
        // A's lockspace is lost 8N = 8 s after its last renewal started; B may
        // take the lease 8N + W = 12 s after it.
        #expect(died - start > 5 && died - start < 13, "A's holder was killed \(died - start) s after its storage slowed down")
        #expect(bState.hasSuffix(":2\n"), "B holds the next lver: \(bState)")
        let lockspaces = try hostA.status()["lockspaces"] as? [[String: Any]] ?? []
        #expect(lockspaces.first?["valid"] as? Bool == false)
        #expect(try hostA.leases().isEmpty)
    }

    /// Three hosts, each with two workers, contend for two leases through
    /// their daemons. Each winner runs a witness under its lease that takes
    /// a token file with O_EXCL (noclobber) and removes it before the lease
    /// is released: two holders at once would find the token taken. The lver
    /// on disk counts every hold.
    @Test func threeHostsContendThroughTheirDaemonsWithoutOverlap() throws {
        let scratch = try Scratch()
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "2", "--io-timeout", "1", "--max-hosts", "8"])
        let hosts = try (1...3).map { try RunningDaemon(scratch: scratch, name: "node\($0)") }
        for (i, daemon) in hosts.enumerated() { try daemon.clientOK(["add-lockspace", "-s", "D:\(i + 1):\(file):0"]) }
        let violations = scratch.path + "/violations"
        let witness = try scratch.file("witness.sh", size: 0)
        try """
        #!/bin/sh
        # $1: token file, $2: who. Runs while the lease is held.
        if ( set -o noclobber; echo "$2" > "$1" ) 2>/dev/null; then
          sleep 0.02
          rm -f "$1"
        else
          echo "$2 found $1 taken by $(cat "$1")" >> \(violations)
        fi
        """.write(toFile: witness, atomically: true, encoding: .utf8)
        chmod(witness, 0o755)
        let wins = Mutex<[Int]>([0, 0])
        let runDirs = hosts.map(\.runDir), base = scratch.path
        onThreads(6) { worker in
            let host = worker % 3
            for attempt in 0..<15 {
                let r = (worker + attempt) % 2
                let token = base + "/token-R\(r)"
                guard let outcome = try? Harness.tenure(["client", "hold", "--run-dir", runDirs[host], "-r", "D:R\(r):\(file):\((r + 1) << 20)",
                                                         "--", witness, token, "node\(host + 1)/w\(worker)"])
                else { continue }
                if outcome.status == 0 { wins.withLock { $0[r] += 1 } } else { usleep(50_000) }
            }
        }
        let overlaps = (try? String(contentsOfFile: violations, encoding: .utf8)) ?? ""
        #expect(overlaps.isEmpty, "two holders at once:\n\(overlaps)")
        let counts = wins.withLock { $0 }
        for r in 0..<2 {
            #expect(counts[r] >= 3, "R\(r) was held only \(counts[r]) times")
            let leader = try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "D:R\(r):\(file):\((r + 1) << 20)", "--json"]).stdout)["leader"] as? [String: Any]
            #expect(leader?["lver"] as? Int == counts[r], "every hold committed one lver")
        }
    }

    /// Migration: host A's process gives its lease up and reports its state
    /// string; host B acquires with that string, which requires the same lver.
    /// A stale string (the lease moved on since) is refused.
    @Test func aLeaseIsHandedOverWithItsStateString() throws {
        let scratch = try Scratch()
        let (hostA, file) = try setUp(scratch)
        let hostB = try RunningDaemon(scratch: scratch, name: "nodeB")
        try hostB.clientOK(["add-lockspace", "-s", "D:2:\(file):0"])
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", hostA.runDir])
        #expect(try eventually { try hostA.leases().count == 1 })
        let state = try hostA.clientOK(["inquire", "--pid", String(holder.process.processIdentifier)]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(state == "D:R0:\(file):1048576:1")
        try hostA.clientOK(["release", "R0", "--pid", String(holder.process.processIdentifier)])
        let onB = try hostB.clientOK(["hold", "-r", state, "--seconds", "0"])
        #expect(onB.stdout == "D:R0:\(file):1048576:2\n", "\(onB.stdout)")
        let stale = try hostB.client(["hold", "-r", state, "--seconds", "0"])
        #expect(stale.status == 1 && stale.stderr.contains("lver-mismatch"), "\(stale)")
    }

    /// A daemon killed and started again on the same run dir rejoins: its
    /// old delta lease must first look dead (8N + W unchanged), then the
    /// generation goes up, so other hosts know its old leases are gone.
    @Test func aRestartedDaemonRejoinsWithANewGeneration() throws {
        let scratch = try Scratch()
        let (first, file) = try setUp(scratch)
        kill(first.process.process.processIdentifier, SIGKILL)
        first.process.process.waitUntilExit()
        let second = try RunningDaemon(scratch: scratch)
        let start = monotonicSeconds()
        let joined = try second.clientOK(["add-lockspace", "-s", "D:1:\(file):0"])
        #expect(joined.stdout.contains("generation 2"), "\(joined.stdout)")
        #expect(monotonicSeconds() - start > 10, "the rejoin did not wait for the old delta lease to look dead")
    }

    /// The pets a fake watchdog (a plain file) received, in monotonic seconds,
    /// and whether it was closed with the magic 'V'.
    func pets(_ path: String) -> (times: [Double], magicClose: Bool) {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let times = text.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("pet ") else { return nil }
            return Double(line.dropFirst(4)).map { $0 / 1e9 }
        }
        return (times, text.hasSuffix("V"))
    }

    @Test func theWatchdogIsPettedAndClosedWithTheMagicClose() throws {
        let scratch = try Scratch()
        let watchdog = try scratch.file("watchdog", size: 0)
        let (daemon, _) = try setUp(scratch, extra: ["--watchdog", watchdog])
        #expect(eventually { pets(watchdog).times.count >= 2 }, "the watchdog was not petted")
        try daemon.clientOK(["shutdown"])
        #expect(eventually { !daemon.process.process.isRunning })
        #expect(pets(watchdog).magicClose, "a clean shutdown disarms the watchdog")
    }

    /// A holder that ignores SIGTERM outlives its lost lockspace for the kill
    /// grace: during that time the watchdog must not be petted (it would
    /// reset the host within W of the expiry); once the holder is killed,
    /// petting resumes.
    @Test(.enabled(if: ThrottledGroup.available, "needs root, loop devices and a writable cgroup-v1 blkio hierarchy"))
    func petsStopWhileALostLockspaceStillHasHolders() throws {
        let scratch = try Scratch()
        let watchdog = try scratch.file("watchdog", size: 0)
        let loop = try LoopDevice(in: scratch, size: 4 << 20, sectorSize: 512)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", loop.device, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let group = try ThrottledGroup(device: loop.device, readsPerSecond: nil)
        let daemon = try RunningDaemon(scratch: scratch, extra: ["--watchdog", watchdog, "--kill-grace", "6"],
                                       wrapper: ["echo $$ > \(group.path)/cgroup.procs"])
        try daemon.clientOK(["add-lockspace", "-s", "D:1:\(loop.device):0"])
        let stubborn = try Background(executable: "/bin/sh", ["-c", "trap '' TERM; sleep 60"])
        let pid = stubborn.process.processIdentifier
        try daemon.clientOK(["acquire", "--pid", String(pid), "-r", "D:R0:\(loop.device):1M"])
        try group.throttle(readsPerSecond: 1, writesPerSecond: 1)
        let throttledAt = monotonicSeconds()
        #expect(eventually(30) { !isAlive(pid) }, "the holder was never killed")
        let killedAt = monotonicSeconds()
        try group.throttle(readsPerSecond: nil, writesPerSecond: nil)
        #expect(eventually { pets(watchdog).times.last.map { $0 > killedAt } == true }, "petting resumed once the holder was gone")
        let times = pets(watchdog).times
        let gaps = zip(times, times.dropFirst()).map { ($0, $1 - $0) }
        let longest = try #require(gaps.max { $0.1 < $1.1 })
        // Petting stopped at the expiry (at most 8 s after the throttle) and
        // stayed stopped through the 6 s grace until SIGKILL.
        #expect(longest.1 >= 5, "the watchdog was petted while a holder of a lost lockspace lived (longest gap \(longest.1) s)")
        #expect(longest.0 >= throttledAt - 1 && longest.0 <= throttledAt + 9, "petting stopped \(longest.0 - throttledAt) s after the storage slowed")
        #expect(killedAt - longest.0 >= 5, "the holder died \(killedAt - longest.0) s after the last pet")
        #expect(times.last.map { $0 > killedAt } == true, "petting resumed once the holder was gone")
    }

    /// A graceful request runs the holder's killpath (not SIGTERM), which
    /// finds the holder's pid in TENURE_KILL_PID and stops it.
    @Test func aKillpathRunsInsteadOfSIGTERM() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let marker = scratch.path + "/killpath-ran"
        let script = try scratch.file("killpath.sh", size: 0)
        try "#!/bin/sh\necho \"$TENURE_KILL_PID $1\" > \(marker)\nkill -9 \"$TENURE_KILL_PID\"\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--killpath", "\(script) graceful-stop", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 })
        try Harness.tenureOK(["direct", "request", "-r", "D:R0:\(file):1M", "--graceful"])
        #expect(eventually { !isAlive(holder.process.processIdentifier) }, "the killpath did not stop the holder")
        let ran = (try? String(contentsOfFile: marker, encoding: .utf8)) ?? ""
        #expect(ran == "\(holder.process.processIdentifier) graceful-stop\n", "the killpath got the pid and its argument: \(ran)")
        #expect(try eventually { try diskState(file, 0)["state"] as? String == "free" })
    }

    /// A restricted connection can change nothing; a privileged client still
    /// acts for its process.
    @Test func aRestrictedProcessCannotChangeItsLeases() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--restrict", "all,sigkill", "--run-dir", daemon.runDir])
        let pid = holder.process.processIdentifier
        #expect(try eventually { try daemon.leases().count == 1 })
        // A privileged client converts and releases for it (the process's own
        // connection is restricted: theSwiftClientRestrictsItsOwnConnection).
        let shared = try daemon.clientOK(["convert", "R0", "--pid", String(pid), "--shared"])
        #expect(shared.stdout.contains(":SH"), "\(shared.stdout)")
        #expect(try daemon.leases().first?["shared"] as? Bool == true)
        let exclusive = try daemon.clientOK(["convert", "R0", "--pid", String(pid), "--exclusive"])
        #expect(exclusive.stdout.hasSuffix(":2\n"), "converting back commits a new lver: \(exclusive.stdout)")
        try daemon.clientOK(["release", "R0", "--pid", String(pid)])
        #expect(try daemon.leases().isEmpty)
        kill(pid, SIGKILL)
    }

    /// The Swift client in this process: after restrict(all) its own
    /// connection can change nothing; closing it releases the leases.
    @Test func theSwiftClientRestrictsItsOwnConnection() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        var connection: TenureConnection? = try TenureConnection(runDir: daemon.runDir)
        try connection!.register()
        let states = try connection!.acquire(["D:R1:\(file):2M"])
        #expect(states == ["D:R1:\(file):2097152:1"])
        #expect(try connection!.inquire() == "D:R1:\(file):2097152:1")
        try connection!.restrict(Wire.restrictAll)
        do {
            try connection!.release(["R1"])
            Issue.record("a restricted connection released a lease")
        } catch {
            #expect(error.code == .permissionDenied)
            #expect(error.message.contains("restricted itself"))
        }
        #expect(try daemon.leases().first?["pid"] as? Int == Int(getpid()))
        connection = nil
        #expect(try eventually { try daemon.leases().isEmpty }, "closing the registration released the lease")
    }

    @Test(.enabled(if: Harness.isRoot && Harness.which("setpriv") != nil, "needs root and setpriv to run a client as another user"))
    func anUnprivilegedClientCannotActForAnotherProcess() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        chmod(scratch.path, 0o755)
        chmod(daemon.runDir, 0o755)
        chmod(daemon.runDir + "/tenure.sock", 0o666)
        let asNobody = try Harness.run(Harness.which("setpriv")!, ["--reuid=65534", "--regid=65534", "--clear-groups", Harness.tenurePath,
                                                                  "client", "acquire", "--pid", "1", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        #expect(asNobody.status == 1, "\(asNobody)")
        #expect(asNobody.stderr.contains("may not act for process 1"), "\(asNobody.stderr)")
        #expect(try daemon.leases().isEmpty)
    }

    @Test func badRequestsAreRefusedWithMessages() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let unknown = try daemon.client(["add-lockspace", "-s", "NOPE:1:\(file):0"])
        #expect(unknown.status == 1 && unknown.stderr.contains("lockspace"), "\(unknown)")
        let notJoined = try Harness.tenure(["client", "hold", "-r", "OTHER:R0:\(file):1M", "--seconds", "1", "--run-dir", daemon.runDir])
        #expect(notJoined.status == 1 && notJoined.stderr.contains("Lockspace OTHER is not joined on this host"), "\(notJoined)")
        let badString = try Harness.tenure(["client", "hold", "-r", "D:R0", "--seconds", "1", "--run-dir", daemon.runDir])
        #expect(badString.status == 1 && badString.stderr.contains("error ["), "\(badString)")
        let twice = try daemon.client(["add-lockspace", "-s", "D:1:\(file):0"])
        #expect(twice.status == 1 && twice.stderr.contains("joined already"), "\(twice)")
        let noDaemon = try Harness.tenure(["client", "status", "--run-dir", scratch.path + "/nowhere"])
        #expect(noDaemon.status == 1 && noDaemon.stderr.contains("Start it with `tenure daemon`"), "\(noDaemon)")
        let hosts = try Harness.json(try daemon.clientOK(["host-status", "D", "--json"]).stdout)
        let me = (hosts["hosts"] as? [[String: Any]])?.first { $0["host_id"] as? Int == 1 }
        #expect(me?["state"] as? String == "self" && me?["name"] as? String == "nodeA", "\(hosts)")
    }

    /// `tenure bench acquire` runs its cycles through the daemon: the JSON
    /// counts them, and the lver on disk shows every cycle committed.
    /// A daemon joined to lockspace D on a file laid out with `resources` leases.
    func benchSetup(resources: Int) throws -> (Scratch, String, RunningDaemon) {
        let scratch = try Scratch()
        let file = try scratch.file("leases.img", size: (resources + 2) << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", String(resources), "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch)
        try daemon.clientOK(["add-lockspace", "-s", "D:1:\(file):0"])
        return (scratch, file, daemon)
    }

    @Test func theAcquireBenchCountsItsCycles() throws {
        let (scratch, file, daemon) = try benchSetup(resources: 4)
        defer { withExtendedLifetime(scratch) {} }
        let bench = try Harness.tenureOK(["bench", "acquire", "--lockspace", "D", "--path", file, "--resources", "4", "--clients", "3",
                                          "--cycles", "10", "--json", "--run-dir", daemon.runDir])
        var lines = try bench.stdout.split(separator: "\n").map { try Harness.json(String($0)) }
        // First the device's floor: a cycle's ten I/Os back to back, on a sector no lease uses.
        let floor = lines.removeFirst()
        #expect(floor["floor"] as? Bool == true && floor["cycles"] as? Int == 20 && (floor["p50_ms"] as? Double ?? 0) > 0, "\(floor)")
        #expect(lines.first?["floor_ratio"] is Double && lines.last?["floor_ratio"] == nil, "\(lines)")
        // After the one-client line, where its cycles went by the daemon's clocks.
        let breakdown = lines.remove(at: 1)
        #expect(breakdown["breakdown"] as? Bool == true, "\(breakdown)")
        let cycle = breakdown["cycle_ms"] as? Double ?? 0, handle = breakdown["handle_ms"] as? Double ?? 0
        let ioWait = breakdown["io_wait_ms"] as? Double ?? -1
        #expect(cycle > 0 && handle > 0 && handle < cycle, "\(breakdown)")
        #expect(ioWait > 0 && ioWait <= handle, "the I/O wait is part of the daemon's work: \(breakdown)")
        // An acquire and a release of a free lease: ten single-sector I/Os (the
        // participant view's read adds one now and then).
        let ios = breakdown["ios_per_cycle"] as? Double ?? 0
        #expect(ios >= 10 && ios <= 12, "\(breakdown)")
        let polled = breakdown["polled_per_cycle"] as? Double ?? -1
        #expect(polled >= 0 && polled <= ios, "completions the caller found itself are some of the I/Os: \(breakdown)")
        for key in ["to_task_ms", "to_connection_ms", "reply_ms"] { #expect((breakdown[key] as? Double ?? -1) >= 0, "\(key) in \(breakdown)") }
        let unused = try Data(contentsOf: URL(fileURLWithPath: file))[(2 << 20) - 512 ..< (2 << 20)]
        #expect(unused.allSatisfy { $0 == 0 }, "the floor's writes changed the sector they read")
        #expect(lines.map { $0["clients"] as? Int } == [1, 3])
        #expect(lines.map { $0["cycles"] as? Int } == [10, 30])
        for line in lines {
            for key in ["seconds", "cycles_per_second", "p50_ms", "p99_ms"] { #expect(line[key] is Double, "\(key) in \(line)") }
        }
        // R0 ran in both measurements, R1 and R2 in the second, R3 never.
        for (r, expected) in [(0, 20), (1, 10), (2, 10), (3, 0)] {
            let leader = try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "D:R\(r):\(file):\((r + 1) << 20)", "--json"]).stdout)["leader"] as? [String: Any]
            #expect(leader?["lver"] as? Int == expected, "R\(r)")
        }
        #expect(try daemon.leases().isEmpty)
    }

    /// The lockspace bench: a join waits the settle time (2N, N = 1 s) and a
    /// renewal moves at most two sectors, by the daemon's own counters. It
    /// idles longer than the daemon keeps an idle connection (10 s): the
    /// bench once sampled on the connection it joined with, which the daemon
    /// had closed by then (EPIPE).
    @Test func theLockspaceBenchTimesTheJoinAndCountsRenewalIO() throws {
        let scratch = try Scratch()
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "1", "--io-timeout", "1"])
        let daemon = try RunningDaemon(scratch: scratch)
        let bench = try Harness.tenureOK(["bench", "lockspace", "-s", "D:1:\(file):0", "--idle-seconds", "\(Int(Timeouts.idleConnection.components.seconds) + 1)", "--json", "--run-dir", daemon.runDir])
        let lines = try bench.stdout.split(separator: "\n").map { try Harness.json(String($0)) }
        #expect(lines.map { $0["measure"] as? String } == ["join", "idle_renewal"])
        #expect((lines[0]["seconds"] as? Double ?? 0) >= 2, "the join waited 2N: \(lines[0])")
        let renewal = lines[1]
        #expect((renewal["renewals"] as? Int ?? 0) >= 1, "\(renewal)")
        let written = renewal["engine_bytes_written_per_renewal"] as? Double ?? -1
        let read = renewal["engine_bytes_read_per_renewal"] as? Double ?? -1
        // A renewal writes its own sector and reads the host slots from host 1
        // to 64 past the highest joined (FrozenClockCheck.slotsBeyondHighest).
        #expect(written > 0 && written <= 1024, "at most two sectors written per renewal: \(renewal)")
        #expect(read > 0 && read <= Double((2 + 64) * 512), "at most 66 sectors read per renewal: \(renewal)")
        #expect(renewal["device_bytes_read_per_renewal"] == nil, "a file has no block-device statistics")
        #expect((try daemon.status()["lockspaces"] as? [[String: Any]])?.isEmpty == true, "it left the lockspace")
    }

    /// The memory bench holds what it says (the lvers move once per held
    /// lease, the status shows the daemon's resident size) and its soak
    /// counts cycles that happened on disk.
    @Test func theMemoryBenchHoldsEveryLeaseAndSoaks() throws {
        let (scratch, file, daemon) = try benchSetup(resources: 12)
        defer { withExtendedLifetime(scratch) {} }
        #expect((try daemon.status()["resident_kib"] as? Int ?? 0) > 1000, "the status reports the daemon's resident size")
        let bench = try Harness.tenureOK(["bench", "memory", "--lockspace", "D", "--path", file, "--resources", "10", "--clients", "2",
                                          "--soak-seconds", "2", "--sample-seconds", "1", "--json", "--run-dir", daemon.runDir])
        let lines = try bench.stdout.split(separator: "\n").map { try Harness.json(String($0)) }
        #expect(lines.map { $0["measure"] as? String } == ["held_leases", "soak"])
        #expect(lines[0]["leases"] as? Int == 10)
        #expect((lines[0]["resident_kib"] as? Int ?? 0) > 0)
        let soakCycles = lines[1]["cycles"] as? Int ?? 0
        #expect(soakCycles > 0 && (lines[1]["samples_kib"] as? [Int])?.count ?? 0 >= 2, "\(lines[1])")
        // Held once each: R0 and R1 also cycled in the soak; R10 and R11 were never touched.
        var lvers: [Int] = []
        for r in 0..<12 {
            let leader = try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "D:R\(r):\(file):\((r + 1) << 20)", "--json"]).stdout)["leader"] as? [String: Any]
            lvers.append(leader?["lver"] as? Int ?? -1)
        }
        #expect(Array(lvers[2..<10]) == Array(repeating: 1, count: 8))
        #expect(lvers[0] + lvers[1] == 2 + soakCycles)
        #expect(lvers[10] == 0 && lvers[11] == 0)
        #expect(try daemon.leases().isEmpty)
    }

    /// The README's main job runs end to end: three daemons, contention, a
    /// forced request, a crash and its takeover, with lver growing.
    @Test func theDemoRuns() throws {
        let scratch = try Scratch()
        let demo = try Harness.tenure(["demo", "--work-dir", scratch.path + "/demo"])
        #expect(demo.status == 0, "\(demo)")
        #expect(demo.stdout.contains("host 1: holds R0 with lver 1"), "\(demo.stdout)")
        #expect(demo.stdout.contains("host 2: R0 refused: held by host 1"), "\(demo.stdout)")
        #expect(demo.stdout.contains("host 2: holds R1 with lver 2"), "\(demo.stdout)")
        #expect(demo.stdout.contains("host 2: holds R0 with lver 2"), "\(demo.stdout)")
        #expect(demo.stdout.contains("Done:"))
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/demo"), "the demo removes what it made")
    }

    /// Random, truncated, oversized and unknown messages: each gets an error
    /// or a closed connection, and the daemon still serves a correct client.
    @Test func malformedMessagesNeverBreakTheDaemon() throws {
        let scratch = try Scratch()
        let (daemon, _) = try setUp(scratch)
        var generator = SystemRandomNumberGenerator()
        let socketPath = daemon.runDir + "/tenure.sock"
        var errorReplies = 0
        for round in 0..<600 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: Array(socketPath.utf8) + [0])
            }
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            #expect(connected == 0)
            var bytes = Self.validMessage(command: UInt16(1 + round % 9), fields: ["0", "junk\(round)"])
            switch round % 6 {
            case 0: bytes = (0..<Int.random(in: 1...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            case 1: bytes = Array(bytes.prefix(Int.random(in: 1..<bytes.count, using: &generator)))
            case 2: bytes.replaceSubrange(8..<12, with: [0xFF, 0xFF, 0xFF, 0x7F])   // a huge length
            case 3: bytes[6] = 0x77                                                    // unknown command
            case 4: for _ in 0..<3 { bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator) }
            default: bytes[4] = 9                                                      // another version
            }
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            shutdown(fd, Int32(SHUT_WR))
            var reply = [UInt8](repeating: 0, count: 4096)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let n = recv(fd, &reply, reply.count, 0)
            if n >= 16 { errorReplies += 1 }
            close(fd)
        }
        #expect(errorReplies > 100, "malformed messages get error replies (\(errorReplies))")
        #expect(daemon.process.process.isRunning)
        // A correct client is still served.
        #expect(try daemon.status()["lockspaces"] as? [[String: Any]] != nil)
    }

    static func validMessage(command: UInt16, fields: [String]) -> [UInt8] {
        var payload: [UInt8] = []
        for f in fields {
            let b = Array(f.utf8)
            payload += [UInt8(b.count & 0xFF), UInt8(b.count >> 8)] + b
        }
        func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
        return le32(0x544E_5231) + [1, 0, UInt8(command & 0xFF), UInt8(command >> 8)] + le32(UInt32(payload.count)) + le32(7) + payload
    }
}
