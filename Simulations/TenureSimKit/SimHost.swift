import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureTestKit

/// One simulated machine: what a real host has and nothing it decides. It
/// runs the real engine (Lockspace, PaxosLease) over its own handles onto
/// the shared disks with its own drifting clock, and the real host core
/// (TenureHost), whose directives it carries out on simulated processes
/// (``SimProcess``) and a simulated watchdog that resets the machine when
/// it is not petted within its fire time. A crash cancels every task and
/// kills every process (memory lost, disk kept); a boot starts a new
/// incarnation with a new clock, new handles, a new core and a new generation.
/// A daemon crash (``crashDaemon()``) ends only the daemon: its processes,
/// its armed watchdog and its run dir's holder record live on, and a
/// supervisor starts it again after a random delay, with a new core that
/// must fence what the record names before it pets (docs/safety.md).
final class SimHost: @unchecked Sendable {
    let index: Int
    let id: HostID
    let name: LeaseName
    unowned let sim: Simulation

    private(set) var incarnation = 0
    private(set) var crashed = true
    /// Daemon starts so far on any boot; a daemon task runs only while its
    /// run is the current one (``isCurrent(_:)``).
    private(set) var daemonRun = 0
    /// The daemon runs (it may still be fencing an earlier incarnation's holders).
    private(set) var daemonUp = false
    /// The run dir's record of lease holders (`/run/tenure/holders`): the
    /// processes the core had handed leases to when the daemon died. It
    /// survives the daemon, not the machine.
    private var holderRecord: Set<ProcessID> = []
    /// Whether the running daemon has replaced the record with its own:
    /// only once it fenced what the earlier one left (as the daemon creates
    /// its `HolderRecord` after `EarlierIncarnation.fenceHolders`), so a
    /// daemon killed while still fencing leaves the earlier record intact.
    private var recordReplaced = false
    private(set) var clock: SimClock
    private var random: SharedRandom
    private var devices: [MemoryDevice] = []
    /// Fault rules that cut this host off from a disk, by disk.
    private var cutOffRules: [Int: [MemoryDevice.FaultID]] = [:]
    private var lostDiskRules: [Int: MemoryDevice.FaultID] = [:]
    private(set) var lockspace: Lockspace?
    /// Joins so far; a process's leases belong to the join they were won under.
    private var joinEpoch = 0
    /// The expiry of each join that is over, for the checker.
    private var pastExpiries: [Int: MonotonicInstant] = [:]
    private var context: EngineContext
    private var resources: [PaxosResource?] = []
    /// The daemon's decisions, as the daemon makes them.
    private var core: HostCore
    /// The machine's processes that asked for leases, by pid, with what
    /// each holds (the checker's witness).
    private var processes: [ProcessID: SimProcess] = [:]
    /// The same processes behind the core's process seam: what signals and
    /// killpaths do to them, and their exits for the fence loop.
    private var machine = SimulatedProcesses(willStop: { _, _ in })
    private var nextPid: Int32 = 100
    /// The machine's watchdog, armed when the daemon starts.
    private var watchdogTimer: ManualWatchdog?
    /// The daemon's tasks: a daemon crash cancels them.
    private var tasks: [Task<Void, Never>] = []
    /// The machine's own: its watchdog device.
    private var machineTasks: [Task<Void, Never>] = []
    /// The chaos loop asked this host to leave the lockspace cleanly.
    private var leaveRequested = false

    init(index: Int, id: HostID, simulation: Simulation) {
        self.index = index
        self.id = id
        self.name = try! LeaseName("h\(index)")
        self.sim = simulation
        clock = SimClock(scheduler: simulation.scheduler, offsetNanoseconds: 1_000_000_000_000, rate: 1)
        random = SharedRandom(simulation.random.fork())
        context = EngineContext(clock: clock)
        core = HostCore(settings: Self.coreSettings(simulation.config))
    }

    /// The core as the daemon sets it up, with the simulation's watchdog
    /// fire time (see ``SimConfig/fenceWindow``) and any injected core bugs.
    static func coreSettings(_ config: SimConfig) -> HostCoreSettings {
        let fire = config.fenceWindow
        return HostCoreSettings(watchdogFire: fire, killGrace: Timeouts(ioTimeout: config.timeouts.ioTimeout, watchdogFire: fire).killGrace,
                                injectedBugs: config.injectedBugs.filter(\.isInHostCore))
    }

    var label: String { "h\(index)#\(incarnation)" }

    func note(_ text: String) { sim.note("\(label) \(text)") }

    // MARK: Life and death

