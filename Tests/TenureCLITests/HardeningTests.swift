import Foundation
import Testing
import TenureTestSupport
import TenureCore
import TenureFormat

/// Regression tests for what an attacker or a careless operator could do to
/// the daemon (issue "Hardening"): each failed on the code before its fix.
/// Real daemons, real processes, real files; records are forged with
/// TenureFormat's encoder so they are checksum-valid.
@Suite("The daemon survives hostile disks, peers and operators", .ownThreads, .serialized)
struct HardeningTests {
    /// The daemon tests' layout: lockspace D, R0 at 1M, R1 at 2M, host 1 joined.
    func setUp(_ scratch: Scratch, extra: [String] = []) throws -> (RunningDaemon, String) {
        try DaemonTests().setUp(scratch, extra: extra)
    }

    func diskState(_ file: String, _ r: Int) throws -> [String: Any] { try DaemonTests().diskState(file, r) }

    /// Rewrites host `id`'s delta lease as another join of the same host id
    /// would: same owner, generation and name, another incarnation.
    func impersonate(host id: Int, in file: String) throws {
        let offset = (id - 1) * 512
        var record = LeaderRecord(decoding: try contents(of: file, offset: offset, length: 512))
        record.joinIncarnation &+= 1
        record.timestamp = DiskTimestamp(record.timestamp.rawValue + 1)
        try overwrite(file, at: offset, with: record.encodedSector(.bytes512))
    }

