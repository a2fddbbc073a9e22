import Foundation
import TenureCore
import TenureEngine
import TenureFormat
import TenureTestKit

/// What a simulation did and found.
public struct SimSummary: Sendable {
    public var seed: UInt64
    public var config: String
    /// Scheduler steps (jobs run) in both phases.
    public var steps: UInt64
    public var simulatedSeconds: Double
    public var wallSeconds: Double
    public var operations: [String: Int]
    public var faults: [String: Int]
    public var violations: [String]
    /// Seconds the liveness phase took for every host to hold every resource; nil if it never finished.
    public var livenessSeconds: Double?
    public var livenessBoundSeconds: Double
    /// The last lines of the event trace.
    public var trace: [String]
    /// A hash of every trace line: equal for equal runs.
    public var traceHash: UInt64

    public var passed: Bool { violations.isEmpty }
}

/// A deterministic simulation of many hosts running the real engine over
/// shared simulated disks, with faults, and a safety checker at every step.
///
/// Phase 1 (faults): every host joins the lockspace, renews it, and runs a
/// random workload (acquire exclusive or shared, release, convert, request,
/// hand over with a required lver) while the fault mix strikes. Phase 2
/// (liveness): faults stop, every host restarts, and each must hold every
/// resource once within ``SimConfig/livenessBound``.
///
/// Everything runs on one ``SimScheduler``; every choice comes from the seed.
/// All mutable state here is touched only from the scheduler's thread, which
/// is why the classes are `@unchecked Sendable`.
public final class Simulation: @unchecked Sendable {
    public let config: SimConfig
    let scheduler: SimScheduler
    var random: SimRandom
    public let trace = Trace()
    let checker = Checker()
    let storages: [MemoryStorage]
    var hosts: [SimHost] = []
    var operations: [String: Int] = [:]
    var faultCounts: [String: Int] = [:]
    /// Leases released for a handover: (resource, lver) another host may take with that lver.
    var handovers: [(resource: Int, lver: LeaseVersion)] = []
    /// Disks lost to every host (fault `diskLoss`).
    var lostDisks: Set<Int> = []
    var phase = Phase.faults
    /// Hosts that finished the liveness round.
    var livenessDone: Set<Int> = []

    enum Phase { case faults, liveness, stopping }

    static let lockspaceName: LeaseName = "SIM"
    static let mib: UInt64 = 1 << 20

    public init(config: SimConfig) throws {
        try config.validate()
        self.config = config
        var master = SimRandom(seed: config.seed)
        scheduler = SimScheduler(random: master.fork())
        random = master.fork()
        let storageCount = config.disks == 1 ? 1 : 4
        let size = UInt64(config.resources + 1) * Self.mib
        storages = (0..<storageCount).map { _ in MemoryStorage(sectorSize: .bytes512, sizeBytes: size) }
    }

    // MARK: Layout

    /// The lockspace lives on disk 0; resource i at (i + 1) MiB on disk 0, or on disks 1, 2, 3.
    var resourceDisks: [Int] { config.disks == 1 ? [0] : [1, 2, 3] }

    func resourceSpec(_ i: Int) -> ResourceSpec {
        ResourceSpec(lockspace: Self.lockspaceName, name: try! LeaseName("R\(i)"),
                     disks: resourceDisks.map { try! LeaseDisk(path: "disk\($0)", offset: UInt64(i + 1) * Self.mib) })
    }

    func lockspaceSpec(_ id: HostID) -> LockspaceSpec {
        LockspaceSpec(name: Self.lockspaceName, hostID: id, disk: try! LeaseDisk(path: "disk0", offset: 0))
    }

    func format() async throws {
        let setup = storages.map { MemoryDevice(storage: $0, path: "setup") }
        try await LeaseAreas.initialiseLockspace(on: setup[0], at: 0, name: Self.lockspaceName, geometry: .standard512, ioTimeout: config.ioTimeout)
        for i in 0..<config.resources {
            for d in resourceDisks {
                try await LeaseAreas.initialiseResource(on: setup[d], at: UInt64(i + 1) * Self.mib, lockspace: Self.lockspaceName,
                                                        name: try LeaseName("R\(i)"), geometry: .standard512, numHosts: config.hosts)
            }
        }
    }