    /// Starts a new incarnation after `delay` of global time.
    func boot(after delay: Duration) {
        let config = sim.config
        incarnation += 1
        crashed = false
        var r = sim.random.fork()
        let drift = config.faults.clockDrift
        let rate = 1 + (Double(r.below(2_000_001)) / 1_000_000 - 1) * drift
        // A reboot restarts CLOCK_MONOTONIC: a new offset of 100 to 1,100 s.
        clock = SimClock(scheduler: sim.scheduler, offsetNanoseconds: 100_000_000_000 + r.below(1_000_000_000_000) + sim.scheduler.now / 2, rate: rate)
        random = SharedRandom(r.fork())
        let shared = random
        context = makeContext()
        devices = sim.storages.indices.map { d in
            MemoryDevice(storage: sim.storages[d], path: "disk\(d)", clock: clock, ioTimeout: config.ioTimeout(ofHost: index).duration,
                         logCapacity: 0, faultSource: sim.faultSource(random: shared))
        }
        cutOffRules = [:]
        lostDiskRules = [:]
        applyLostDisks()
        processes = [:]
        pastExpiries = [:]
        // The run dir is on tmpfs: a boot starts with no record.
        holderRecord = []
        watchdogTimer = nil
        let boot = incarnation
        machine = SimulatedProcesses(willStop: { [unowned self] pid, signal in self.dieSoon(pid, after: signal, boot) })
        startDaemon(after: delay)
    }

    /// The engine's context of one daemon process: its proposals are its
    /// memory, lost with it.
    private func makeContext() -> EngineContext {
        let shared = random
        return EngineContext(clock: clock, random: { bound in shared.withRandom { $0.below(bound) } },
                             log: { [unowned self] event in
                                 if event.kind != .renewed { self.note(event.description) }
                             },
                             watchdogFire: sim.config.watchdogFire, injectedBugs: sim.config.injectedBugs)
    }

    /// Starts the daemon after `delay`: a new core; the earlier
    /// incarnation's holders (if any) fenced; the watchdog armed on the
    /// machine's first start (a restart finds it armed still); its loops.
    private func startDaemon(after delay: Duration) {
        daemonRun += 1
        daemonUp = true
        recordReplaced = false
        let run = daemonRun
        core = HostCore(settings: Self.coreSettings(sim.config))
        resources = Array(repeating: nil, count: sim.config.resources)
        leaveRequested = false
        tasks = [sim.scheduler.spawn {
            try? await self.clock.sleep(for: delay)
            guard self.isCurrent(run) else { return }
            if self.watchdogTimer == nil {
                self.watchdogTimer = ManualWatchdog(clock: self.clock, fire: self.sim.config.fenceWindow)
                let boot = self.incarnation
                self.machineTasks = [self.sim.scheduler.spawn { await self.watchdog(boot) }]
            }
            guard await self.fenceEarlierIncarnation(run) else { return }
            self.recordReplaced = true
            self.tasks += [self.sim.scheduler.spawn { await self.petLoop(run) },
                           self.sim.scheduler.spawn { await self.fenceLoop(run) }]
            await self.main(run)
        }]
    }

    /// As the daemon's start (`EarlierIncarnation.fenceHolders`): the
    /// record's holders that still run go to the core, which SIGKILLs them;
    /// their exits go back until none is left. False when one outlives W:
    /// the daemon does not start, and the armed watchdog resets the machine.
    private func fenceEarlierIncarnation(_ run: Int) async -> Bool {
        let left = holderRecord.filter { processes[$0] != nil }.sorted()
        guard !left.isEmpty else { return true }
        sim.count("restart.fence")
        await carryOut(core.earlierIncarnationLeft(left.map { ($0, "p\($0)") }, at: clock.now()), run)
        while isCurrent(run), !core.mayPet(at: clock.now()) {
            if core.earlierHoldersSurviveKill {
                sim.count("restart.refused")
                note("the daemon does not start: an earlier incarnation's holder survives SIGKILL")
                return false
            }
            try? await clock.sleep(for: Self.fencePoll)
            await fenceStep(run)
        }
        return isCurrent(run)
    }

    /// Crashes now: every task is cancelled, every process is gone. Writes
    /// already issued still land (the devices are not closed).
    func crash(restart: Bool) {
        guard !crashed else { return }
        crashed = true
        daemonUp = false
        for task in tasks + machineTasks { task.cancel() }
        tasks = []
        machineTasks = []
        processes = [:]
        machine.reset()
        sim.checker.droppedAll(host: index)
        lockspace = nil
        if restart {
            // A reboot takes at least `minimumDowntime`, by which time every
            // write the host had in flight has landed or never will.
            let downtime = sim.config.minimumDowntime
                + .milliseconds(Int64(random.withRandom { $0.below(UInt64(sim.config.timeouts.hostDead.nanosecondsClamped / 1_000_000) + 1) }))
            let boot = Task(executorPreference: sim.scheduler) { [sim] in
                try? await sim.scheduler.sleep(for: downtime)
                guard sim.phase == .faults, self.crashed else { return }
                self.boot(after: .zero)
            }
            _ = boot
        }
    }

