import Foundation
import Testing
import TenureTestSupport
#if canImport(Glibc)
import Glibc
#endif

// Interop with the real sanlock 3.8 daemon, not only its `direct` tools: the
// daemon joins a lockspace Tenure laid out and takes leases in it for a
// client of its own (python3-sanlock), while Tenure reads those leases and
// competes for them from another host id. The daemon runs in a private run
// dir inside the test's scratch folder, with a small LD_PRELOAD shim that lets
// it start where raising RLIMIT_MEMLOCK/RLIMIT_RTPRIO is refused.

/// What these tests need, and how to find out.
enum SanlockDaemonSupport {
    static let python = "/usr/bin/python3"
    static let gccPath = Harness.which("gcc")
    static var hasGCC: Bool { gccPath != nil }

    /// Debian's python3-sanlock, importable by the system python.
    static let hasPythonSanlock: Bool = {
        guard FileManager.default.isExecutableFile(atPath: python) else { return false }
        return (try? Harness.run(python, ["-c", "import sanlock"]).status) == 0
    }()

    /// Makes setrlimit(RLIMIT_MEMLOCK | RLIMIT_RTPRIO) succeed without effect:
    /// sanlock's daemon insists on raising them, sandboxes refuse.
    static let shimSource = """
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <sys/resource.h>

        int setrlimit(__rlimit_resource_t resource, const struct rlimit *limit)
        {
            if (resource == RLIMIT_MEMLOCK || resource == RLIMIT_RTPRIO)
                return 0;
            int (*real)(__rlimit_resource_t, const struct rlimit *) = dlsym(RTLD_NEXT, "setrlimit");
            return real(resource, limit);
        }

        """

    /// A client of the daemon, driven one command per line on stdin; it answers
    /// one line per command ("error ERRNO TEXT" when sanlock refuses).
    static let clientScript = """
        import sys, sanlock

        fd = sanlock.register()
        print("ready", flush=True)
        while True:
            line = sys.stdin.readline()
            if not line:
                break
            words = line.split()
            if not words:
                continue
            try:
                if words[0] in ("acquire", "release"):
                    ls, res, path, off = words[1].encode(), words[2].encode(), words[3], int(words[4])
                    if words[0] == "acquire":
                        sanlock.acquire(ls, res, [(path, off)], slkfd=fd)
                        held = [r for r in sanlock.inquire(slkfd=fd) if r["resource"] == res]
                        print("acquired %d" % held[0]["version"], flush=True)
                    else:
                        sanlock.release(ls, res, [(path, off)], slkfd=fd)
                        print("released", flush=True)
                elif words[0] == "hosts":
                    hosts = sanlock.get_hosts(words[1].encode())
                    print("hosts " + " ".join("%d:%d:%d" % (h["host_id"], h["generation"], h["flags"]) for h in hosts), flush=True)
                else:
                    print("error 0 unknown command " + words[0], flush=True)
            except sanlock.SanlockException as e:
                print("error %d %s" % (e.errno, e), flush=True)

        """
}

/// sanlock's daemon on a private run dir, stopped (`sanlock client shutdown
/// -f 1`, then SIGKILL if it lingers) by `stop()` or when dropped.
final class SanlockDaemon {
    let process = Process()
    let runDir: String
    let logPath: String
    private var stopped = false