    // MARK: Running

    /// Global virtual time as "t=12.345s".
    var time: String {
        let ms = scheduler.now / 1_000_000
        return "t=\(ms / 1000).\(String(format: "%03d", ms % 1000))s"
    }

    func note(_ text: String) { trace.record("\(time) \(text)") }

    func count(_ operation: String) { operations[operation, default: 0] += 1 }
    func countFault(_ fault: String) { faultCounts[fault, default: 0] += 1 }

    /// Runs both phases and returns what happened. A violation stops the run at once.
    public func run() -> SimSummary {
        let wallStart = ContinuousClock.now
        scheduler.spawn { try? await self.format() }
        scheduler.run(until: .max) { true }

        let ids = (0..<config.hosts).map { i in
            config.faults.sharedHostID && i == config.hosts - 1 && config.hosts > 1 ? HostID(1) : HostID(UInt64(i + 1))
        }
        hosts = ids.enumerated().map { SimHost(index: $0.offset, id: $0.element, simulation: self) }
        let spread = Int(config.bootSpread.nanosecondsClamped / 1_000_000)
        for host in hosts { host.boot(after: .milliseconds(Int64(random.below(max(spread, 1))))) }
        scheduler.spawn { await self.chaos() }

        // Phase 1: faults, for the configured number of steps.
        runChecked(until: .max) { scheduler.steps < config.steps }

        // Phase 2: liveness.
        var livenessSeconds: Double?
        if checker.violations.isEmpty, config.liveness {
            livenessSeconds = runLiveness()
        }
        phase = .stopping
        for host in hosts { host.crash(restart: false) }
        scheduler.run(until: scheduler.now + 3_600_000_000_000) { true }

        return SimSummary(
            seed: config.seed, config: describeConfig(), steps: scheduler.steps,
            simulatedSeconds: Double(scheduler.now) / 1e9,
            wallSeconds: Double((ContinuousClock.now - wallStart).nanosecondsClamped) / 1e9,
            operations: operations, faults: faultCounts, violations: checker.violations,
            livenessSeconds: livenessSeconds, livenessBoundSeconds: Double(config.livenessBound.nanosecondsClamped) / 1e9,
            trace: trace.recent, traceHash: trace.hash)
    }

    func describeConfig() -> String {
        "hosts \(config.hosts), resources \(config.resources), disks \(config.disks), steps \(config.steps), io_timeout \(config.ioTimeout.seconds)s, W \(config.watchdogFire), faults \(config.faults)"
            + (config.injectedBugs.isEmpty ? "" : ", injected bugs \(config.injectedBugs.map(\.rawValue).sorted().joined(separator: ","))")
            + (config.liveness ? "" : ", no liveness phase")
    }

    /// Runs the scheduler while `goOn` holds and no violation was found,
    /// checking fencing whenever time moves.
    func runChecked(until limit: UInt64, while goOn: () -> Bool) {
        var lastCheck: UInt64 = .max
        scheduler.run(until: limit) {
            if scheduler.now != lastCheck {
                lastCheck = scheduler.now
                checkFencing()
            }
            return goOn() && checker.violations.isEmpty
        }
    }

    /// Safety 3: a host whose lockspace expired more than the fence window
    /// (W) ago has no process holding a lease.
    func checkFencing() {
        for host in hosts where !host.crashed {
            for overdue in host.overdueHolders() { checker.violation(overdue, trace: trace, at: time) }
        }
    }

