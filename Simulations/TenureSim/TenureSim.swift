import ArgumentParser
import Foundation
import Synchronization
import TenureCore
import TenureEngine
import TenureSimKit

/// `tenure-sim`: the deterministic simulator. See docs/simulation.md.
@main
struct TenureSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenure-sim",
        abstract: "Run Tenure's engine and host core for many simulated hosts under faults, replayable by seed.",
        discussion: """
        One run: hosts join a lockspace on simulated shared disks; their \
        processes acquire, release, convert, request and hand over leases \
        through each host's real host core (the daemon's decisions), while \
        faults strike (slow, failing, hanging, late and torn I/O, crashes, hosts \
        cut off from a disk, lost lease disks, clock drift, a duplicated host \
        id, processes no signal can stop). Each host has a watchdog that resets \
        it unless the core pets it. A checker verifies mutual exclusion between \
        processes, fencing-token growth and fencing (every holder gone, or its \
        host reset, by its lockspace's expiry plus the watchdog's fire time) at \
        every step; then faults stop and every host must hold every resource \
        within a bound. The same seed replays the same run, byte for byte.

        Examples:
          tenure-sim --seed 42 --hosts 8 --steps 100000
          tenure-sim --seed 7 --faults slow=0.01,crash=0.005,sameid --disks 3
          tenure-sim --swarm 200 --seed 1000
          tenure-sim --seed 3 --inject-bug skip-phase2-read   # must report a violation
          tenure-sim --seed 1 --inject-bug keep-petting-after-loss --faults cutoff=0.05,stuck=0.3 --no-liveness --steps 100000
        """
    )

    @Option(help: "The seed: every choice of the run comes from it.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Simulated hosts (1...\(SimConfig.maxHosts)).", valueName: "H"))
    var hosts = 6

    @Option(help: ArgumentHelp("Resource leases (1...\(SimConfig.maxResources)).", valueName: "R"))
    var resources = 3

    @Option(help: ArgumentHelp("Disks per resource lease: 1, or 3 (majority per phase).", valueName: "D"))
    var disks = 1

    @Option(help: ArgumentHelp("Scheduler steps of the fault phase.", valueName: "N"))
    var steps: UInt64 = 50_000

    @Option(help: ArgumentHelp("Fault mix: none, standard, or name=probability,… (\(FaultMix.knobs.map(\.0).joined(separator: ", ")); flags sameid, mixedio).", valueName: "MIX"))
    var faults = "standard"

    @Option(name: .customLong("inject-bug"), help: ArgumentHelp("Run with a known safety bug (debug builds only); the checker must catch it. In the engine: \(InjectedBug.allCases.filter { !$0.isInHostCore }.map(\.rawValue).joined(separator: ", ")); in the host core: \(InjectedBug.allCases.filter(\.isInHostCore).map(\.rawValue).joined(separator: ", ")) (keep-petting-after-loss and fence-skips-a-holder need a lockspace lost while leases are held: --faults cutoff=0.05,stuck=0.3 --no-liveness; rearm-after-restart needs daemon restarts, which the standard mix has: restart=0.05 shows it sooner).", valueName: "BUG"))
    var injectBug: [String] = []

    @Option(help: ArgumentHelp("Swarm mode: this many runs with seeds from --seed on, each with a random fault mix, host and disk count.", valueName: "RUNS"))
    var swarm: Int?

    @Option(help: ArgumentHelp("With --swarm: run the seeds in this many processes at once (1...\(Self.maxJobs)); only the failing seeds and the totals are printed.", valueName: "J"))
    var jobs = 1

    /// The most swarm processes at once, and the most runs one swarm takes.
    static let maxJobs = 64
    static let maxSwarmRuns = 1_000_000

    @Flag(name: .customLong("print-trace"), help: "Print every trace line on stderr as it happens (the summary keeps the last \(Trace.keptLines)).")
    var printTrace = false

    @Flag(name: .customLong("no-liveness"), help: "Skip the liveness phase: safety under faults only (for runs with thousands of hosts).")
    var noLiveness = false
    @Flag(help: "Print the summary as JSON.")
    var json = false

    func run() throws {
        do {
            if let swarm { try runSwarm(swarm) } else { try runOne() }
        } catch let error as TenureError {
            FileHandle.standardError.write(Data("tenure-sim: error [\(error.code.rawValue)]: \(error.message)\n  \(error.remedy)\n".utf8))
            throw ExitCode(2)
        }
    }

    func baseConfig(seed: UInt64) throws -> SimConfig {
        var config = SimConfig(seed: seed)
        config.hosts = hosts
        config.resources = resources
        config.disks = disks
        config.steps = steps
        config.liveness = !noLiveness
        config.faults = try FaultMix(parsing: faults)
        if !injectBug.isEmpty && !InjectedBug.canBeInjected {
            throw TenureError(.invalidArgument, "--inject-bug needs a debug build; this release build has no injectable bugs.",
                              remedy: "Run it as `swift run tenure-sim …` (a debug build).")
        }
        config.injectedBugs = Set(try injectBug.map { name in
            guard let bug = InjectedBug(rawValue: name) else {
                throw TenureError(.invalidArgument, "--inject-bug \(name) is not a known bug.",
                                  remedy: "Use one of \(InjectedBug.allCases.map(\.rawValue).joined(separator: ", ")).")
            }
            return bug
        })
        return config
    }

    func runOne() throws {
        let simulation = try Simulation(config: baseConfig(seed: seed))
        if printTrace { simulation.trace.live = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } }
        let summary = simulation.run()
        if json {
            print(summaryJSON(summary))
        } else {
            print(summaryText(summary))
        }
        if !summary.passed { throw ExitCode(1) }
    }

    func runSwarm(_ runs: Int) throws {
        guard (1...Self.maxSwarmRuns).contains(runs) else {
            throw TenureError(.invalidArgument, "--swarm \(runs) is outside 1...\(Self.maxSwarmRuns).", remedy: "Give a number of runs.")
        }
        guard (1...Self.maxJobs).contains(jobs) else {
            throw TenureError(.invalidArgument, "--jobs \(jobs) is outside 1...\(Self.maxJobs).", remedy: "Give about one job per core (nproc).")
        }
        if jobs > 1 && runs > 1 { return try runSwarmInParallel(runs) }
        var totalSteps: UInt64 = 0, wall = 0.0, failed: [UInt64] = []
        for i in 0..<runs {
            let runSeed = seed &+ UInt64(i)
            let config = SimConfig.swarm(seed: runSeed, base: try baseConfig(seed: runSeed), maxHosts: hosts, maxResources: resources)
            let summary = try Simulation(config: config).run()
            totalSteps += summary.steps
            wall += summary.wallSeconds
            let verdict = summary.passed ? "ok" : "VIOLATION"
            print("seed \(runSeed): \(verdict), \(summary.steps) steps, \(String(format: "%.0f", summary.simulatedSeconds)) s simulated, \(summary.config)")
            if !summary.passed {
                failed.append(runSeed)
                for v in summary.violations.prefix(3) { print("  \(v)") }
            }
        }
        print("swarm: \(runs) runs, \(failed.count) with violations\(failed.isEmpty ? "" : " (seeds \(failed.map(String.init).joined(separator: ", ")))"), \(totalSteps) steps in \(String(format: "%.1f", wall)) s = \(String(format: "%.0f", Double(totalSteps) / max(wall, 1e-9))) steps/s")
        if !failed.isEmpty { throw ExitCode(1) }
    }

    /// Splits the seeds into `jobs` contiguous ranges, runs each in a child
    /// `tenure-sim --swarm` process, and prints the failing seeds with the
    /// line that replays each, then the totals. Exit status 1 if any failed.
    func runSwarmInParallel(_ runs: Int) throws {
        let started = Date()
        let per = (runs + jobs - 1) / jobs
        var children: [(Process, Pipe)] = []
        for j in 0..<jobs {
            let first = j * per
            let count = min(per, runs - first)
            guard count > 0 else { break }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            var words = ["--swarm", String(count), "--seed", String(seed &+ UInt64(first)), "--hosts", String(hosts),
                         "--resources", String(resources), "--steps", String(steps)]
            for bug in injectBug { words += ["--inject-bug", bug] }
            if noLiveness { words.append("--no-liveness") }
            process.arguments = words
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.standardError
            try process.run()
            children.append((process, pipe))
        }
        let outputs = Mutex<[Int: String]>([:])
        let pipes = children.map(\.1)
        DispatchQueue.concurrentPerform(iterations: pipes.count) { i in
            let text = String(decoding: pipes[i].fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            outputs.withLock { $0[i] = text }
        }
        var passed = 0, failed: [UInt64] = [], lines: [String] = []
        for i in children.indices {
            children[i].0.waitUntilExit()
            var failing = false
            for line in (outputs.withLock { $0[i] } ?? "").split(separator: "\n").map(String.init) {
                if line.hasPrefix("seed ") {
                    failing = line.contains(": VIOLATION")
                    if failing {
                        failed.append(UInt64(line.dropFirst(5).prefix { $0.isNumber }) ?? 0)
                        lines.append(line)
                    } else {
                        passed += 1
                    }
                } else if failing && line.hasPrefix("  ") {
                    lines.append(line)
                }
            }
            if children[i].0.terminationStatus != 0 && children[i].0.terminationStatus != 1 {
                throw TenureError(.ioFailed, "A swarm process exited with status \(children[i].0.terminationStatus).", remedy: "Run its range alone to see why.")
            }
        }
        for line in lines { print(line) }
        for seed in failed { print("replay: tenure-sim --swarm 1 --seed \(seed) --hosts \(hosts) --resources \(resources) --steps \(steps)") }
        let wall = Date().timeIntervalSince(started)
        print("swarm: \(passed + failed.count) runs in \(children.count) jobs, \(failed.count) with violations\(failed.isEmpty ? "" : " (seeds \(failed.map(String.init).joined(separator: ", ")))"), \(String(format: "%.0f", wall)) s wall, \(String(format: "%.0f", Double(passed + failed.count) / max(wall, 1e-9) * 60)) seeds/min")
        guard passed + failed.count == runs else {
            throw TenureError(.ioFailed, "The swarm processes reported \(passed + failed.count) of \(runs) runs.", remedy: "Rerun; a process may have been killed.")
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }

    func summaryText(_ s: SimSummary) -> String {
        var lines = [
            "seed \(s.seed): \(s.config)",
            "\(s.steps) steps, \(String(format: "%.1f", s.simulatedSeconds)) s simulated in \(String(format: "%.2f", s.wallSeconds)) s (\(String(format: "%.0f", Double(s.steps) / max(s.wallSeconds, 1e-9))) steps/s), trace hash \(String(s.traceHash, radix: 16))",
            "operations: " + s.operations.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
            "faults injected: " + (s.faults.isEmpty ? "none" : s.faults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")),
            "liveness: " + (s.livenessSeconds.map { String(format: "every host held every resource in %.1f s (bound %.1f s)", $0, s.livenessBoundSeconds) } ?? "not reached"),
        ]
        if s.passed {
            lines.append("violations: none")
        } else {
            lines.append("VIOLATIONS (\(s.violations.count)):")
            lines += s.violations.prefix(10).map { "  \($0)" }
            lines.append("replay: \(replayCommand(seed: s.seed))")
            lines.append("trace (last \(s.trace.count) events):")
            lines += s.trace.map { "  \($0)" }
        }
        return lines.joined(separator: "\n")
    }

    /// The command line that replays a run of `seed` with this run's other options.
    func replayCommand(seed: UInt64) -> String {
        var words = ["tenure-sim", "--seed", String(seed), "--hosts", String(hosts), "--resources", String(resources),
                     "--disks", String(disks), "--steps", String(steps), "--faults", faults]
        for bug in injectBug { words += ["--inject-bug", bug] }
        return words.joined(separator: " ")
    }

    func summaryJSON(_ s: SimSummary) -> String {
        let object: [String: Any] = [
            "seed": s.seed, "config": s.config, "steps": s.steps, "simulated_seconds": s.simulatedSeconds,
            "wall_seconds": s.wallSeconds, "operations": s.operations, "faults": s.faults, "violations": s.violations,
            "liveness_seconds": s.livenessSeconds as Any, "liveness_bound_seconds": s.livenessBoundSeconds,
            "trace_hash": String(s.traceHash, radix: 16), "passed": s.passed,
        ]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