    /// The daemon dies (SIGKILL, an OOM kill) and its supervisor starts it
    /// again after a random delay, as systemd's `Restart=` does. Its tasks
    /// end, so nothing renews the lockspace or pets the watchdog; the
    /// machine's processes run on holding their leases, the watchdog stays
    /// armed, and the run dir keeps the record of holders, which the core's
    /// last state is (the daemon writes each holder's slot before the
    /// lease is handed over). Writes in flight still land.
    func crashDaemon() {
        guard !crashed, daemonUp else { return }
        daemonUp = false
        if recordReplaced { holderRecord = Set(core.holders) }
        for task in tasks { task.cancel() }
        tasks = []
        rememberExpiry()
        lockspace = nil
        note("DAEMON killed; \(holderRecord.count) holder(s) recorded")
        let boot = incarnation
        let delay = Duration.milliseconds(Int64(draw(Int(sim.config.watchdogFire / .milliseconds(1)) + 1)))
        sim.scheduler.spawn {
            try? await self.clock.sleep(for: delay)
            guard self.isBooted(boot), !self.daemonUp, self.sim.phase == .faults else { return }
            self.note("daemon restarted by its supervisor")
            self.context = self.makeContext()
            self.startDaemon(after: .zero)
        }
    }

    /// Cuts this host off from `disk` for `duration` (its I/O there fails with EIO).
    func cutOff(disk: Int, for duration: Duration) {
        let device = devices[disk]
        note("CUT OFF from disk\(disk) for \(duration)")
        let rule = device.inject(.detached, on: .any, count: .always)
        let generation = incarnation
        cutOffRules[disk, default: []].append(rule)
        sim.scheduler.spawn {
            try? await self.sim.scheduler.sleep(for: duration)
            guard self.incarnation == generation else { return }
            device.remove(rule)
            self.cutOffRules[disk]?.removeAll { $0 == rule }
            self.note("reconnected to disk\(disk)")
        }
    }

    /// Mirrors the simulation's lost disks onto this host's handles.
    func applyLostDisks() {
        for d in devices.indices {
            let lost = sim.lostDisks.contains(d)
            if lost, lostDiskRules[d] == nil {
                lostDiskRules[d] = devices[d].inject(.detached, on: .any, count: .always)
            } else if !lost, let rule = lostDiskRules.removeValue(forKey: d) {
                devices[d].remove(rule)
            }
        }
    }

    /// Whether daemon run `run` is the one running now.
    func isCurrent(_ run: Int) -> Bool { daemonRun == run && daemonUp && !crashed }
    /// Whether boot `boot` of the machine is the one running now.
    func isBooted(_ boot: Int) -> Bool { incarnation == boot && !crashed }

    // MARK: The daemon's loops: watchdog, pets, fencing

    /// The watchdog device: resets the machine once its fire time passes
    /// without a pet.
    func watchdog(_ boot: Int) async {
        while isBooted(boot), let timer = watchdogTimer, let fireAt = timer.firesAt {
            try? await clock.sleep(until: fireAt)
            guard isBooted(boot) else { return }
            if timer.hasFired(at: clock.now()) {
                note("WATCHDOG fired: the host is reset")
                sim.count("watchdog.reset")
                crash(restart: sim.phase == .faults)
                return
            }
        }
    }

    /// As the daemon's pet loop: the core says when.
    func petLoop(_ generation: Int) async {
        let every = core.settings.petInterval / 4
        while isCurrent(generation) {
            observeLockspace()
            await carryOut(core.petIfDue(at: clock.now()), generation)
            try? await clock.sleep(for: every)
        }
    }

    /// As the daemon's fence loop: exits go to the core, then time does.
    func fenceLoop(_ generation: Int) async {
        while isCurrent(generation) {
            observeLockspace()
            await fenceStep(generation)
            try? await clock.sleep(for: Self.fencePoll)
        }
    }

    /// One look of the fence loop: exits go to the core, then time does.
    func fenceStep(_ run: Int) async {
        var directives: [HostDirective] = []
        for pid in machine.takeExits() { directives += core.processExited(pid, at: clock.now()) }
        directives += core.tick(at: clock.now())
        await carryOut(directives, run)
    }

    /// The fence loop's period here: coarser than the daemon's 50 ms, to
    /// keep the scheduler's steps for the workload; still far inside W.
    static let fencePoll: Duration = .milliseconds(250)

    /// Tells the core what the renewals last published.
    func observeLockspace() {
        guard let ls = lockspace else { return }
        core.lockspaceObserved(Simulation.lockspaceName, expiry: ls.publishedExpiry, lost: ls.publishedLost)
    }

    /// The core's directives, carried out on this machine.
    func carryOut(_ directives: [HostDirective], _ generation: Int) async {
        for directive in directives {
            guard isCurrent(generation) else { return }
            switch directive {
            case .signal(let pid, let signal):
                _ = machine.signal(pid, signal)
            case .runKillpath(let pid, let argv):
                sim.count("killpath")
                _ = machine.runKillpath(argv, for: pid)
            case .writeRelease(_, let lease):
                guard let r = Self.resourceIndex(lease), let resource = resources[r] else {
                    core.releaseWritten(lease)
                    continue
                }
                do {
                    try await PaxosLease.release(resource, held: lease, context: context)
                    sim.count("release")
                } catch {
                    sim.count("release.failed")
                }
                guard isCurrent(generation) else { return }
                core.releaseWritten(lease)
            case .forget:
                sim.count("release.forgotten")
            case .pet:
                try? watchdogTimer?.pet()
            case .log(let level, let text):
                if level == .critical || level == .warning { note(text) }
            }
        }
    }