    /// Stops the faults, restarts every host, and has each hold every
    /// resource once. Returns the seconds it took, or nil past twice the bound.
    func runLiveness() -> Double? {
        phase = .liveness
        note("liveness phase: faults stop, every host restarts")
        lostDisks.removeAll()
        let start = scheduler.now
        for host in hosts {
            host.crash(restart: false)
        }
        // The operator fixes a duplicated host id: the twin stays down.
        let twins = Set(hosts.filter { $0.index > 0 && $0.id == HostID(1) }.map(\.index))
        for host in hosts where !twins.contains(host.index) {
            host.boot(after: config.minimumDowntime + .milliseconds(Int64(random.below(500))))
        }
        let wanted = hosts.count - twins.count
        let limit = start + config.livenessBound.nanosecondsClamped * 2
        runChecked(until: limit) { livenessDone.count < wanted }
        guard livenessDone.count == wanted else {
            checker.violation("liveness: only \(livenessDone.count) of \(wanted) hosts held every resource within \(Double(limit - start) / 1e9)s",
                              trace: trace, at: time)
            return nil
        }
        let seconds = Double(scheduler.now - start) / 1e9
        note("liveness phase done in \(seconds)s (bound \(config.livenessBound))")
        if scheduler.now - start > config.livenessBound.nanosecondsClamped {
            checker.violation("liveness: took \(seconds)s, over the bound of \(config.livenessBound)", trace: trace, at: time)
        }
        return seconds
    }

    // MARK: Chaos

    /// Once a simulated second: crashes, cut-offs and disk losses.
    func chaos() async {
        let f = config.faults
        while phase == .faults {
            do { try await scheduler.sleep(for: .seconds(1)) } catch { return }
            guard phase == .faults else { return }
            for host in hosts {
                if !host.crashed, random.chance(f.crash) {
                    countFault("crash")
                    note("h\(host.index)#\(host.incarnation) CRASH")
                    host.crash(restart: true)
                } else if !host.crashed, host.daemonUp, random.chance(f.daemonRestart) {
                    countFault("restart")
                    host.crashDaemon()
                } else if !host.crashed, random.chance(f.cutOff) {
                    let disk = random.below(storages.count)
                    let seconds = config.timeouts.renewalFailure * Int(1 + random.below(15)) / 10
                    countFault("cutoff")
                    host.cutOff(disk: disk, for: seconds)
                } else if !host.crashed, random.chance(f.leave) {
                    countFault("leave")
                    host.leaveSoon()
                }
            }
            if config.disks == 3, lostDisks.isEmpty, random.chance(f.diskLoss) {
                let disk = resourceDisks[random.below(3)]
                let duration = config.timeouts.hostDead * Int(1 + random.below(10)) / 5
                countFault("diskloss")
                note("disk\(disk) LOST to every host for \(duration)")
                lostDisks.insert(disk)
                for host in hosts { host.applyLostDisks() }
                scheduler.spawn {
                    try? await self.scheduler.sleep(for: duration)
                    self.lostDisks.remove(disk)
                    self.note("disk\(disk) back")
                    for host in self.hosts { host.applyLostDisks() }
                }
            }
        }
    }

    /// The fault source of one host's devices: normal latency, or a fault
    /// from the mix (only in the fault phase).
    func faultSource(random shared: SharedRandom) -> MemoryDevice.FaultSource {
        let f = config.faults, latency = config.normalLatency, timeout = config.timeouts.ioTimeout
        return { [unowned self] kind, _, length in
            shared.withRandom { r -> MemoryDevice.Fault? in
                let normal = MemoryDevice.Fault.latency(r.duration(in: latency))
                guard self.phase == .faults else { return normal }
                if r.chance(f.ioError) { self.countFault("io-error"); return .error(EIO) }
                if r.chance(f.slowIO) { self.countFault("slow-io"); return .latency(timeout + r.duration(in: .zero ... timeout * 3)) }
                if r.chance(f.hang) { self.countFault("hang"); return .hang }
                if kind == .write, r.chance(f.lateWrite) { self.countFault("late-write"); return .lateWrite(after: r.duration(in: .zero ... timeout * 4)) }
                if kind == .write, length > 512, r.chance(f.tornWrite) { self.countFault("torn-write"); return .tornWrite(landedSectors: r.below(length / 512)) }
                return normal
            }
        }
    }
}