    /// The environment `sanlock client` and python3-sanlock need to find this daemon.
    var clientEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.merging(["SANLOCK_RUN_DIR": runDir]) { $1 }
    }

    init(in scratch: Scratch, hostName: String) throws {
        guard let sanlock = Harness.sanlockPath, let gcc = SanlockDaemonSupport.gccPath else {
            throw HarnessError("needs sanlock and gcc")
        }
        runDir = "\(scratch.path)/run"
        logPath = "\(scratch.path)/sanlock-daemon.log"
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        let source = "\(scratch.path)/setrlimit-shim.c", shim = "\(scratch.path)/setrlimit-shim.so"
        try SanlockDaemonSupport.shimSource.write(toFile: source, atomically: true, encoding: .utf8)
        let compiled = try Harness.run(gcc, ["-shared", "-fPIC", "-o", shim, source, "-ldl"])
        guard compiled.status == 0 else { throw HarnessError("gcc could not build the setrlimit shim:\n\(compiled)") }

        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process.executableURL = URL(fileURLWithPath: sanlock)
        process.arguments = ["daemon", "-D", "-w", "0", "-l", "0", "-h", "0", "-U", "root", "-G", "root", "-e", hostName]
        process.environment = clientEnvironment.merging(["LD_PRELOAD": shim]) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()

        // Ready when its socket is there.
        let socket = "\(runDir)/sanlock.sock"
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) {
            guard process.isRunning else {
                process.waitUntilExit()
                stopped = true
                throw HarnessError("sanlock's daemon exited (\(process.terminationStatus)) at start:\n\(self.log)")
            }
            usleep(50_000)
        }
        guard FileManager.default.fileExists(atPath: socket) else {
            stop()
            throw HarnessError("sanlock's daemon made no socket in 5 s:\n\(self.log)")
        }
    }

    /// What the daemon has logged so far (the tail, for failure messages).
    var log: String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(40).joined(separator: "\n")
    }

    /// Runs `sanlock ARGS` against this daemon.
    func client(_ arguments: [String]) throws -> Outcome {
        guard let sanlock = Harness.sanlockPath else { throw HarnessError("sanlock is not installed") }
        return try Harness.run(sanlock, arguments, environment: clientEnvironment)
    }

    /// Runs `sanlock ARGS` against this daemon and records an issue unless it exits 0.
    @discardableResult
    func clientOK(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        let outcome = try client(arguments)
        #expect(outcome.status == 0, "sanlock \(arguments.joined(separator: " ")) failed:\n\(outcome)\ndaemon log:\n\(log)",
                sourceLocation: sourceLocation)
        return outcome
    }

    /// Asks the daemon to leave its lockspaces and exit; kills it if it is
    /// still there 10 s later. Idempotent.
    func stop() {
        guard !stopped else { return }
        stopped = true
        guard process.isRunning else { return }
        // It ignores SIGTERM while it holds lockspaces: ask it to leave first.
        _ = try? client(["client", "shutdown", "-f", "1"])
        for _ in 0..<100 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// A python3-sanlock process registered with the daemon: sends one command,
/// reads one answer line. Talks over a socket pair, so a client that died
/// shows as an error rather than a SIGPIPE in the test process.
final class SanlockClient {
    let process = Process()
    private let fd: Int32
    private let stderrPath: String
    private var buffer: [UInt8] = []
    private var stopped = false

    convenience init(of daemon: SanlockDaemon, in scratch: Scratch) throws {
        try self.init(environment: daemon.clientEnvironment, in: scratch)
    }

    /// A client of whatever daemon serves `SANLOCK_RUN_DIR` in `environment`
    /// (sanlock's, or Tenure's sanlock socket).
    init(environment: [String: String], in scratch: Scratch) throws {
        let script = "\(scratch.path)/sanlock-client.py"
        stderrPath = "\(scratch.path)/sanlock-client-\(UInt32.random(in: 0 ... .max)).err"
        try SanlockDaemonSupport.clientScript.write(toFile: script, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        let errors = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        defer { try? errors.close() }

        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw HarnessError("socketpair failed: errno \(errno)")
        }
        fd = pair[0]
        let theirs = FileHandle(fileDescriptor: pair[1], closeOnDealloc: false)
        process.executableURL = URL(fileURLWithPath: SanlockDaemonSupport.python)
        process.arguments = [script]
        process.environment = environment
        process.standardInput = theirs
        process.standardOutput = theirs
        process.standardError = errors
        do { try process.run() } catch {
            close(pair[0]); close(pair[1])
            stopped = true
            throw error
        }
        close(pair[1])
        let hello = try readLine()
        guard hello == "ready" else { throw HarnessError("python3-sanlock client said \(hello)") }
    }

    /// Sends one command and returns the client's answer.
    func send(_ command: String, timeout: Double = 20) throws -> String {
        let bytes = Array((command + "\n").utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw HarnessError("could not write to the python3-sanlock client (errno \(errno)); stderr: \(stderrText)")
            }
            sent += n
        }
        return try readLine(timeout: timeout)
    }

    private func readLine(timeout: Double = 20) throws -> String {
        let deadline = monotonicNanoseconds() + UInt64(timeout * 1e9)
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let now = monotonicNanoseconds()
            guard now < deadline else { throw HarnessError("the python3-sanlock client did not answer in \(timeout) s; stderr: \(stderrText)") }
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let polled = poll(&ready, 1, Int32((deadline - now) / 1_000_000) + 1)
            if polled < 0 && errno != EINTR { throw HarnessError("poll failed: errno \(errno)") }
            guard polled > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = read(fd, &chunk, chunk.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw HarnessError("read from the python3-sanlock client failed: errno \(errno)")
            }
            if n == 0 { throw HarnessError("the python3-sanlock client exited; stderr: \(stderrText)") }
            buffer += chunk[..<n]
        }
    }

    var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Ends the client (the daemon releases whatever it still holds). Idempotent.
    func stop() {
        guard !stopped else { return }
        stopped = true
        shutdown(fd, Int32(SHUT_WR))
        for _ in 0..<30 where process.isRunning { usleep(100_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        close(fd)
    }

    deinit { stop() }
}

@Suite("Interop with sanlock's daemon", .ownThreads, .serialized,
       .enabled(if: Harness.isRoot, "sanlock's daemon needs root"),
       .enabled(if: Harness.hasSanlock, "needs Debian's sanlock package (Tools/install-deps.sh installs it)"),
       .enabled(if: SanlockDaemonSupport.hasPythonSanlock, "needs Debian's python3-sanlock package (Tools/install-deps.sh installs it)"),
       .enabled(if: SanlockDaemonSupport.hasGCC, "needs gcc, to build the setrlimit shim sanlock's daemon starts with"))
struct SanlockDaemonInteropTests {
    /// A lease file laid out by Tenure (lockspace LS, resources R0 and R1,
    /// io_timeout 1 s) with sanlock's daemon running beside it.
    struct Cluster {
        let scratch: Scratch
        let file: String
        let daemon: SanlockDaemon

        init() throws {
            scratch = try Scratch("interop")  // short: the daemon's socket path must fit in sun_path
            file = try scratch.file("leases.img", size: 3 << 20)
            try Harness.tenureOK(["direct", "format", "--lockspace", "LS", "--path", file, "--resources", "2", "--io-timeout", "1"])
            daemon = try SanlockDaemon(in: scratch, hostName: "host-one")
        }

        /// Stops the daemon; the scratch folder goes only after that.
        func stop() {
            daemon.stop()
            withExtendedLifetime(scratch) {}
        }

        var r0: String { "LS:R0:\(file):1M" }
        var r0ForSanlock: String { "LS:R0:\(file):1048576" }
        /// The client command naming R0.
        func command(_ verb: String) -> String { "\(verb) LS R0 \(file) 1048576" }

        /// The daemon joins the lockspace as host 1 with io_timeout 1 s.
        func joinHost1() throws {
            let joined = try daemon.clientOK(["client", "add_lockspace", "-s", "LS:1:\(file):0", "-o", "1"])
            guard joined.status == 0 else { throw HarnessError("sanlock's daemon did not join: \(joined)") }
        }

        /// `tenure direct read -r LS:R0… --json`.
        func readR0(sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
            try Harness.json(try Harness.tenureOK(["direct", "read", "-r", r0, "--json"], sourceLocation: sourceLocation).stdout)
        }

        /// Host slots as `tenure direct read -s` shows them.
        func hosts(sourceLocation: SourceLocation = #_sourceLocation) throws -> [Int: [String: Any]] {
            let view = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "LS:0:\(file):0", "--json"], sourceLocation: sourceLocation).stdout)
            var byID: [Int: [String: Any]] = [:]
            for host in view["hosts"] as? [[String: Any]] ?? [] {
                if let id = host["host_id"] as? Int { byID[id] = host }
            }
            return byID
        }

        /// R0 as `sanlock direct read_leader` prints it.
        func sanlockR0() throws -> [String: String] {
            try Harness.sanlockLeader("-r", r0ForSanlock, sector: 512, align: "1M")
        }
    }

    static func leader(_ view: [String: Any]) -> [String: Any] { view["leader"] as? [String: Any] ?? [:] }

    static func dblock(_ view: [String: Any], host: Int) -> [String: Any]? {
        (view["dblocks"] as? [[String: Any]] ?? []).first { $0["host_id"] as? Int == host }
    }

    @Test("Lease areas that sanlock's daemon acquired and released are understood by Tenure", .timeLimit(.minutes(1)))
    func tenureUnderstandsWhatTheDaemonWrote() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        try cluster.joinHost1()

        // The daemon's delta lease, as Tenure reads it and as sanlock reads it.
        let host1 = try cluster.hosts()[1]
        #expect(host1?["held"] as? Bool == true, "Tenure does not see sanlock's host 1 as held: \(String(describing: host1))")
        #expect(host1?["host_name"] as? String == "host-one")
        #expect(host1?["io_timeout"] as? Int == 1)
        let generation = try #require(host1?["generation"] as? Int)
        #expect(generation >= 1)
        let delta = try Harness.sanlockLeader("-s", "LS:1:\(cluster.file):0", sector: 512, align: "1M")
        #expect(delta["owner_generation"] == String(generation))
        #expect(delta["resource_name"] == "host-one")
        let ownView = try Harness.json(try Harness.tenureOK(["direct", "read", "-s", "LS:1:\(cluster.file):0", "--json"]).stdout)
        #expect(Self.leader(ownView)["owner_id"] as? Int == 1)
        #expect(Self.leader(ownView)["owner_generation"] as? Int == generation)

        let client = try SanlockClient(of: cluster.daemon, in: cluster.scratch)
        defer { client.stop() }
        #expect(try client.send(cluster.command("acquire")) == "acquired 1")

        // Held by sanlock: Tenure reads owner, lver and the winning dblock.
        let held = try cluster.readR0()
        #expect(held["state"] as? String == "held by host 1", "\(held)")
        let leader = Self.leader(held)
        #expect(leader["owner_id"] as? Int == 1)
        #expect(leader["owner_generation"] as? Int == generation)
        #expect(leader["lver"] as? Int == 1)
        #expect((leader["timestamp"] as? Int ?? 0) > 0)
        #expect(leader["resource_name"] as? String == "R0" && leader["space_name"] as? String == "LS")
        let vote = Self.dblock(held, host: 1)
        #expect(vote?["lver"] as? Int == 1, "host 1's dblock: \(String(describing: vote))")
        #expect(vote?["released"] as? Bool == false)
        #expect(vote?["valid"] as? Bool == true)
        #expect((vote?["mbal"] as? Int ?? 0) >= 1 && vote?["mbal"] as? Int == vote?["bal"] as? Int)
        // Field for field what sanlock's own reader says (checksum included).
        let heldBySanlock = try cluster.sanlockR0().filter { SanlockCompatibilityTests.leaderFields.contains($0.key) }
        #expect(SanlockCompatibilityTests.sanlockStyle(leader) == heldBySanlock)

        // Released by sanlock: free, lver kept, host 1's dblock marked released.
        #expect(try client.send(cluster.command("release")) == "released")
        let free = try cluster.readR0()
        #expect(free["state"] as? String == "free", "\(free)")
        let after = Self.leader(free)
        #expect(after["timestamp"] as? Int == 0)
        #expect(after["lver"] as? Int == 1)
        #expect(after["owner_id"] as? Int == 1, "sanlock keeps the last owner in the leader")
        let released = Self.dblock(free, host: 1)
        #expect(released?["released"] as? Bool == true, "host 1's dblock: \(String(describing: released))")
        #expect(released?["lver"] as? Int == 1)
        let freeBySanlock = try cluster.sanlockR0().filter { SanlockCompatibilityTests.leaderFields.contains($0.key) }
        #expect(SanlockCompatibilityTests.sanlockStyle(after) == freeBySanlock)

        // The daemon leaves the lockspace: Tenure sees host 1's slot free, generation kept.
        try cluster.daemon.clientOK(["client", "rem_lockspace", "-s", "LS:1:\(cluster.file):0"])
        let left = try cluster.hosts()[1]
        #expect(left?["held"] as? Bool == false, "\(String(describing: left))")
        #expect(left?["timestamp"] as? Int == 0)
        #expect(left?["generation"] as? Int == generation)
    }

    @Test("sanlock's daemon and Tenure in one lockspace never hold a lease at once", .timeLimit(.minutes(1)))
    func mixedClusterKeepsMutualExclusion() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        // Host 2 is Tenure, joining while the daemon joins as host 1.
        let host2 = try Background(["direct", "acquire-id", "-s", "LS:2:\(cluster.file):0", "--host-name", "host-two",
                                    "--io-timeout", "1", "--hold", "60"])
        defer {
            if host2.process.isRunning { host2.process.terminate() }
            host2.process.waitUntilExit()
        }
        try cluster.joinHost1()
        let generation2 = try waitUntilRenewing(cluster, host: 2)
        let tenureAcquire = ["direct", "acquire", "-r", cluster.r0, "--host-id", "2", "-s", "LS:2:\(cluster.file):0"]

        let client = try SanlockClient(of: cluster.daemon, in: cluster.scratch)
        defer { client.stop() }
        // The daemon sees Tenure's renewals: host 2 is live to it.
        #expect(try waitForDaemonVerdict(client, host: 2) == "2:\(generation2):3", "3 is SANLK_HOST_LIVE")

        #expect(try client.send(cluster.command("acquire")) == "acquired 1")

        // Tenure refuses a lease sanlock holds: at once with --no-wait...
        let refused = try Harness.tenure(tenureAcquire + ["--no-wait", "--json"])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("held-by-live-host"), "\(refused)")
        // ...and, watching host 1's delta lease, it judges sanlock's host live.
        let watched = try Harness.tenure(tenureAcquire + ["--json"])
        #expect(watched.status == 1, "\(watched)")
        #expect(watched.stderr.contains("held by live host 1"), "\(watched)")
        let stillHeld = try cluster.readR0()
        #expect(stillHeld["state"] as? String == "held by host 1", "Tenure's refusals disturbed sanlock's lease: \(stillHeld)")
        #expect(Self.leader(stillHeld)["lver"] as? Int == 1)

        // sanlock releases: Tenure takes it at the next lver.
        #expect(try client.send(cluster.command("release")) == "released")
        let taken = try Harness.tenure(tenureAcquire + ["--no-wait", "--json"])
        #expect(taken.status == 0, "\(taken)")
        let token = try Harness.json(taken.stdout)
        #expect(token["lver"] as? Int == 2, "\(token)")
        #expect(token["host_id"] as? Int == 2)
        #expect(token["generation"] as? Int == generation2)
        let byTenure = try cluster.sanlockR0()
        #expect(byTenure["owner_id"] == "2" && byTenure["lver"] == "2", "sanlock reads Tenure's hold as: \(byTenure)")
        #expect(byTenure["owner_generation"] == String(generation2))

        // The daemon, for its part, refuses a lease Tenure holds (-243: SANLK_ACQUIRE_IDLIVE).
        let answer = try client.send(cluster.command("acquire"))
        #expect(answer.hasPrefix("error -243"), "sanlock took a lease live host 2 holds: \(answer)")
        #expect(try cluster.sanlockR0()["lver"] == "2", "sanlock's refused acquire changed the leader")

        // Tenure releases: sanlock takes it at lver 3.
        try Harness.tenureOK(["direct", "release", "-r", cluster.r0, "--host-id", "2", "-s", "LS:2:\(cluster.file):0"])
        #expect(try client.send(cluster.command("acquire")) == "acquired 3")
        let again = try cluster.sanlockR0()
        #expect(again["read_leader"] == "done 0")
        #expect(again["owner_id"] == "1" && again["lver"] == "3", "\(again)")
        let seen = try cluster.readR0()
        #expect(seen["state"] as? String == "held by host 1")
        #expect(Self.leader(seen)["lver"] as? Int == 3)
        #expect(Self.dblock(seen, host: 2)?["released"] as? Bool == true, "Tenure's dblock: \(String(describing: Self.dblock(seen, host: 2)))")
        #expect(try client.send(cluster.command("release")) == "released")
    }

    /// Two daemons on one lockspace, each driven by the same unmodified
    /// library: sanlock's daemon as host 1, Tenure's serving sanlock's socket
    /// as host 2, joined by sanlock's own command line. Each refuses a lease
    /// the other holds (SANLK_ACQUIRE_IDLIVE), and the lver grows across both.
    @Test("sanlock's daemon and Tenure's, both through python3-sanlock, in one lockspace", .timeLimit(.minutes(2)))
    func sanlocksDaemonAndTenuresSpeakingSanlockShareALockspace() throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        try cluster.joinHost1()
        let tenureDir = cluster.scratch.path + "/tr"
        let tenure = try RunningDaemon(scratch: cluster.scratch, name: "two", extra: ["--sanlock-run-dir", tenureDir])
        let environment = ProcessInfo.processInfo.environment.merging(["SANLOCK_RUN_DIR": tenureDir]) { $1 }
        let joined = try Harness.run(Harness.sanlockPath!, ["client", "add_lockspace", "-s", "LS:2:\(cluster.file):0", "-o", "1"], environment: environment)
        try #require(joined.status == 0, "sanlock's command line could not join Tenure to the lockspace: \(joined)")
        let one = try SanlockClient(of: cluster.daemon, in: cluster.scratch)
        let two = try SanlockClient(environment: environment, in: cluster.scratch)
        defer { one.stop(); two.stop() }

        #expect(try one.send(cluster.command("acquire")) == "acquired 1")
        #expect(try two.send(cluster.command("acquire"), timeout: 60).hasPrefix("error -243"), "Tenure took a lease sanlock holds")
        #expect(try one.send(cluster.command("release")) == "released")
        #expect(try two.send(cluster.command("acquire")) == "acquired 2")
        #expect(try one.send(cluster.command("acquire"), timeout: 60).hasPrefix("error -243"), "sanlock took a lease Tenure holds")
        #expect(try two.send(cluster.command("release")) == "released")
        #expect(try one.send(cluster.command("acquire")) == "acquired 3")
        #expect(try one.send(cluster.command("release")) == "released")
        withExtendedLifetime(tenure) {}
    }

    /// Waits until Tenure's host `host` has renewed at least once after its
    /// first write (so it has joined and keeps renewing); returns its generation.
    func waitUntilRenewing(_ cluster: Cluster, host: Int) throws -> Int {
        var first: Int?
        for _ in 0..<75 {
            if let slot = try cluster.hosts()[host], slot["held"] as? Bool == true, let stamp = slot["timestamp"] as? Int {
                if let first, stamp != first, let generation = slot["generation"] as? Int { return generation }
                if first == nil { first = stamp }
            }
            usleep(200_000)
        }
        throw HarnessError("host \(host) did not join and renew within 15 s")
    }

    /// The daemon's view of `host` ("ID:GENERATION:FLAGS") once it has one.
    func waitForDaemonVerdict(_ client: SanlockClient, host: Int) throws -> String {
        var last = ""
        for _ in 0..<50 {
            last = try client.send("hosts LS")
            if let entry = last.split(separator: " ").dropFirst().first(where: { $0.hasPrefix("\(host):") }),
               !entry.hasSuffix(":1") {  // 1 is SANLK_HOST_UNKNOWN
                return String(entry)
            }
            usleep(200_000)
        }
        throw HarnessError("sanlock's daemon has no verdict on host \(host) after 10 s: \(last)")
    }
}