    static func resourceIndex(_ lease: HeldLease) -> Int? { resourceIndex(lease.resource) }

    static func resourceIndex(_ spec: ResourceSpec) -> Int? {
        Int(spec.name.description.dropFirst())
    }

    // MARK: Processes

    /// A new process of this machine, about to ask for a lease.
    func spawnProcess() -> SimProcess {
        nextPid += 1
        let pid = ProcessID(nextPid)
        let stuck = sim.phase == .faults && chance(sim.config.faults.stuckProcess)
        let ignoresTerm = chance(0.2)
        let process = SimProcess(pid: pid, longLived: sim.phase == .faults && chance(0.3))
        machine.start(pid, .init(stuck: stuck, ignoresTerm: ignoresTerm))
        processes[pid] = process
        if chance(0.2) { core.setKillpath(["/usr/libexec/sim-killpath"], for: process.pid) }
        return process
    }

    /// A stop that reached the process (``SimulatedProcesses`` decides
    /// whether it does): SIGKILL ends it within 50 ms, SIGTERM or its
    /// killpath within 300 ms.
    /// Half the processes asked to stop (SIGTERM, a killpath) close
    /// their connection first and take up to 2 s more to exit, using
    /// their leases until then (a VM manager that lets go of its daemon
    /// connection while its VM still runs): the core must keep their
    /// leases held until they are gone.
    func dieSoon(_ pid: ProcessID, after signal: StopSignal, _ boot: Int) {
        guard processes[pid] != nil else { return }
        let closesFirst = signal != .kill && daemonUp && chance(0.5)
        let delay = Duration.milliseconds(Int64(draw(signal == .kill ? 50 : closesFirst ? 2000 : 300)))
        let run = daemonRun
        sim.scheduler.spawn {
            if closesFirst, self.isCurrent(run) { await self.disconnect(pid, run) }
            try? await self.clock.sleep(for: delay)
            guard self.isBooted(boot) else { return }
            self.die(pid)
        }
    }

    /// The process is gone: it holds nothing from this instant (the
    /// checker's witness); unless `reported`, the core hears of it at the
    /// fence loop's next look.
    func die(_ pid: ProcessID, reported: Bool = false) {
        guard let process = processes.removeValue(forKey: pid) else { return }
        machine.end(pid, reported: reported)
        for r in process.holding.sorted() {
            sim.checker.released(host: index, process: pid.rawValue, resource: r, persistent: process.persistent.contains(r))
        }
    }

    /// A process that holds nothing ends; the core has been told, or never tracked it.
    func forget(_ pid: ProcessID) {
        processes[pid] = nil
        machine.end(pid, reported: true)
    }

    /// A holder of `r` that lets go now: a long-lived one (a VM, say) only
    /// rarely, so that some leases are held when a lockspace is lost.
    func willingHolder(of r: Int) -> ProcessID? {
        guard let pid = holders(of: r).randomElement(draw) else { return nil }
        return processes[pid]!.longLived && !chance(0.05) ? nil : pid
    }

    /// Processes holding resource `r`, by pid.
    func holders(of r: Int) -> [ProcessID] {
        processes.values.filter { $0.holding.contains(r) }.map(\.pid).sorted()
    }

    func holding(_ pid: ProcessID, _ r: Int, lver: LeaseVersion, shared: Bool, adopted: Bool = false) {
        processes[pid]?.holding.insert(r)
        processes[pid]?.epoch = joinEpoch
        let holding = Checker.Holding(host: index, incarnation: incarnation, process: pid.rawValue, hostID: id, lver: lver, shared: shared)
        if adopted {
            sim.checker.adopted(holding, resource: r, trace: sim.trace, at: sim.time)
        } else {
            sim.checker.acquired(holding, resource: r, trace: sim.trace, at: sim.time)
        }
        note("pid \(pid) \(adopted ? "adopts" : "holds") R\(r) lver \(lver)\(shared ? " shared" : "")")
    }

    /// Processes that still hold a lease past their lockspace's expiry plus
    /// the fence window, by this machine's clock: for the checker.
    func overdueHolders() -> [String] {
        let now = clock.now()
        var out: [String] = []
        for p in processes.values.sorted(by: { $0.pid < $1.pid }) where !p.holding.isEmpty {
            guard let expiry = p.epoch == joinEpoch ? lockspace?.publishedExpiry : pastExpiries[p.epoch] else { continue }
            if now > expiry + sim.config.fenceWindow {
                out.append("h\(index)#\(incarnation) pid \(p.pid) still holds \(p.holding.sorted().map { "R\($0)" }) \(now - expiry) after its lockspace expired")
            }
        }
        return out
    }

    /// Keeps the joined lockspace's expiry for the checker: call before
    /// leaving, which clears it.
    func rememberExpiry() {
        if let expiry = lockspace?.publishedExpiry { pastExpiries[joinEpoch] = expiry }
    }

    /// Forgets the joined lockspace.
    func dropLockspace() {
        rememberExpiry()
        core.lockspaceLeft(Simulation.lockspaceName)
        lockspace = nil
    }

    // MARK: The host's main loop

