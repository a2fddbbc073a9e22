import Foundation
import Synchronization
import Testing
import TenureTestSupport

/// A process left running (a host renewing its delta lease, a daemon, a
/// holder). Its output goes to files, not pipes: a chatty process must never
/// block on a full pipe nobody reads.
final class Background {
    let process = Process()
    private let outPath: String, errPath: String

    convenience init(_ arguments: [String]) throws {
        try self.init(executable: Harness.tenurePath, arguments)
    }

    init(executable: String, _ arguments: [String]) throws {
        let base = "/var/tmp/tenure-bg-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        outPath = base + ".out"
        errPath = base + ".err"
        FileManager.default.createFile(atPath: outPath, contents: nil)
        FileManager.default.createFile(atPath: errPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle(forWritingAtPath: outPath)
        process.standardError = FileHandle(forWritingAtPath: errPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// What it printed so far.
    var output: Outcome {
        Outcome(status: process.isRunning ? -1 : process.terminationStatus,
                stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// Waits for the process to end by itself and returns what it said.
    func wait() -> Outcome {
        process.waitUntilExit()
        return output
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(atPath: outPath)
        try? FileManager.default.removeItem(atPath: errPath)
    }
}

/// Monotonic nanoseconds, read independently of Tenure's clock.
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// One hold as the holder itself saw it, recorded outside Tenure's state.
struct Hold: Sendable {
    let resource: Int
    let host: Int
    let lver: Int
    let from: UInt64
    let until: UInt64
}

/// Runs `body` on `count` OS threads at once (each blocks on child
/// processes, which the cooperative pool must not) and waits for all.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let done = DispatchSemaphore(value: 0)
    for i in 0..<count {
        let thread = Thread { body(i); done.signal() }
        thread.start()
    }
    for _ in 0..<count { done.wait() }
}

@Suite("Several processes contend for leases on a real O_DIRECT file", .ownThreads, .serialized)
struct ContentionTests {
    /// What one contention run saw.
    struct Run {
        var holds: [Hold]
        var violations: [String]
        var refusals: [String: Int]
        var file: String
    }

    static let resources = 2

    /// Hosts 1...4 each run acquire/release cycles as separate processes on
    /// two resources. The witness is independent of Tenure: a holder creates
    /// a token file with O_EXCL after its acquire returns and removes it
    /// before it releases, so two holders at once show as EEXIST; and every
    /// hold's lver and interval are recorded by the holder.
    func contend(scratch: Scratch, attemptsPerHost: Int, environment: [String: String] = [:]) throws -> Run {
        let hosts = 4, resources = Self.resources
        let file = try scratch.file("contend.img", size: 4 << 20)
        let witness = "\(scratch.path)/witness"
        try FileManager.default.createDirectory(atPath: witness, withIntermediateDirectories: false)
        try Harness.tenureOK(["direct", "format", "--lockspace", "C", "--path", file, "--resources", String(resources),
                              "--io-timeout", "1", "--max-hosts", "8"])
        // Every host joins and keeps renewing, so owners are judged live.
        let renewers = try (1...hosts).map { h in
            try Background(["direct", "acquire-id", "-s", "C:\(h):\(file):0", "--host-name", "host\(h)", "--io-timeout", "1", "--hold", "120"])
        }
        defer { for renewer in renewers { renewer.process.terminate() } }
        try waitUntilJoined(file: file, hosts: hosts)

        let holds = Mutex<[Hold]>([])
        let violations = Mutex<[String]>([])
        let refusals = Mutex<[String: Int]>([:])
        onThreads(hosts) { index in
            let host = index + 1
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<attemptsPerHost {
                let r = Int.random(in: 0..<resources, using: &generator)
                let lease = "C:R\(r):\(file):\((r + 1) << 20)"
                guard let acquired = try? Harness.tenure(["direct", "acquire", "-r", lease, "--host-id", String(host),
                                                          "-s", "C:\(host):\(file):0", "--no-wait", "--json"], adding: environment) else { continue }
                guard acquired.status == 0 else {
                    let code = acquired.stderr.firstMatch(of: /error \[([a-z-]+)\]/).map { String($0.1) } ?? "exit \(acquired.status): \(acquired.stderr)"
                    refusals.withLock { $0[code, default: 0] += 1 }
                    continue
                }
                let from = monotonicNanoseconds()
                let token = "\(witness)/R\(r)"
                let fd = open(token, O_CREAT | O_EXCL | O_WRONLY, 0o600)
                if fd < 0 {
                    let other = (try? String(contentsOfFile: token, encoding: .utf8)) ?? "?"
                    violations.withLock { $0.append("R\(r): host \(host) acquired while host \(other) held it") }
                } else {
                    _ = "\(host)".withCString { write(fd, $0, strlen($0)) }
                    close(fd)
                }
                let lver = ((try? Harness.json(acquired.stdout))?["lver"] as? Int) ?? -1
                usleep(UInt32.random(in: 1_000...20_000, using: &generator))
                let until = monotonicNanoseconds()
                if fd >= 0 { unlink(token) }
                holds.withLock { $0.append(Hold(resource: r, host: host, lver: lver, from: from, until: until)) }
                let released = try? Harness.tenure(["direct", "release", "-r", lease, "--host-id", String(host), "-s", "C:\(host):\(file):0"],
                                                   adding: environment)
                if released?.status != 0 {
                    violations.withLock { $0.append("host \(host) could not release R\(r): \(released.map(\.description) ?? "did not run")") }
                }
            }
        }
        return Run(holds: holds.withLock { $0 }, violations: violations.withLock { $0 }, refusals: refusals.withLock { $0 }, file: file)
    }

    /// The witness's verdicts on a run: empty when mutual exclusion held.
    func verdicts(_ run: Run) -> [String] {
        var found = run.violations
        for r in 0..<Self.resources {
            let ofResource = run.holds.filter { $0.resource == r }.sorted { $0.from < $1.from }
            for (a, b) in zip(ofResource, ofResource.dropFirst()) {
                if a.until > b.from { found.append("R\(r): holds of host \(a.host) (lver \(a.lver)) and host \(b.host) (lver \(b.lver)) overlap") }
                if b.lver != a.lver + 1 { found.append("R\(r): lver went from \(a.lver) to \(b.lver) between consecutive holds") }
            }
        }
        return found
    }

    /// Afterwards: no token collision, no two holds of a resource overlap,
    /// lver grows by exactly one per hold in hold order, and the lver on disk
    /// equals the number of holds.
    @Test func mutualExclusionHoldsUnderContention() throws {
        let scratch = try Scratch()
        let run = try contend(scratch: scratch, attemptsPerHost: 30)
        #expect(verdicts(run).isEmpty, "\(verdicts(run))")
        for r in 0..<Self.resources {
            let ofResource = run.holds.filter { $0.resource == r }
            #expect(ofResource.count >= 3, "R\(r) was taken only \(ofResource.count) times; refusals: \(run.refusals)")
            #expect(ofResource.map(\.lver).min() == 1)
            let onDisk = try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "C:R\(r):\(run.file):\((r + 1) << 20)", "--json"]).stdout)
            let leader = onDisk["leader"] as? [String: Any]
            #expect(leader?["lver"] as? Int == ofResource.count, "every committed lver belongs to exactly one recorded hold")
            #expect(onDisk["state"] as? String == "free")
        }
        // The refusals are the expected kind: the lease was held, or another host won the race.
        let kinds = Set(run.refusals.keys)
        #expect(kinds.isSubset(of: ["held-by-live-host", "lease-in-use"]), "unexpected refusals: \(run.refusals)")
        #expect(!kinds.isEmpty, "the hosts never contended: the test proved nothing")
    }

    /// The witness can fail: with a deliberate bug that takes over a live
    /// owner's lease, the same run reports overlapping holders.
    @Test func theWitnessCatchesAnInjectedBug() throws {
        let scratch = try Scratch()
        let run = try contend(scratch: scratch, attemptsPerHost: 20, environment: ["TENURE_INJECT_BUG": "ignore-live-owner"])
        #expect(!verdicts(run).isEmpty, "the witness saw no violation with ignore-live-owner injected; holds: \(run.holds.count)")
    }

    /// Two processes join the same host id at the same moment: exactly one
    /// keeps it for its whole hold; the other fails (at join, or when its
    /// renewal finds the record is not its own).
    @Test func twoHostsGivenTheSameHostIDExactlyOneKeepsIt() throws {
        let scratch = try Scratch()
        let file = try scratch.file("same-id.img", size: 2 << 20)
        try Harness.tenureOK(["direct", "init", "-s", "S:0:\(file):0", "--io-timeout", "1"])
        let a = try Background(["direct", "acquire-id", "-s", "S:5:\(file):0", "--host-name", "alpha", "--io-timeout", "1", "--hold", "6"])
        let b = try Background(["direct", "acquire-id", "-s", "S:5:\(file):0", "--host-name", "beta", "--io-timeout", "1", "--hold", "6"])
        let outcomes = [a.wait(), b.wait()]
        let kept = outcomes.filter { $0.status == 0 && $0.stdout.contains("Released host id 5 after 6s") }
        #expect(kept.count == 1, "exactly one host keeps the id:\n\(outcomes)")
        let failed = outcomes.filter { $0.status != 0 }
        #expect(failed.count == 1)
        #expect(failed.first.map { $0.stderr.contains("host-id-busy") || $0.stderr.contains("lockspace-lost") } == true, "\(failed)")
    }

    func waitUntilJoined(file: String, hosts: Int) throws {
        for _ in 0..<100 {
            let view = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "C:0:\(file):0", "--json"]).stdout)
            let held = (view["hosts"] as? [[String: Any]] ?? []).filter { $0["held"] as? Bool == true }
            if held.count == hosts { return }
            usleep(100_000)
        }
        throw HarnessError("the hosts did not join within 10 s")
    }
}
