import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureClient
import TenureCore

/// `tenure demo`: Tenure's main job on one machine, narrated.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Three hosts share a local lease file: contention, a forced request, a host crash and its takeover.",
        discussion: """
        Starts three daemons (hosts 1–3, io_timeout 1 s, watchdog fire time 4 s, \
        no watchdog device) on a lease file under /var/tmp, runs processes that \
        contend for two resources, forces a lease away from a live holder, then \
        crashes host 1 (its daemon and its processes are killed) and shows host 2 \
        taking host 1's lease once host 1 is dead: 8 × io_timeout + W after its \
        last renewal. Prints a timeline; takes about half a minute; removes \
        everything it made.
        """
    )

    @Option(help: ArgumentHelp("Folder to work in (default: a new one under /var/tmp).", valueName: "DIR"))
    var workDir: String?

    @Flag(help: "Keep the work folder (lease file, daemon logs) for a look afterwards.")
    var keep = false

    func run() async throws {
        try await reportingErrors {
            let demo = try DemoRun(workDir: workDir)
            defer { demo.stop(keep: keep) }
            try await demo.play()
        }
    }
}

/// The demo's hosts and processes, and its timeline.
final class DemoRun: @unchecked Sendable {
    let work: String
    let leases: String
    let tenure: String
    let start = Date()
    var daemons: [Int: Subprocess] = [:]
    var holders: [Subprocess] = []

    init(workDir: String?) throws {
        work = workDir ?? "/var/tmp/tenure-demo-\(getpid())"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        leases = work + "/leases.img"
        tenure = selfExecutable()
    }

    func say(_ text: String) {
        print("[\(Format.padded(Format.fixed(Date().timeIntervalSince(start), 1), 5)) s] " + text)
        fflush(nil)
    }

    func runDir(_ host: Int) -> String { "\(work)/host\(host)" }
    func resource(_ r: Int) -> String { "demo:R\(r):\(leases):\((r + 1) << 20)" }

    /// Runs `tenure ARGS` to completion; its first output line, or its error.
    @discardableResult
    func tenureLine(_ arguments: [String]) throws -> (ok: Bool, line: String) {
        let run = try Subprocess.run(tenure, arguments)
        let ok = run.status == 0
        let text = (ok ? run.stdout : run.stderr).split(separator: "\n").first.map(String.init) ?? ""
        return (ok, text.replacing("tenure: error ", with: ""))
    }

    func spawn(_ arguments: [String], log: String) throws -> Subprocess {
        // Each attempt's log starts empty: its first line says how it went.
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        return try Subprocess(tenure, arguments, stdout: .file(log), stderr: .file(log))
    }

    /// The last refusal, so a retry loop prints only what changed.
    var lastRefusal = ""

    /// "held by host 1 (unknown)" from the daemon's message.
    static func shortReason(_ line: String) -> String {
        if let held = line.firstRange(of: "is held by host ") {
            let rest = line[held.upperBound...]
            let host = rest.prefix { $0.isNumber }
            let state = rest.firstRange(of: "(").flatMap { open in rest[open.upperBound...].split(separator: ")").first }.map { " — host \(host) is \($0) as seen here" } ?? ""
            return "held by host \(host)\(state)"
        }
        return line
    }