    func main(_ generation: Int) async {
        while isCurrent(generation), !Task.isCancelled {
            guard let ls = await join(generation) else {
                try? await clock.sleep(for: .milliseconds(Int64(500 + random.withRandom { $0.below(2000) })))
                continue
            }
            // A crash while joining leaves nothing behind: no task of this
            // incarnation may start after it.
            guard isCurrent(generation), !Task.isCancelled else { return }
            let renewals = sim.scheduler.spawn { await ls.runRenewals() }
            let fence = sim.scheduler.spawn { await self.fence(ls, generation) }
            tasks += [renewals, fence]
            if sim.phase == .liveness {
                await livenessRound(ls, generation)
            } else {
                await workload(ls, generation)
            }
            guard isCurrent(generation) else { return }
            if leaveRequested, await ls.isValid(at: clock.now()) {
                await leaveCleanly(ls, tasks: [renewals, fence], generation)
                continue
            }
            if sim.phase == .liveness, sim.livenessDone.contains(index) {
                // Done: keep renewing so our leases' owner looks alive, hold nothing.
                return
            }
            // The lockspace was lost: the core stops every holder; once it
            // holds nothing (or the watchdog reset us) we rejoin.
            while isCurrent(generation), core.leaseCount > 0 {
                try? await clock.sleep(for: Self.fencePoll)
            }
            guard isCurrent(generation) else { return }
            await fence.value
            renewals.cancel()
            rememberExpiry()
            _ = try? await ls.leave(afterWritesThrough: devices)
            dropLockspace()
            try? await clock.sleep(for: .milliseconds(Int64(random.withRandom { $0.below(2000) })))
        }
    }

    /// Asks the host to leave the lockspace at its next step.
    func leaveSoon() { leaveRequested = true }

    /// `rem-lockspace` done right: every lease released (no ballot of ours
    /// is running: the workload has returned), then the host id, so the
    /// slot reads free; after a pause, the main loop joins again.
    func leaveCleanly(_ ls: Lockspace, tasks running: [Task<Void, Never>], _ generation: Int) async {
        leaveRequested = false
        for r in 0..<sim.config.resources {
            for pid in holders(of: r) { await release(pid, r, generation) }
        }
        await releaseOrphans(generation)
        guard isCurrent(generation) else { return }
        do {
            try core.checkMayLeave(Simulation.lockspaceName)
        } catch {
            sim.count("leave.refused")
            return
        }
        for task in running { task.cancel() }
        // A renewal still running could land over the free record.
        for task in running { await task.value }
        rememberExpiry()
        do {
            switch try await ls.leave(afterWritesThrough: devices) {
            case .freed:
                sim.count("leave")
                note("left the lockspace (slot free)")
            case .leftToExpire(let path):
                sim.count("leave.toExpire")
                note("left the lockspace without freeing the slot: a write through \(path) may still land")
            case .nothingWritten:
                sim.count("leave.nothingWritten")
            }
        } catch {
            sim.count("leave.failed")
        }
        dropLockspace()
        try? await clock.sleep(for: .milliseconds(Int64(random.withRandom { $0.below(3000) })))
    }

    /// Joins the lockspace with a new Lockspace (a new generation), or nil.
    func join(_ generation: Int) async -> Lockspace? {
        do {
            let spec = sim.lockspaceSpec(id)
            let observer = try await LockspaceObserver.open(spec, device: devices[0], context: context)
            let ls = try Lockspace(spec: spec, renewalDevice: devices[0], observer: observer, ioTimeout: sim.config.ioTimeout(ofHost: index), context: context)
            let host = try await ls.join(name: name)
            guard isCurrent(generation) else { return nil }
            lockspace = ls
            joinEpoch += 1
            core.lockspaceJoined(Simulation.lockspaceName, expiry: ls.publishedExpiry)
            sim.count("join")
            note("joined as host \(host.id) generation \(host.generation)")
            for i in resources.indices where resources[i] == nil {
                resources[i] = try? await PaxosResource.open(sim.resourceSpec(i), devices: sim.resourceDisks.map { devices[$0] })
            }
            return ls
        } catch {
            sim.count("join.failed")
            note("join failed: \(error)")
            return nil
        }
    }

    /// As the daemon: wakes at the expiry, or sooner (a renewal that finds
    /// the slot rewritten loses the lockspace at once), and tells the core,
    /// which stops every holder.
    func fence(_ ls: Lockspace, _ generation: Int) async {
        while isCurrent(generation) {
            guard let expiry = ls.publishedExpiry else { return }
            do { try await clock.sleep(until: min(expiry, clock.now() + Timeouts.lossCheck)) } catch { return }
            guard let lost = await ls.checkExpiry() else { continue }
            guard isCurrent(generation) else { return }
            observeLockspace()
            await carryOut(core.lockspaceLost(Simulation.lockspaceName, why: lost.message, at: clock.now()), generation)
            return
        }
    }

    func draw(_ bound: Int) -> Int { random.withRandom { $0.below(bound) } }
    func chance(_ p: Double) -> Bool { random.withRandom { $0.chance(p) } }