    func overwrite(_ file: String, at offset: Int, with bytes: [UInt8]) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: Data(bytes))
        try handle.synchronize()
    }

    /// A process that ignores SIGTERM (its shell set SIG_IGN before exec) and
    /// holds R0 restricted to SIGTERM: nothing the daemon may send stops it.
    func unkillableHolder(_ daemon: RunningDaemon, _ file: String, resource: String = "R0:1M") throws -> Background {
        let quoted = [Harness.tenurePath, "client", "hold", "-r", "D:\(resource.replacingOccurrences(of: ":", with: ":\(file):"))",
                      "--restrict", "sigterm", "--run-dir", daemon.runDir].map { "'\($0)'" }.joined(separator: " ")
        let holder = try Background(executable: "/bin/sh", ["-c", "trap '' TERM; exec \(quoted)"])
        #expect(try eventually { try daemon.leases().count == 1 }, "the holder never got its lease: \(holder.output)")
        return holder
    }

    // MARK: 1. Fencing never gives up on a live holder

    /// A lost lockspace whose holder cannot be stopped: the daemon keeps the
    /// lease held and the watchdog unpetted for as long as the holder lives
    /// (it gave up after grace + 5 s and resumed petting, so another host
    /// took the lease with the holder alive); once it is gone, petting resumes.
    @Test func aLostLockspaceWithAnUnkillableHolderStopsPettingUntilTheHolderIsGone() throws {
        let scratch = try Scratch()
        let watchdog = try scratch.file("watchdog", size: 0)
        let (daemon, file) = try setUp(scratch, extra: ["--watchdog", watchdog, "--kill-grace", "1"])
        let holder = try unkillableHolder(daemon, file)
        let pid = holder.process.processIdentifier
        try impersonate(host: 1, in: file)
        let lostBy = monotonicSeconds() + 3
        #expect(try eventually(6) { (try daemon.status()["fencing"] as? [Int]) == [Int(pid)] }, "the holder was never fenced")
        // Past the grace + 5 s after which the daemon used to give up.
        usleep(9_000_000)
        #expect(isAlive(pid), "the holder was meant to survive")
        let status = try daemon.status()
        #expect((status["leases"] as? [[String: Any]])?.first?["pid"] as? Int == Int(pid), "the lease was given up while its holder lived: \(status)")
        let pets = DaemonTests().pets(watchdog).times
        #expect(pets.last.map { $0 < lostBy } ?? false, "the watchdog was petted after the lockspace was lost with a live holder")
        #expect(holder.output.stderr.isEmpty || !holder.output.stderr.contains("released"))
        kill(pid, SIGKILL)
        #expect(try eventually { try daemon.leases().isEmpty }, "the lease stayed after its holder died")
        #expect(eventually { (DaemonTests().pets(watchdog).times.last ?? 0) > monotonicSeconds() - 2 }, "petting never resumed once the holder was gone")
        let log = daemon.stderrSoFar
        #expect(log.contains("still holds its leases"), "the daemon did not say why it kept the lease")
    }

    /// A forced request for a lease whose holder allows only SIGTERM: the
    /// holder gets SIGTERM (it got no signal at all), and the lease is not
    /// released while it lives (it was, so the requester took it).
    @Test func aRequestNeverReleasesALeaseWhileItsHolderLives() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let holder = try unkillableHolder(daemon, file)
        let pid = holder.process.processIdentifier
        try Harness.tenureOK(["direct", "request", "-r", "D:R0:\(file):1M", "--force"])
        #expect(eventually(5) { daemon.stderrSoFar.contains("sent SIGTERM to process \(pid)") }, "the SIGTERM-only holder got no signal")
        usleep(4_000_000)
        #expect(isAlive(pid))
        #expect(try daemon.leases().first?["pid"] as? Int == Int(pid), "the lease was released while its holder lived")
        #expect(try diskState(file, 0)["state"] as? String != "free", "the lease was freed on disk while its holder lived")
        kill(pid, SIGKILL)
        #expect(try eventually { try diskState(file, 0)["state"] as? String == "free" }, "the lease was not given up once its holder died")
    }

    /// Starts `client hold -r R1 -- sh -c '…; exec sleep 301'` and returns it
    /// with the pid the command itself reported, once it holds the lease.
    func holdCommand(_ daemon: RunningDaemon, _ file: String, _ scratch: Scratch) throws -> (Background, Int32) {
        let marker = scratch.path + "/started"
        let holder = try Background(["client", "hold", "-r", "D:R1:\(file):2M", "--run-dir", daemon.runDir, "--",
                                     "/bin/sh", "-c", "echo $$ > \(marker); exec sleep 301"])
        #expect(try eventually { try daemon.leases().count == 1 })
        #expect(eventually { FileManager.default.fileExists(atPath: marker) })
        let commandPid = Int32((try String(contentsOfFile: marker, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(commandPid == holder.process.processIdentifier, "the command is not the process that holds the lease")
        return (holder, commandPid)
    }

    /// `client hold -- COMMAND` makes the command the holder: a forced
    /// request kills the command itself, not a wrapper around it, and no
    /// process of it is alive when another process is handed the lease.
    @Test func aHeldCommandIsWhatTheDaemonFences() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        // The holder is kept until the end: dropping it would terminate the command.
        let (holder, commandPid) = try holdCommand(daemon, file, scratch)
        defer { withExtendedLifetime(holder) {} }
        let mask = try procText("/proc/\(commandPid)/status")
            .split(separator: "\n").first { $0.hasPrefix("SigBlk:") }.map { $0.split(separator: "\t").last.map(String.init) ?? "" }
        #expect(mask == "0000000000000000", "the command starts with signals blocked: \(mask ?? "?")")
        try daemon.clientOK(["request", "-r", "D:R1:\(file):2M", "--force"])
        #expect(eventually { !isAlive(commandPid) }, "the held command survived a forced request")
        #expect(try eventually { try daemon.leases().isEmpty }, "the killed command's lease was not released")
        let second = try Background(["client", "hold", "-r", "D:R1:\(file):2M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().first?["lver"] as? Int == 2 }, "the lease was never handed on: \(second.output)")
        #expect(!isAlive(commandPid), "a process of the first command was alive when the lease was handed on")
        kill(second.process.processIdentifier, SIGKILL)
    }

    /// The same after a lost lockspace: the held command itself (not a
    /// wrapper) is stopped, and its lease is dropped only once it is gone.
    @Test func aHeldCommandIsFencedWhenItsLockspaceIsLost() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let (holder, commandPid) = try holdCommand(daemon, file, scratch)
        defer { withExtendedLifetime(holder) {} }
        try impersonate(host: 1, in: file)
        #expect(eventually(6) { !isAlive(commandPid) }, "the held command outlived its lost lockspace")
        #expect(try eventually { try daemon.leases().isEmpty }, "the lease of the dead command stayed")
        // Nothing was written for the lease of a lost lockspace (another host
        // may own it by now): the leader still names this host at lver 1.
        let leader = try diskState(file, 1)["leader"] as? [String: Any]
        #expect(leader?["lver"] as? Int == 1 && leader?["owner_id"] as? Int == 1 && (leader?["timestamp"] as? Int ?? 0) != 0, "\(String(describing: leader))")
    }

    /// A second local sharer joins the host's shared hold without a ballot:
    /// a ballot would write an exclusive mode block while it ran, hiding
    /// this host's shared mark from other hosts while the first sharer holds.
    @Test func aSecondLocalSharerRunsNoBallot() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let first = try Background(["client", "hold", "--shared", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 })
        func leaderLver() throws -> Int? { (try diskState(file, 0)["leader"] as? [String: Any])?["lver"] as? Int }
        let lverAfterFirst = try #require(try leaderLver())
        #expect(lverAfterFirst >= 1)
        let second = try Background(["client", "hold", "--shared", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 2 }, "the second sharer was refused: \(second.output)")
        #expect(try leaderLver() == lverAfterFirst, "the second local sharer ran a ballot")
        kill(first.process.processIdentifier, SIGKILL)
        kill(second.process.processIdentifier, SIGKILL)
        #expect(try eventually { try daemon.leases().isEmpty })
    }

    // MARK: 2. Two joins of one host id are told apart

    /// Two daemons with the same host name join one host id at the same
    /// moment: their records differ by incarnation, so at most one joins
    /// (both did, 1 run in 2, and both held R0).
    @Test func twoDaemonsWithOneHostIDAndOneNameNeverBothJoin() throws {
        let scratch = try Scratch()
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let a = try RunningDaemon(scratch: scratch, name: "twin-a", extra: ["--host-name", "twin"])
        let b = try RunningDaemon(scratch: scratch, name: "twin-b", extra: ["--host-name", "twin"])
        let sleeper = try Background(executable: "/bin/sleep", ["120"])
        defer { kill(sleeper.process.processIdentifier, SIGKILL) }
        let pid = String(sleeper.process.processIdentifier)
        for _ in 0..<2 {
            let joinA = try Background(["client", "add-lockspace", "-s", "D:1:\(file):0", "--run-dir", a.runDir])
            let joinB = try Background(["client", "add-lockspace", "-s", "D:1:\(file):0", "--run-dir", b.runDir])
            let (ra, rb) = (joinA.wait(), joinB.wait())
            #expect(!(ra.status == 0 && rb.status == 0), "both daemons joined host id 1:\n\(ra)\n\(rb)")
            let holdA = try a.client(["acquire", "--pid", pid, "-r", "D:R0:\(file):1M"])
            let holdB = try b.client(["acquire", "--pid", pid, "-r", "D:R0:\(file):1M"])
            #expect(!(holdA.status == 0 && holdB.status == 0), "both daemons held R0")
            for d in [a, b] {
                _ = try d.client(["release", "R0", "--pid", pid])
                _ = try d.client(["rem-lockspace", "D"])
            }
        }
    }

    /// A renewal that finds its slot rewritten by another join of its host
    /// id loses the lockspace at once and fences its holders (before, a
    /// later timestamp with the same name passed as our own late write).
    @Test func aRenewalThatFindsItsSlotRewrittenFencesAtOnce() throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1M", "--run-dir", daemon.runDir])
        #expect(try eventually { try daemon.leases().count == 1 })
        try impersonate(host: 1, in: file)
        let rewritten = monotonicSeconds()
        // io_timeout 1: the next renewal is at most 2 s away; the expiry would be 8 s.
        #expect(eventually(5) { !isAlive(holder.process.processIdentifier) }, "the holder outlived its rewritten slot")
        #expect(monotonicSeconds() - rewritten < 5, "fencing waited for the expiry")
        let lockspace = (try daemon.status()["lockspaces"] as? [[String: Any]])?.first
        #expect(lockspace?["valid"] as? Bool == false)
    }

    // MARK: 3. Checksum-valid extreme values are bad records, never a crash

    func forgeLeader(_ file: String, resource r: Int, _ change: (inout LeaderRecord) -> Void) throws {
        let offset = (r + 1) << 20
        var leader = LeaderRecord(decoding: try contents(of: file, offset: offset, length: 512))
        change(&leader)
        try overwrite(file, at: offset, with: leader.encodedSector(.bytes512))
    }

    func forgeDblock(_ file: String, resource r: Int, host: Int, _ dblock: PaxosDblock) throws {
        try overwrite(file, at: (r + 1) << 20 + (host + 1) * 512, with: dblock.encodedSector(.bytes512))
    }

    @Test(arguments: ["leader lver 2^64-1", "leader max_hosts 2^64-1", "dblock mbal 2^64-1", "dblock lver 2^64-1", "owner outside the lockspace"])
    func anExtremeRecordIsRefusedAndTheDaemonLivesOn(_ forgery: String) throws {
        let scratch = try Scratch()
        let (daemon, file) = try setUp(scratch)
        let sleeper = try Background(executable: "/bin/sleep", ["120"])
        defer { kill(sleeper.process.processIdentifier, SIGKILL) }
        let pid = String(sleeper.process.processIdentifier)
        // Host 1's own dblock: every ballot of host 1 reads it, and host 2's
        // ballots too (host 1 is in their participant view).
        switch forgery {
        case "leader lver 2^64-1": try forgeLeader(file, resource: 0) { $0.lver = LeaseVersion(.max) }
        case "leader max_hosts 2^64-1": try forgeLeader(file, resource: 0) { $0.maxHosts = .max }
        case "dblock mbal 2^64-1": try forgeDblock(file, resource: 0, host: 1, PaxosDblock(mbal: .max - 5, lver: LeaseVersion(1)))
        case "dblock lver 2^64-1":
            try forgeDblock(file, resource: 0, host: 1, PaxosDblock(mbal: 3, bal: 3, inp: HostID(3), inp2: Generation(1), inp3: DiskTimestamp(9), lver: LeaseVersion(.max)))
        default:
            try forgeLeader(file, resource: 0) {
                $0.ownerID = HostID(5000)
                $0.ownerGeneration = Generation(1)
                $0.timestamp = DiskTimestamp(77)
                $0.lver = LeaseVersion(3)
            }
        }
        let refused = try daemon.client(["acquire", "--pid", pid, "-r", "D:R0:\(file):1M"])
        #expect(refused.status != 0, "\(forgery): acquired")
        #expect(refused.stderr.contains("bad-record"), "\(forgery): not reported as a bad record:\n\(refused)")
        #expect(daemon.process.process.isRunning, "\(forgery): the daemon died")
        try daemon.clientOK(["status"])
        // The other lease works; the daemonless path refuses the same way.
        try daemon.clientOK(["acquire", "--pid", pid, "-r", "D:R1:\(file):2M"])
        try Harness.tenureOK(["direct", "acquire-id", "-s", "D:2:\(file):0", "--io-timeout", "1"])
        let direct = try Harness.tenure(["direct", "acquire", "-r", "D:R0:\(file):1M", "--host-id", "2", "-s", "D:2:\(file):0", "--no-wait"])
        #expect(direct.status != 0 && direct.stderr.contains("bad-record"), "\(forgery): direct acquire:\n\(direct)")
        let leader = LeaderRecord(decoding: try contents(of: file, offset: 1 << 20, length: 512))
        #expect(leader.lver != LeaseVersion(.max) || forgery == "leader lver 2^64-1", "\(forgery): the repair wrote lver 2^64-1 into the leader")
    }
}

extension RunningDaemon {
    /// What the daemon has logged so far (it logs to stderr in the foreground).
    var stderrSoFar: String { process.output.stderr }
}
