import Foundation
import Testing
import TenureTestSupport
import TenureCore

/// The daemon is not starved (issue 12, item 6): by default it locks its
/// memory and runs its renewal thread (and that device's reaper) at
/// SCHED_RR, so a CPU hog and memory pressure in its own cgroup do not
/// stretch its renewals. The load can fail it: with `--realtime off` the
/// same run renews once in 12 s.
@Suite(.ownThreads, .serialized) struct StarvationTests {
    static let cpuRoot = "/sys/fs/cgroup/cpu"
    static let memoryRoot = "/sys/fs/cgroup/memory"
    static var canUseCgroups: Bool {
        Harness.isRoot && FileManager.default.fileExists(atPath: cpuRoot + "/cgroup.procs")
            && FileManager.default.fileExists(atPath: memoryRoot + "/cgroup.procs") && Harness.which("chrt") != nil
    }

    /// Whether this process may lower its OOM score (CAP_SYS_RESOURCE).
    static var canLowerOOMScore: Bool {
        let path = "/proc/self/oom_score_adj"
        guard let current = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
              current > -1000 else { return true }
        guard (try? "\(current - 1)".write(toFile: path, atomically: false, encoding: .utf8)) != nil else { return false }
        try? "\(current)".write(toFile: path, atomically: false, encoding: .utf8)
        return true
    }

    /// A cpu and a memory cgroup (v1) of their own, removed afterwards.
    final class Cgroups {
        let cpu: String, memory: String
        init(memoryLimit: Int) throws {
            let name = "tenure-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            cpu = StarvationTests.cpuRoot + "/" + name
            memory = StarvationTests.memoryRoot + "/" + name
            try FileManager.default.createDirectory(atPath: cpu, withIntermediateDirectories: false)
            try FileManager.default.createDirectory(atPath: memory, withIntermediateDirectories: false)
            // With RT group scheduling a new group may run no real-time task at all.
            if FileManager.default.fileExists(atPath: cpu + "/cpu.rt_runtime_us") {
                try "200000".write(toFile: cpu + "/cpu.rt_runtime_us", atomically: false, encoding: .utf8)
            }
            try "\(memoryLimit)".write(toFile: memory + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
            // The group may use 20 ms of CPU a second: the hogs use it up,
            // and an ordinary thread of the daemon then waits up to a second
            // at each wake-up. Real-time threads are not held by this quota.
            try "1000000".write(toFile: cpu + "/cpu.cfs_period_us", atomically: false, encoding: .utf8)
            try "20000".write(toFile: cpu + "/cpu.cfs_quota_us", atomically: false, encoding: .utf8)
        }
        /// Shell lines that move the shell (and what it execs) into both groups.
        var enter: [String] { ["echo $$ > \(cpu)/cgroup.procs", "echo $$ > \(memory)/cgroup.procs"] }
        /// Into the memory group only: a memory hog held to the CPU quota
        /// could not fill memory fast enough to press on it.
        var enterMemory: [String] { ["echo $$ > \(memory)/cgroup.procs"] }
        deinit {
            for group in [cpu, memory] {
                if let pids = try? String(contentsOfFile: group + "/cgroup.procs", encoding: .utf8) {
                    for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
                }
                usleep(100_000)
                rmdir(group)
            }
        }
    }