    /// The random workload of the fault phase, until the lockspace is lost or the phase ends.
    func workload(_ ls: Lockspace, _ generation: Int) async {
        var nextRequestCheck = clock.now()
        while isCurrent(generation), sim.phase == .faults, !leaveRequested, await ls.isValid(at: clock.now()) {
            try? await clock.sleep(for: .milliseconds(Int64(draw(300))))
            guard isCurrent(generation), await ls.isValid(at: clock.now()), let local = await ls.localHost else { return }
            if clock.now() >= nextRequestCheck {
                nextRequestCheck = clock.now() + sim.config.timeouts.renewalInterval
                await answerRequests(generation)
            }
            let r = draw(sim.config.resources)
            let roll = draw(100)
            // A quarter of acquires are persistent (their leases outlive the
            // process as orphans); some take two resources, all or nothing.
            let options = LeaseOptions(persistent: chance(0.25))
            let rs = sim.config.resources > 1 && chance(0.15) ? [r, (r + 1 + draw(sim.config.resources - 1)) % sim.config.resources] : [r]
            switch roll {
            case 0..<32: await acquire(rs, ls: ls, local: local, shared: false, options: options, generation)
            case 32..<41: await acquire(rs, ls: ls, local: local, shared: true, options: options, generation)
            case 41..<58: if let pid = willingHolder(of: r) { await release(pid, r, generation) }
            case 58..<67: if let pid = willingHolder(of: r) { await exit(pid, generation) }
            case 67..<74: if let pid = holders(of: r).randomElement(draw) { await convert(pid, r, ls: ls, generation) }
            case 74..<81:
                // A requester wants the lease: it tries for it once the holder had time to go.
                guard await request(r, generation) else { continue }
                try? await clock.sleep(for: .milliseconds(Int64(50 + draw(600))))
                guard isCurrent(generation), await ls.isValid(at: clock.now()), let local = await ls.localHost else { return }
                await acquire([r], ls: ls, local: local, shared: false, generation)
            case 81..<86: await adopt(ls: ls, local: local, generation)
            case 86..<88: await releaseOrphans(generation)
            case 88..<91:
                // Half the time a process being stopped, if there is one.
                let stopping = core.fencedProcesses.filter { processes[$0] != nil }
                if let pid = chance(0.5) ? stopping.randomElement(draw) : willingHolder(of: r) { await disconnect(pid, generation) }
            default: await handover(ls: ls, local: local, generation)
            }
        }
    }

    /// Resource `r` as the daemon uses it: ballots read only the dblocks
    /// of the hosts the lockspace's participant view names.
    func participating(_ r: Int, _ ls: Lockspace) -> PaxosResource? {
        guard var resource = resources[r] else { return nil }
        resource.participants = ls.observer
        return resource
    }

    /// A new process acquires `rs` (all or nothing) through the core's
    /// acquire procedure, the one the daemon runs (``AcquireProcedure``):
    /// this machine does only the ballots' I/O and carries out directives.
    func acquire(_ rs: [Int], ls: Lockspace, local: LocalHost, shared: Bool, requiredLver: LeaseVersion? = nil,
                 options: LeaseOptions = LeaseOptions(), _ generation: Int) async {
        // The caller's last await may have spanned a crash; a local share
        // or an adoption below is handed over with no await that would notice it.
        guard isCurrent(generation) else { return }
        let kind = options.adoptOrphan ? "adopt" : requiredLver != nil ? "handover" : (shared ? "acquire.shared" : "acquire") + (rs.count > 1 ? ".multi" : "")
        let specs = rs.map { r in
            var spec = sim.resourceSpec(r)
            spec.lver = requiredLver
            return spec
        }
        let process = spawnProcess()
        observeLockspace()
        var procedure: AcquireProcedure
        do {
            procedure = try AcquireProcedure(specs, for: process.pid, shared: shared, options: options, requester: .root, holderUID: 0, core: core)
        } catch {
            sim.count("\(kind).refused-locally")
            forget(process.pid)
            return
        }
        var adopted: Set<Int> = []
        while true {
            let step: AcquireProcedure.Step
            do {
                observeLockspace()
                step = try procedure.next(&core, at: clock.now())
            } catch let error as TenureError {
                sim.count("\(kind).refused-locally.\(error.code.rawValue)")
                break
            } catch {
                break
            }
            switch step {
            case .adopted(let orphan):
                sim.count("\(kind).adopted")
                if let r = Self.resourceIndex(orphan) { adopted.insert(r) }
                continue
            case .sharedLocally:
                sim.count("\(kind).local-share")
                continue
            case .ballot(let spec, let asShared):
                guard let r = Self.resourceIndex(spec), let resource = participating(r, ls) else {
                    _ = procedure.ballotEnded(&core, won: nil, at: clock.now())
                    break
                }
                let won: HeldLease?
                do {
                    won = try await PaxosLease.acquire(resource, host: local, oracle: ls.observer,
                                                       options: AcquireOptions(shared: asShared, requiredLver: spec.lver, noWait: chance(0.5)),
                                                       context: context)
                } catch let error as TenureError {
                    sim.count("\(kind).refused.\(error.code.rawValue)")
                    won = nil
                } catch {
                    sim.count("\(kind).cancelled")
                    won = nil
                }
                guard isCurrent(generation) else { return }
                observeLockspace()
                switch procedure.ballotEnded(&core, won: won, at: clock.now()) {
                case .held:
                    continue
                case .failed:
                    break
                case .refused(let error, let directives):
                    sim.count("\(kind).not-handed-over.\(error.code.rawValue)")
                    await carryOut(directives, generation)
                    guard isCurrent(generation) else { return }
                }
            case .done(let taken):
                // No await from the core's hand-over to the record: a crash
                // in between would leave a dead host holding.
                sim.count(kind)
                if options.persistent { process.persistent = Set(taken.compactMap(Self.resourceIndex)) }
                for lease in taken {
                    guard let r = Self.resourceIndex(lease) else { continue }
                    holding(process.pid, r, lver: lease.lver, shared: lease.shared, adopted: adopted.contains(r))
                }
                return
            }
            break
        }
        // All or nothing: what was taken is given up again.
        observeLockspace()
        let abandoned = procedure.abandon(&core, at: clock.now())
        if !abandoned.isEmpty { sim.count("\(kind).abandoned") }
        forget(process.pid)
        await carryOut(abandoned, generation)
    }

