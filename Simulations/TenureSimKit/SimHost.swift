import TenureCore
import TenureEngine
import TenureFormat
import TenureTestKit

/// One simulated host: the real engine (Lockspace, PaxosLease) over its own
/// handles onto the shared disks, its own drifting clock, and the processes
/// that hold its leases (modelled by `held`). A crash cancels every task
/// and forgets `held` (memory lost, disk kept); a boot starts a new
/// incarnation with a new clock, new handles and a new generation.
final class SimHost: @unchecked Sendable {
    let index: Int
    let id: HostID
    let name: LeaseName
    unowned let sim: Simulation

    private(set) var incarnation = 0
    private(set) var crashed = true
    private(set) var clock: SimClock
    private var random: SharedRandom
    private var devices: [MemoryDevice] = []
    /// Fault rules that cut this host off from a disk, by disk.
    private var cutOffRules: [Int: [MemoryDevice.FaultID]] = [:]
    private var lostDiskRules: [Int: MemoryDevice.FaultID] = [:]
    private(set) var lockspace: Lockspace?
    private var context: EngineContext
    private var resources: [PaxosResource?] = []
    /// What this host's processes hold, by resource.
    private var held: [Int: HeldLease] = [:]
    private var tasks: [Task<Void, Never>] = []
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
        context = EngineContext(clock: clock, random: { bound in shared.withRandom { $0.below(bound) } },
                                log: { [unowned self] event in
                                    if event.kind != .renewed { self.note(event.description) }
                                },
                                watchdogFire: config.watchdogFire, injectedBugs: config.injectedBugs)
        devices = sim.storages.indices.map { d in
            MemoryDevice(storage: sim.storages[d], path: "disk\(d)", clock: clock, ioTimeout: .seconds(Int64(config.ioTimeout(ofHost: index).seconds)),
                         logCapacity: 0, faultSource: sim.faultSource(random: shared))
        }
        cutOffRules = [:]
        lostDiskRules = [:]
        applyLostDisks()
        held = [:]
        resources = Array(repeating: nil, count: config.resources)
        let generation = incarnation
        tasks = [sim.scheduler.spawn {
            try? await self.clock.sleep(for: delay)
            await self.main(generation)
        }]
    }

    /// Crashes now: every task is cancelled, every process is gone. Writes
    /// already issued still land (the devices are not closed).
    func crash(restart: Bool) {
        guard !crashed else { return }
        crashed = true
        for task in tasks { task.cancel() }
        tasks = []
        held = [:]
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

    func isCurrent(_ generation: Int) -> Bool { incarnation == generation && !crashed }

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
            // The lockspace was lost: the fence kills every holder, then we rejoin.
            await fence.value
            killAll("lockspace lost")
            renewals.cancel()
            try? await ls.leave()
            lockspace = nil
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
        for r in held.keys.sorted() { await release(r, generation) }
        guard isCurrent(generation) else { return }
        for task in running { task.cancel() }
        do {
            try await ls.leave()
            sim.count("leave")
            note("left the lockspace (slot free)")
        } catch {
            sim.count("leave.failed")
        }
        lockspace = nil
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

    /// Kills every holder within the fence window once the lockspace expires.
    func fence(_ ls: Lockspace, _ generation: Int) async {
        while isCurrent(generation) {
            guard let expiry = ls.publishedExpiry else { return }
            // As the daemon: wake at the expiry, or sooner, since a renewal
            // that finds the slot rewritten loses the lockspace at once.
            do { try await clock.sleep(until: min(expiry, clock.now() + Timeouts.lossCheck)) } catch { return }
            guard await ls.checkExpiry() != nil else { continue }
            let window = sim.config.fenceWindow.nanosecondsClamped
            let delay = Duration.nanoseconds(Int64(random.withRandom { $0.below(window + 1) }))
            note("lockspace lost; holders of \(held.keys.sorted().map { "R\($0)" }) die within \(delay)")
            try? await clock.sleep(for: delay)
            guard isCurrent(generation) else { return }
            killAll("fenced")
            return
        }
    }

    func killAll(_ why: String) {
        if !held.isEmpty { sim.count("killed") }
        held = [:]
        sim.checker.droppedAll(host: index)
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
            switch roll {
            case 0..<35: await acquire(r, ls: ls, local: local, shared: false, generation)
            case 35..<45: await acquire(r, ls: ls, local: local, shared: true, generation)
            case 45..<75: await release(held.keys.sorted().randomElement(draw) ?? r, generation)
            case 75..<83: await convert(held.keys.sorted().randomElement(draw) ?? r, ls: ls, generation)
            case 83..<90: await request(r, generation)
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

    func acquire(_ r: Int, ls: Lockspace, local: LocalHost, shared: Bool, requiredLver: LeaseVersion? = nil, _ generation: Int) async {
        guard held[r] == nil, let resource = participating(r, ls) else { return }
        let kind = requiredLver != nil ? "handover" : shared ? "acquire.shared" : "acquire"
        do {
            let lease = try await PaxosLease.acquire(resource, host: local, oracle: ls.observer,
                                                     options: AcquireOptions(shared: shared, requiredLver: requiredLver, noWait: chance(0.5)),
                                                     context: context)
            // The daemon hands a lease to a process only while the lockspace is
            // valid: one won after it expired is given up, never used.
            let valid = await ls.isValid(at: clock.now())
            // No await from here on: a crash between the check and the record
            // would leave a dead host holding.
            guard isCurrent(generation), held[r] == nil else { return }
            guard valid else {
                sim.count("\(kind).after-expiry")
                note("won R\(r) lver \(lease.lver) after the lockspace expired; not used")
                return
            }
            sim.count(kind)
            held[r] = lease
            sim.checker.acquired(Checker.Holding(host: index, incarnation: incarnation, hostID: id, lver: lease.lver, shared: lease.shared),
                                 resource: r, trace: sim.trace, at: sim.time)
            note("holds R\(r) lver \(lease.lver)\(lease.shared ? " shared" : "")")
        } catch let error as TenureError {
            sim.count("\(kind).refused.\(error.code.rawValue)")
        } catch {
            sim.count("\(kind).cancelled")
        }
    }

    func release(_ r: Int, _ generation: Int) async {
        guard let lease = held.removeValue(forKey: r), let resource = resources[r] else { return }
        // The process stops using the lease before the release is written.
        sim.checker.released(host: index, resource: r)
        note("releases R\(r) lver \(lease.lver)")
        do {
            try await PaxosLease.release(resource, held: lease, context: context)
            sim.count("release")
        } catch {
            sim.count("release.failed")
        }
    }

    func convert(_ r: Int, ls: Lockspace, _ generation: Int) async {
        guard let lease = held[r], let resource = participating(r, ls) else { return }
        do {
            if lease.shared {
                let exclusive = try await PaxosLease.convertToExclusive(resource, held: lease, oracle: ls.observer, context: context)
                let valid = await ls.isValid(at: clock.now())
                guard valid, isCurrent(generation), held[r] != nil else { return }
                held[r] = exclusive
                sim.count("convert.exclusive")
                sim.checker.acquired(Checker.Holding(host: index, incarnation: incarnation, hostID: id, lver: exclusive.lver, shared: false),
                                     resource: r, trace: sim.trace, at: sim.time)
            } else {
                // A sharer is not an exclusive holder: mark it shared before the I/O.
                sim.checker.converted(host: index, resource: r, shared: true, trace: sim.trace, at: sim.time)
                let sharedLease = try await PaxosLease.convertToShared(resource, held: lease, context: context)
                guard isCurrent(generation), held[r] != nil else { return }
                held[r] = sharedLease
                sim.count("convert.shared")
            }
        } catch let error as TenureError {
            sim.count("convert.refused.\(error.code.rawValue)")
            // A failed exclusive → shared leaves us exclusive on disk only if
            // nothing was written; keep the checker conservative: still shared.
        } catch {
            sim.count("convert.cancelled")
        }
    }

    func request(_ r: Int, _ generation: Int) async {
        guard held[r] == nil, let resource = resources[r] else { return }
        do {
            try await PaxosLease.request(resource, lver: nil, mode: chance(0.5) ? .force : .graceful, context: context)
            sim.count("request")
        } catch {
            sim.count("request.failed")
        }
    }

    /// The holder's side of requests: a lease someone asked for is released.
    func answerRequests(_ generation: Int) async {
        for r in held.keys.sorted() {
            guard let lease = held[r], let resource = resources[r] else { continue }
            if let request = try? await PaxosLease.pendingRequest(resource, held: lease), isCurrent(generation), held[r] != nil {
                note("answers a request for R\(r) lver \(request.lver)")
                sim.count("request.answered")
                await release(r, generation)
            }
        }
    }

    /// Either hands an exclusive lease over (release, post its lver), or takes one posted.
    func handover(ls: Lockspace, local: LocalHost, _ generation: Int) async {
        if let r = held.keys.sorted().first(where: { held[$0]?.shared == false }), chance(0.5) {
            let lver = held[r]!.lver
            await release(r, generation)
            sim.handovers.append((r, lver))
            return
        }
        guard !sim.handovers.isEmpty else { return }
        let offer = sim.handovers.remove(at: draw(sim.handovers.count))
        await acquire(offer.resource, ls: ls, local: local, shared: false, requiredLver: offer.lver, generation)
    }

    // MARK: Liveness

    /// Every resource once, in a random order, retrying until held.
    func livenessRound(_ ls: Lockspace, _ generation: Int) async {
        var order = Array(0..<sim.config.resources)
        for i in order.indices.reversed() { order.swapAt(i, draw(i + 1)) }
        for r in order {
            while isCurrent(generation), await ls.isValid(at: clock.now()) {
                if resources[r] == nil {
                    resources[r] = try? await PaxosResource.open(sim.resourceSpec(r), devices: sim.resourceDisks.map { devices[$0] })
                }
                if let local = await ls.localHost { await acquire(r, ls: ls, local: local, shared: false, generation) }
                if held[r] != nil {
                    try? await clock.sleep(for: .milliseconds(Int64(10 + draw(90))))
                    await release(r, generation)
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

extension Array {
    /// An element chosen with `draw(count)`, or nil if empty.
    func randomElement(_ draw: (Int) -> Int) -> Element? {
        isEmpty ? nil : self[draw(count)]
    }
}