    /// Per file mapped into the daemon (its binary and libraries): its size
    /// and resident kB, and whether the mapping is locked (VmFlags "lo"; the
    /// Locked: line is proportional, so pages that another daemon of the same
    /// binary maps too count half there), from smaps.
    static func fileMappings(of pid: Int32) throws -> [(name: String, size: Int, rss: Int, locked: Bool)] {
        let smaps = try procText("/proc/\(pid)/smaps")
        var out: [(name: String, size: Int, rss: Int, locked: Bool)] = []
        var current: (name: String, size: Int, rss: Int, locked: Bool)?
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), !first.hasSuffix(":") {
                if let done = current { out.append(done) }
                // start-end perms offset dev inode path: files only, not PROT_NONE guards.
                current = fields.count >= 6 && fields[4] != "0" && fields[5].hasPrefix("/") && !fields[1].hasPrefix("---")
                    ? (String(fields[0]) + " " + String(fields[5]), 0, 0, false) : nil
            } else if current != nil, fields.first == "VmFlags:" {
                current!.locked = fields.dropFirst().contains("lo")
            } else if current != nil, fields.count >= 2, let kb = Int(fields[1]) {
                switch fields[0] {
                case "Size:": current!.size = kb
                case "Rss:": current!.rss = kb
                default: break
                }
            }
        }
        if let done = current { out.append(done) }
        return out
    }

    /// With memory locked, every page of every file the daemon maps (its
    /// code, the rare paths too, and its libraries') is resident and locked
    /// from the start: none waits on a read from disk when the disk hangs.
    /// The witness: without locking, most of the binary is never read in.
    @Test(.enabled(if: Harness.isRoot, "needs root (mlockall beyond RLIMIT_MEMLOCK)"))
    func aLockedDaemonHasAllItsCodeResident() throws {
        let scratch = try Scratch()
        let locked = try RunningDaemon(scratch: scratch, name: "locked", extra: ["--lock-memory", "on"])
        let mappings = try Self.fileMappings(of: locked.process.process.processIdentifier)
        #expect(mappings.contains { $0.name.hasSuffix("/tenured") }, "the daemon's binary is among its mappings")
        for mapping in mappings {
            #expect(mapping.rss == mapping.size && mapping.locked, "\(mapping.name): \(mapping.size) kB mapped, \(mapping.rss) resident, locked: \(mapping.locked)")
        }
        let unlocked = try RunningDaemon(scratch: scratch, name: "unlocked", extra: ["--lock-memory", "off"])
        let lazy = try Self.fileMappings(of: unlocked.process.process.processIdentifier)
        #expect(lazy.contains { $0.rss < $0.size } && !lazy.contains { $0.locked }, "witness: unlocked, some of the code is not resident")
    }

    @Test(.enabled(if: StarvationTests.canUseCgroups, "needs root, cgroup v1 cpu and memory controllers and chrt"))
    func renewalKeepsItsIntervalUnderACPUHogAndMemoryPressure() throws {
        let scratch = try Scratch()
        let groups = try Cgroups(memoryLimit: 192 << 20)
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "D", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch, extra: ["--realtime", "on", "--lock-memory", "on"], wrapper: groups.enter)
        try daemon.clientOK(["add-lockspace", "-s", "D:1:\(file):0"])
        let before = try daemon.status()
        #expect(before["realtime"] as? Bool == true, "the daemon's renewal thread is not real-time: \(before)")
        #expect((before["memory_locked_kib"] as? Int ?? 0) > 1024, "the daemon's memory is not locked: \(before)")
        // Lowering an OOM score needs CAP_SYS_RESOURCE, which some
        // containers lack (the daemon then says so in its log).
        if Self.canLowerOOMScore {
            #expect(before["oom_score_adj"] as? Int == -1000, "the OOM killer may pick the daemon: \(before)")
        }
        // First the memory pressure: a process that keeps filling the group's
        // memory limit (`tail /dev/zero` grows until the limit kills it; the
        // loop starts it again). It offers itself to the OOM killer first, for
        // where the daemon cannot shield itself. Outside the CPU quota (it must
        // fill memory fast), so at the lowest priority: it must not take a core
        // from the rest of the test suite. On a busy machine that priority
        // fills memory slowly: wait until the limit is reached, not a guessed time.
        let memoryHog = try Background(executable: "/bin/sh", ["-c", (groups.enterMemory + ["echo 1000 > /proc/self/oom_score_adj",
                                                                                          "exec nice -n 19 timeout -s KILL 120 sh -c 'while :; do tail /dev/zero; done'"]).joined(separator: " && ")])
        func limitReached() -> Bool {
            let text = (try? String(contentsOfFile: groups.memory + "/memory.failcnt", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            return (text.flatMap { Int($0) } ?? 0) > 0
        }
        #expect(eventually(90) { limitReached() }, "the memory hog never reached the group's limit")
        // Then, in the daemon's groups, two busy loops per core at the
        // highest ordinary priority, using up the group's CPU quota, for 12 s
        // (the window the renewals are judged over) while the memory hog goes on.
        let cores = max(ProcessInfo.processInfo.activeProcessorCount, 1)
        var hogs: [Background] = []
        for _ in 0..<(cores * 2) {
            hogs.append(try Background(executable: "/bin/sh", ["-c", (groups.enter + ["exec nice -n -20 timeout -s KILL 12 sh -c 'while :; do :; done'"]).joined(separator: " && ")]))
        }
        for hog in hogs { _ = hog.wait() }
        // timeout signals its whole process group: the loop and its tail.
        kill(memoryHog.process.processIdentifier, SIGTERM)
        _ = memoryHog.wait()
        let after = try daemon.status()
        let lockspace = try #require((after["lockspaces"] as? [[String: Any]])?.first)
        let worst = lockspace["worst_renewal_gap_ms"] as? Int ?? .max
        let renewals = lockspace["renewals"] as? Int ?? 0
        // Every 2N = 2 s; a renewal's own I/O takes well under a second here.
        #expect(worst < 3_000, "a renewal came \(worst) ms after the previous one under load: \(lockspace)")
        #expect(renewals >= 5, "only \(renewals) renewals in 12 s: \(lockspace)")
        #expect(lockspace["failed_renewals"] as? Int == 0, "\(lockspace)")
    }

    @Test func theSwitchesRefuseAnythingButOnAndOff() throws {
        let outcome = try Harness.tenure(["daemon", "--foreground", "--run-dir", "/var/tmp/never", "--watchdog", "none", "--realtime", "yes"])
        #expect(outcome.status != 0)
        #expect(outcome.stderr.contains("--realtime yes is neither on nor off"), "\(outcome)")
    }
}