    /// A process adopts one of this host's orphans (sanlock's
    /// SANLK_ACQUIRE_ORPHAN_ONLY), persistent again half the time.
    func adopt(ls: Lockspace, local: LocalHost, _ generation: Int) async {
        guard let orphan = core.orphans.values.sorted(by: { $0.resource.name.description < $1.resource.name.description }).randomElement(draw),
              let r = Self.resourceIndex(orphan) else { return }
        await acquire([r], ls: ls, local: local, shared: orphan.shared,
                      options: LeaseOptions(persistent: chance(0.5), adoptOrphan: true, orphanOnly: true), generation)
    }

    /// Releases every orphan this host keeps (sanlock's SANLK_REL_ORPHAN).
    func releaseOrphans(_ generation: Int) async {
        guard !core.orphans.isEmpty else { return }
        observeLockspace()
        guard let directives = try? core.releaseOrphans(["*"], in: Simulation.lockspaceName, at: clock.now()) else { return }
        var released: Set<Int> = []
        for directive in directives {
            switch directive {
            case .writeRelease(_, let lease), .forget(_, let lease): if let r = Self.resourceIndex(lease) { released.insert(r) }
            default: break
            }
        }
        sim.checker.orphansReleased(host: index, resources: released)
        sim.count("release-orphans")
        await carryOut(directives, generation)
    }

    /// A process closes its connection while it runs. One that is not
    /// being stopped stops using its leases first (its part of the
    /// contract); one being stopped still uses them until it is gone — the
    /// core must keep them held until then.
    func disconnect(_ pid: ProcessID, _ generation: Int) async {
        guard let process = processes[pid] else { return }
        let beingStopped = core.isFencing(pid)
        if !beingStopped {
            for r in process.holding.sorted() {
                sim.checker.released(host: index, process: pid.rawValue, resource: r, persistent: process.persistent.contains(r))
            }
            process.holding = []
        }
        note("pid \(pid) closes its connection\(beingStopped ? " while being stopped" : "")")
        sim.count(beingStopped ? "disconnect.stopping" : "disconnect")
        observeLockspace()
        let directives = core.disconnected(pid, stillRunning: true, at: clock.now())
        if !beingStopped { forget(pid) }
        await carryOut(directives, generation)
    }

    /// The process releases `r` and then ends.
    func release(_ pid: ProcessID, _ r: Int, _ generation: Int) async {
        guard let process = processes[pid], process.holding.contains(r) else { return }
        // The process stops using the lease before the release is written.
        process.holding.remove(r)
        process.persistent.remove(r)
        sim.checker.released(host: index, process: pid.rawValue, resource: r, persistent: false)
        note("pid \(pid) releases R\(r)")
        observeLockspace()
        guard let directives = try? core.release([sim.resourceSpec(r).name.description], of: pid, at: clock.now()) else { return }
        await carryOut(directives, generation)
        if process.holding.isEmpty, processes[pid] === process {
            forget(pid)
            core.untrack(pid)
        }
    }

    /// The process exits holding its leases; the core gives them up.
    func exit(_ pid: ProcessID, _ generation: Int) async {
        note("pid \(pid) exits")
        die(pid, reported: true)
        observeLockspace()
        await carryOut(core.processExited(pid, at: clock.now()), generation)
    }