    /// A process on `host` that holds `r` until killed; returns it once it holds (or nil if refused).
    func hold(_ r: Int, on host: Int) throws -> (Subprocess, String)? {
        let log = "\(work)/holder-\(host)-R\(r)-\(holders.count).out"
        let process = try spawn(["client", "hold", "-r", resource(r), "--run-dir", runDir(host)], log: log)
        for _ in 0..<100 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first {
                if process.isRunning || process.terminationStatus == 0, line.hasPrefix("demo:") {
                    holders.append(process)
                    return (process, String(line))
                }
                process.waitUntilExit()
                let reason = Self.shortReason(String(line))
                if reason != lastRefusal { say("  host \(host): R\(r) refused: \(reason)") }
                lastRefusal = reason
                return nil
            }
            if !process.isRunning { break }
            usleep(50_000)
        }
        return nil
    }

    func lver(_ state: String) -> String { state.split(separator: ":").last.map(String.init) ?? "?" }

    func play() async throws {
        say("Lease file \(leases): a lockspace 'demo' and two resources, R0 and R1, io_timeout 1 s.")
        let formatted = try tenureLine(["direct", "format", "--lockspace", "demo", "--path", leases, "--create", "8M",
                                        "--resources", "2", "--io-timeout", "1", "--max-hosts", "8"])
        guard formatted.ok else { throw TenureError(.ioFailed, "format failed: \(formatted.line)") }

        say("Three hosts start their daemons and join the lockspace with host ids 1, 2, 3 (a join waits 2 × io_timeout).")
        for host in 1...3 {
            daemons[host] = try spawn(["daemon", "--foreground", "--run-dir", runDir(host), "--host-name", "host\(host)",
                                       "--watchdog", "none", "--watchdog-fire", "4", "--io-timeout", "1"], log: "\(work)/daemon\(host).log")
        }
        for host in 1...3 {
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: runDir(host) + "/tenure.sock") { usleep(50_000) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for host in 1...3 {
                group.addTask {
                    let joined = try self.tenureLine(["client", "add-lockspace", "-s", "demo:\(host):\(self.leases):0", "--run-dir", self.runDir(host)])
                    guard joined.ok else { throw TenureError(.ioFailed, "host \(host) could not join: \(joined.line)") }
                }
            }
            try await group.waitForAll()
        }
        say("All three hosts joined; each renews its delta lease every 2 s, one sector read and one written.")

        say("Contention: a process on each host asks for R0, one after the other.")
        guard let (_, first) = try hold(0, on: 1) else { throw TenureError(.ioFailed, "host 1 could not take R0") }
        say("  host 1: holds R0 with lver \(lver(first)) — the lver is the holder's fencing token.")
        _ = try hold(0, on: 2)
        lastRefusal = ""
        _ = try hold(0, on: 3)
        lastRefusal = ""
        if let (_, r1) = try hold(1, on: 3) { say("  host 3: holds R1 with lver \(lver(r1)).") }

        say("Host 2 wants R1, which host 3 holds: it asks with force.")
        let requested = Date()
        _ = try tenureLine(["client", "request", "-r", resource(1), "--force", "--run-dir", runDir(2)])
        var taken: String?
        for _ in 0..<100 {
            if let (_, state) = try hold(1, on: 2) { taken = state; break }
            usleep(100_000)
        }
        if let taken {
            say("  host 2: holds R1 with lver \(lver(taken)), \(Format.fixed(Date().timeIntervalSince(requested), 1)) s after the request (host 3's daemon killed its holder; sanlock needs about 35 s).")
        }

        say("Host 1 crashes: its daemon and its processes are killed. Its delta lease stops changing.")
        let crashed = Date()
        kill(daemons[1]!.processIdentifier, SIGTERM)
        kill(daemons[1]!.processIdentifier, SIGKILL)
        for holder in holders where holder.isRunning {
            if let args = holder.arguments, args.contains(runDir(1)) { kill(holder.processIdentifier, SIGKILL) }
        }
        say("  Other hosts may take host 1's leases only once it is dead: 8 × io_timeout + W = 12 s after its last renewal.")
        var takeover: String?
        var refusals = 0
        while takeover == nil, Date().timeIntervalSince(crashed) < 40 {
            if let (_, state) = try hold(0, on: 2) { takeover = state; break }
            refusals += 1
            try await Task.sleep(for: .seconds(1))
        }
        guard let takeover else { throw TenureError(.ioFailed, "host 2 never took R0 over") }
        say("  host 2: holds R0 with lver \(lver(takeover)), \(Format.fixed(Date().timeIntervalSince(crashed), 1)) s after the crash (\(refusals) refusals while host 1 was not yet dead).")
        say("The lease file now (sanlock's `sanlock direct dump` reads the same bytes):")
        try Subprocess(tenure, ["direct", "dump", leases]).waitUntilExit()
        say("Done: every hand-over went through Disk Paxos on the shared file, and lver only grew.")
    }

    func stop(keep: Bool) {
        for holder in holders where holder.isRunning { kill(holder.processIdentifier, SIGKILL) }
        for (host, daemon) in daemons where daemon.isRunning {
            _ = try? tenureLine(["client", "shutdown", "--force", "--run-dir", runDir(host)])
            for _ in 0..<40 where daemon.isRunning { usleep(50_000) }
            if daemon.isRunning { kill(daemon.processIdentifier, SIGKILL) }
        }
        if keep {
            print("Kept \(work).")
        } else {
            try? FileManager.default.removeItem(atPath: work)
        }
    }
}