    func convert(_ pid: ProcessID, _ r: Int, ls: Lockspace, _ generation: Int) async {
        guard let process = processes[pid], process.holding.contains(r), let resource = participating(r, ls) else { return }
        let name = sim.resourceSpec(r).name.description
        guard let lease = core.leases[pid]?[name] else { return }
        observeLockspace()
        let held: HeldLease
        do {
            switch try core.prepareConvert(name, of: pid, toShared: !lease.shared, at: clock.now()) {
            case .done: return
            case .run(let l): held = l
            }
        } catch {
            sim.count("convert.refused-locally")
            return
        }
        do {
            if held.shared {
                let exclusive = try await PaxosLease.convertToExclusive(resource, held: held, oracle: ls.observer, context: context)
                guard isCurrent(generation), processes[pid]?.holding.contains(r) == true else { return }
                core.converted(name, of: pid, to: exclusive)
                sim.count("convert.exclusive")
                holding(pid, r, lver: exclusive.lver, shared: false)
            } else {
                // A sharer is not an exclusive holder: mark it shared before the I/O.
                sim.checker.converted(host: index, process: pid.rawValue, resource: r, shared: true, trace: sim.trace, at: sim.time)
                let sharedLease = try await PaxosLease.convertToShared(resource, held: held, context: context)
                guard isCurrent(generation), processes[pid]?.holding.contains(r) == true else { return }
                core.converted(name, of: pid, to: sharedLease)
                sim.count("convert.shared")
            }
        } catch let error as TenureError {
            sim.count("convert.refused.\(error.code.rawValue)")
            // A failed exclusive → shared may still land: the core (since
            // the convert began) and the checker both count the lease shared.
        } catch {
            sim.count("convert.cancelled")
        }
    }

    /// Writes a request for `r` (force or graceful) unless a process here
    /// holds it; whether one was written.
    func request(_ r: Int, _ generation: Int) async -> Bool {
        guard holders(of: r).isEmpty, let resource = resources[r] else { return false }
        do {
            try await PaxosLease.request(resource, lver: nil, mode: chance(0.5) ? .force : .graceful, context: context)
            sim.count("request")
            return true
        } catch {
            sim.count("request.failed")
            return false
        }
    }

    /// The holder's side of requests, as the daemon's poll: the request
    /// records of held leases go to the core, which stops their holders.
    func answerRequests(_ generation: Int) async {
        for (pid, lease) in core.leasesToWatchForRequests {
            guard let r = Self.resourceIndex(lease), let resource = resources[r] else { continue }
            guard let request = try? await PaxosLease.pendingRequest(resource, held: lease), isCurrent(generation) else { continue }
            sim.count("request.seen")
            await carryOut(core.requestSeen(for: lease, heldBy: pid, force: request.forceMode == .force,
                                            lver: request.lver, at: clock.now()), generation)
        }
    }

    /// Either hands an exclusive lease over (release, post its lver), or takes one posted.
    func handover(ls: Lockspace, local: LocalHost, _ generation: Int) async {
        let exclusive = core.leases.flatMap { pid, held in held.values.filter { !$0.shared }.map { (pid, $0) } }.sorted { $0.0 < $1.0 }
        if let (pid, lease) = exclusive.first, let r = Self.resourceIndex(lease), chance(0.5) {
            await release(pid, r, generation)
            sim.handovers.append((r, lease.lver))
            return
        }
        guard !sim.handovers.isEmpty else { return }
        let offer = sim.handovers.remove(at: draw(sim.handovers.count))
        await acquire([offer.resource], ls: ls, local: local, shared: false, requiredLver: offer.lver, generation)
    }

    // MARK: Liveness

    /// Every resource once, in a random order, retrying until held.
    func livenessRound(_ ls: Lockspace, _ generation: Int) async {
        // Orphans would keep their resources from every other host.
        await releaseOrphans(generation)
        var order = Array(0..<sim.config.resources)
        for i in order.indices.reversed() { order.swapAt(i, draw(i + 1)) }
        for r in order {
            while isCurrent(generation), await ls.isValid(at: clock.now()) {
                if resources[r] == nil {
                    resources[r] = try? await PaxosResource.open(sim.resourceSpec(r), devices: sim.resourceDisks.map { devices[$0] })
                }
                if let local = await ls.localHost { await acquire([r], ls: ls, local: local, shared: false, generation) }
                if let pid = holders(of: r).first {
                    try? await clock.sleep(for: .milliseconds(Int64(10 + draw(90))))
                    await release(pid, r, generation)
                    break
                }
                try? await clock.sleep(for: .milliseconds(Int64(100 + draw(900))))
            }
        }
        if isCurrent(generation), await ls.isValid(at: clock.now()) {
            sim.livenessDone.insert(index)
            note("liveness round done")
        }
    }
}

/// A process of a simulated machine that asked for leases. What it holds is
/// the checker's witness: a lease is held from the core's hand-over until
/// the process releases it or dies. How it answers signals is its
/// ``SimulatedProcesses/Behaviour``.
final class SimProcess {
    let pid: ProcessID
    /// Rarely lets go of its leases of its own accord.
    let longLived: Bool
    var holding: Set<Int> = []
    /// What it acquired persistent: kept by the host as orphans when it goes.
    var persistent: Set<Int> = []
    /// The host's join its leases were acquired under (``SimHost/joinEpoch``).
    var epoch = 0

    init(pid: ProcessID, longLived: Bool) {
        self.pid = pid
        self.longLived = longLived
    }
}

extension Array {
    /// An element chosen with `draw(count)`, or nil if empty.
    func randomElement(_ draw: (Int) -> Int) -> Element? {
        isEmpty ? nil : self[draw(count)]
    }
}
