import CTenureSys
import Glibc
import Dispatch
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureIO

extension Daemon {
    // MARK: Devices

    /// The shared client handle for `path` (resources and observers), opened
    /// on first use and counted: each user (a joined lockspace, a held
    /// lease, an operation in flight) holds one reference, and the handle —
    /// its descriptor, io_context and reaper — is closed with the last.
    func retainDevice(_ path: String) throws -> any BlockDevice {
        if let open = devices[path] {
            devices[path]!.users += 1
            return open.device
        }
        guard devices.count < Limits.maxOpenDevices else {
            throw TenureError(.limitReached, "The daemon has \(devices.count) devices open, its limit.",
                              remedy: "Release leases on other lease files first, or keep leases on fewer files.")
        }
        let opened = try openBlockDevice(path: path, engine: .aio, ioTimeout: config.timeouts.ioTimeout, loop: loop)
        devices[path] = OpenDevice(device: opened, users: 1)
        return opened
    }

    /// Drops one reference to `path`'s handle; the last closes it.
    func releaseDevice(_ path: String) async {
        guard let open = devices[path] else { return }
        guard open.users <= 1 else {
            devices[path]!.users -= 1
            return
        }
        devices[path] = nil
        resources = resources.filter { !$0.value.spec.disks.contains { $0.path == path } }
        await open.device.close()
        if open.device.writesMayStillLand { closedWithWritesInFlight.append(open.device) }
        log.debug("closed \(path): no lease, lockspace or operation uses it")
    }

    /// A held lease keeps a reference to each of its disks' handles while
    /// the core has it; these two take and drop it.
    func retainDevices(of lease: HeldLease) throws {
        for disk in lease.resource.disks { _ = try retainDevice(disk.path) }
    }

    func releaseDevices(of lease: HeldLease) async {
        for disk in lease.resource.disks { await releaseDevice(disk.path) }
    }

    /// Runs `body` with the daemon's handle for `path`, held for the while.
    func withDevice<T>(_ path: String, _ body: (any BlockDevice) async throws -> T) async throws -> T {
        let device = try retainDevice(path)
        do {
            let result = try await body(device)
            await releaseDevice(path)
            return result
        } catch {
            await releaseDevice(path)
            throw error
        }
    }

    /// Runs `body` with a reference to every disk of `spec` held.
    func withDevices<T>(of spec: ResourceSpec, _ body: () async throws -> T) async throws -> T {
        var taken: [String] = []
        do {
            for disk in spec.disks {
                _ = try retainDevice(disk.path)
                taken.append(disk.path)
            }
            let result = try await body()
            for path in taken { await releaseDevice(path) }
            return result
        } catch {
            for path in taken { await releaseDevice(path) }
            throw error
        }
    }

    // MARK: Lockspaces

    /// Joins `spec` and starts renewing it; the caller reserved its name (``reserveJoin(_:)``).
    func addLockspace(_ spec: LockspaceSpec, hostName: String?, ioTimeout: IOTimeout?) async throws -> String {
        let text = spec.description
        guard !spec.hostID.isNone else {
            throw TenureError(.invalidArgument, "\(text) names host id 0.", remedy: "Give this host's id (1 or more) in the lockspace string.")
        }
        guard lockspaces[spec.name] == nil else {
            throw TenureError(.alreadyExists, "Lockspace \(spec.name) is joined already.", remedy: "Remove it first to join with another host id.")
        }
        let io = ioTimeout ?? config.ioTimeout
        let name = try LeaseName(hostName ?? config.hostName, what: "host name")
        // Renewal has a handle, an io_context and a reaper of its own, and
        // runs on the renewal thread (its clock too), real-time by default.
        let renewalDevice = try openBlockDevice(path: spec.disk.path, engine: .aio, ioTimeout: io.duration,
                                                realtimePriority: config.realtime ? Starvation.realtimePriority : nil)
        let renewalContext = context.with(clock: renewalThread)
        var clientPath: String?
        do {
            let clientDevice = try retainDevice(spec.disk.path)
            clientPath = spec.disk.path
            let observer = try await LockspaceObserver.open(spec, device: clientDevice, context: context)
            let lockspace = try Lockspace(spec: spec, renewalDevice: renewalDevice, observer: observer, ioTimeout: io, context: renewalContext)
            log.info("joining lockspace \(spec.name) as host \(spec.hostID) (io_timeout \(io.seconds)s)")
            let host = try await onRenewalThread { try await lockspace.join(name: name) }
            let joined = JoinedLockspace(spec: spec, lockspace: lockspace, renewalDevice: renewalDevice, clientDevice: clientDevice)
            // Fencing looks at the lockspace from the renewal thread too (onRenewalThread).
            joined.tasks = [Task(executorPreference: renewalThread) { await lockspace.runRenewals() },
                            Task(executorPreference: renewalThread) { await self.fence(joined) }]
            lockspaces[spec.name] = joined
            core.lockspaceJoined(spec.name, expiry: lockspace.publishedExpiry)
            log.info("joined lockspace \(spec.name) as \(host)")
            return String(host.generation.rawValue)
        } catch {
            await renewalDevice.close()
            if let clientPath { await releaseDevice(clientPath) }
            throw error
        }
    }

    /// Leaves a lockspace: refused while processes hold leases in it.
    func removeLockspace(_ name: String) async throws {
        let (key, joined) = try joinedLockspace(name)
        try core.checkMayLeave(key)
        lockspaces[key] = nil
        fencedLockspaces.remove(key)
        core.lockspaceLeft(key)
        for task in joined.tasks { task.cancel() }
        for task in joined.tasks { _ = await task.value }
        let writtenThrough = devicesWrittenThrough(joined)
        switch await onRenewalThread({ try? await joined.lockspace.leave(afterWritesThrough: writtenThrough) }) {
        case .freed?:
            log.info("left lockspace \(name); host id \(joined.spec.hostID) is free")
        case .leftToExpire(let path)?:
            log.warning("left lockspace \(name) without freeing host id \(joined.spec.hostID): a write through \(path) may still land, so the id ages out like a crashed host's (8N + W)")
        case .nothingWritten?, nil:
            log.info("left lockspace \(name); host id \(joined.spec.hostID) not written (lost, or the write failed)")
        }
        await joined.renewalDevice.close()
        await releaseDevice(joined.spec.disk.path)
    }

    /// Every handle a leave must find settled: the lockspace's renewal
    /// handle, every open lease handle, and closed ones a write may still
    /// leave (those that settled are forgotten here).
    func devicesWrittenThrough(_ joined: JoinedLockspace) -> [any BlockDevice] {
        closedWithWritesInFlight.removeAll { !$0.writesMayStillLand }
        return [joined.renewalDevice] + devices.values.map(\.device) + closedWithWritesInFlight
    }

    /// The joined lockspace `name` and this host in it; throws unless the
    /// core holds it valid now.
    func joined(_ name: LeaseName) async throws -> (JoinedLockspace, LocalHost) {
        observeLockspaces()
        try core.requireValid(name, at: context.clock.now())
        guard let joined = lockspaces[name], let host = await onRenewalThread({ await joined.lockspace.localHost }) else {
            throw TenureError(.lockspaceLost, "Lockspace \(name) is lost on this host; its leases cannot be used.",
                              remedy: "Check the storage, then remove and add the lockspace again.")
        }
        return (joined, host)
    }

    /// Tells the core what each lockspace's renewals last published.
    func observeLockspaces() {
        for (name, joined) in lockspaces {
            core.lockspaceObserved(name, expiry: joined.lockspace.publishedExpiry, lost: joined.lockspace.publishedLost)
        }
    }

    /// The core's decisions, carried out. Writes of releases are awaited;
    /// the first error among them is returned (for a client's release).
    /// Every lease given up holds references to its devices (taken when it
    /// was won), released here.
    @discardableResult
    func carryOut(_ directives: [HostDirective]) async -> Error? {
        var firstError: Error?
        for directive in directives {
            switch directive {
            case .signal(let pid, let stop):
                fencingSignalled(pid.rawValue)
                signal(pid.rawValue, stop)
            case .runKillpath(let pid, let argv):
                fencingSignalled(pid.rawValue)
                runKillpath(argv, for: pid.rawValue)
            case .writeRelease(let pid, let lease):
                do {
                    try await writeLVBBeforeRelease(lease)
                    if let newName = core.renameOnRelease(of: lease) {
                        try await PaxosLease.releaseRenaming(try await resource(lease.resource), held: lease, to: newName, context: context)
                        log.info("process \(pid) released \(lease), renamed \(newName)")
                    } else {
                        try await PaxosLease.release(try await resource(lease.resource), held: lease, context: context)
                        log.info("process \(pid) released \(lease)")
                    }
                    counters.releases += 1
                } catch {
                    log.warning("releasing \(lease) of process \(pid) failed: \(error)")
                    firstError = firstError ?? error
                }
                core.releaseWritten(lease)
                heldSince[Self.heldKey(pid, lease)] = nil
                await releaseDevices(of: lease)
            case .forget(let pid, let lease):
                heldSince[Self.heldKey(pid, lease)] = nil
                dropUnheldLVBs()
                await releaseDevices(of: lease)
            case .pet:
                pet()
            case .log(let level, let text):
                log.log(level: level.logging, "\(text)")
            }
        }
        return firstError
    }

    // MARK: Leases

    /// A resource as the cache keeps it: without lver or mode.
    static func cacheable(_ spec: ResourceSpec) -> ResourceSpec {
        var key = spec
        key.lver = nil
        key.shared = false
        return key
    }

    func resource(_ spec: ResourceSpec) async throws -> PaxosResource {
        let key = Self.cacheable(spec)
        if let open = resources[key.description] { return open }
        guard spec.disks.allSatisfy({ devices[$0.path] != nil }) else {
            preconditionFailure("resource(\(spec)) called without its devices retained")
        }
        let opened = try await PaxosResource.open(key, devices: spec.disks.map { devices[$0.path]!.device })
        resources[key.description] = opened
        return opened
    }

    /// Acquires every resource for `pid`, all or nothing, by the core's
    /// procedure (``AcquireProcedure``, the one the simulator runs too);
    /// returns their state strings. `peer` asked: an orphan is adopted
    /// only for root or the orphan's own user.
    func acquire(_ specs: [ResourceSpec], for pid: Int32, by peer: Peer, shared: Bool, options: LeaseOptions = LeaseOptions()) async throws -> [String] {
        guard specs.count <= Wire.maxResourcesPerRequest else {
            throw TenureError(.invalidArgument, "An acquire names \(specs.count) resources; it takes 1...\(Wire.maxResourcesPerRequest).",
                              remedy: "Acquire at most \(Wire.maxResourcesPerRequest) at once.")
        }
        var procedure = try AcquireProcedure(specs, for: ProcessID(pid), shared: shared, options: options,
                                             requester: Requester(uid: peer.uid, isRoot: peer.isRoot),
                                             holderUID: processes.live(pid)?.uid ?? peer.uid, core: core)
        let taken: [HeldLease]
        do {
            taken = try await carryOutAcquire(&procedure)
            if options.lvb { for lease in taken { try await readLVB(of: lease) } }
        } catch {
            counters.acquireRefusals += 1
            observeLockspaces()
            await carryOut(procedure.abandon(&core, at: context.clock.now()))
            throw error
        }
        counters.acquires += UInt64(taken.count)
        let now = context.clock.now()
        for lease in taken { heldSince[Self.heldKey(ProcessID(pid), lease)] = now }
        return taken.map(\.stateString)
    }

    /// Runs the procedure's steps: the ballots' I/O (with the devices
    /// retained around each, and kept for the lease won), nothing decided here.
    private func carryOutAcquire(_ procedure: inout AcquireProcedure) async throws -> [HeldLease] {
        let pid = procedure.pid
        while true {
            observeLockspaces()
            switch try procedure.next(&core, at: context.clock.now()) {
            case .adopted(let orphan):
                log.info("process \(pid) adopted the orphan \(orphan)")
            case .sharedLocally(let held):
                // Each holder keeps its own references to the lease's
                // devices: the other sharer's release drops only its own.
                try retainDevices(of: held)
                log.info("process \(pid) shares \(held) with another local process")
            case .ballot(let spec, let shared):
                let won: HeldLease
                do {
                    won = try await withDevices(of: spec) {
                        let won = try await ballot(spec, shared: shared)
                        try retainDevices(of: won)
                        return won
                    }
                } catch {
                    observeLockspaces()
                    _ = procedure.ballotEnded(&core, won: nil, at: context.clock.now())
                    throw error
                }
                observeLockspaces()
                switch procedure.ballotEnded(&core, won: won, at: context.clock.now()) {
                case .held(let held):
                    log.info("process \(pid) acquired \(held)")
                case .refused(let error, let directives):
                    // The lease won retained its devices (above): giving it up releases them.
                    await carryOut(directives)
                    throw error
                case .failed:
                    preconditionFailure("the core refused a lease it was given")
                }
            case .done(let taken):
                return taken
            }
        }
    }

    /// The engine's acquire of one resource for this host: the ballot.
    private func ballot(_ spec: ResourceSpec, shared: Bool) async throws -> HeldLease {
        let (joined, host) = try await self.joined(spec.lockspace)
        var resource = try await self.resource(spec)
        // Ballots read only the dblocks of hosts that can take part.
        resource.participants = joined.lockspace.observer
        try resource.validate(host: host.id)
        return try await PaxosLease.acquire(resource, host: host, oracle: joined.lockspace.observer,
                                            options: AcquireOptions(shared: shared, requiredLver: spec.lver, noWait: true), context: context)
    }

    /// Releases `names` (or "*" for all) of `pid`.
    func release(_ names: [String], of pid: Int32) async throws {
        observeLockspaces()
        let directives = try core.release(names, of: ProcessID(pid), at: context.clock.now())
        if let error = await carryOut(directives) { throw error }
    }

    /// sanlock's release with SANLK_REL_RENAME: `pid` releases `name`,
    /// and the lease is renamed `newName` on disk in the same write.
    func releaseRenaming(_ name: LeaseName, lockspace: LeaseName, of pid: Int32, to newName: LeaseName) async throws {
        observeLockspaces()
        let directives = try core.releaseRenaming(name, of: lockspace, by: ProcessID(pid), to: newName, at: context.clock.now())
        if let error = await carryOut(directives) { throw error }
    }

    /// Writes a request for `spec`'s lease (force: its holder is killed).
    /// The lockspace must be joined here: nothing is opened for one that is not.
    func requestLease(_ spec: ResourceSpec, force: Bool) async throws {
        guard let joined = lockspaces[spec.lockspace] else {
            throw TenureError(.noLockspace, "Lockspace \(spec.lockspace) is not joined on this host; a request goes through a joined lockspace.",
                              remedy: "Join it first (`tenure client add-lockspace`), or write the request with `tenure direct request`.")
        }
        let (leader, wanted) = try await withDevices(of: spec) {
            try await PaxosLease.request(try await self.resource(spec), lver: spec.lver, mode: force ? .force : .graceful, context: context)
        }
        log.info("requested \(spec.name) at lver \(wanted) (\(force ? "force" : "graceful"))")
        counters.requestsSent += 1
        // Tell the owner to look now: our bit for it in our delta lease.
        if let host = await onRenewalThread({ await joined.lockspace.localHost }), !leader.timestamp.isFree, !leader.ownerID.isNone, leader.ownerID != host.id {
            do {
                try await onRenewalThread { try await joined.lockspace.signal(leader.ownerID) }
                signalledAt[spec.lockspace] = context.clock.now()
            } catch {
                log.notice("could not signal host \(leader.ownerID) of the request (it will see it within 2N): \(error)")
            }
        }
    }

    // MARK: Lockspaces, on the renewal thread

    /// Runs `body` with the renewal thread as its task's executor: its
    /// calls into a Lockspace or its observer (default actors, which run
    /// where the calling task prefers) execute there, at the renewal
    /// thread's real-time priority, while the daemon's own state stays on
    /// the loop. An ordinary thread that holds a Lockspace when the CPU is
    /// short (its cgroup's quota spent) would make the next renewal wait
    /// until that thread runs again, up to a scheduling period: under
    /// StarvationTests' load one renewal came 1 s late that way.
    func onRenewalThread<T, E: Error>(_ body: () async throws(E) -> T) async throws(E) -> T {
        try await withTaskExecutorPreference(renewalThread, operation: body)
    }

    // MARK: Fencing

    /// Waits for the lockspace's expiry, or a loss before it (a renewal
    /// that found our slot rewritten); then tells the core, which stops
    /// every holder of a lease in it (``HostCore/lockspaceLost``).
    func fence(_ joined: JoinedLockspace) async {
        while !Task.isCancelled {
            guard let expiry = joined.lockspace.publishedExpiry else { return }
            do { try await context.clock.sleep(until: min(expiry, context.clock.now() + Timeouts.lossCheck)) } catch { return }
            guard let lost = await joined.lockspace.checkExpiry() else { continue }
            await fenceLost(joined, lost)
            return
        }
    }

    /// Tells the core that `joined` is lost, once, whoever noticed first
    /// (its fence task at the expiry, or the poll's look at other hosts'
    /// timestamps); the core stops every holder of a lease in it.
    func fenceLost(_ joined: JoinedLockspace, _ lost: TenureError) async {
        guard lockspaces[joined.spec.name] === joined, fencedLockspaces.insert(joined.spec.name).inserted else { return }
        observeLockspaces()
        await carryOut(core.lockspaceLost(joined.spec.name, why: lost.message, at: context.clock.now()))
    }

    /// Every ``Timeouts/fencePoll``: processes the core stops, and holders
    /// without a connection, are looked at through their pidfds; exits go to
    /// the core, then time does (escalation). Its directives are carried out here.
    func fenceLoop() async {
        while !Task.isCancelled {
            observeLockspaces()
            let now = context.clock.now()
            var directives: [HostDirective] = []
            let watched = Set(core.fencedProcesses + core.holders.filter { connections[$0.rawValue] == nil })
            for pid in watched.sorted() where !isRunning(pid.rawValue) {
                directives += core.processExited(pid, at: now)
                fencedProcessExited(pid.rawValue)
                processes.forget(pid.rawValue)
            }
            directives += core.tick(at: now)
            await carryOut(directives)
            processes.reapChildren()
            try? await context.clock.sleep(for: Timeouts.fencePoll)
        }
    }

    /// Whether `pid` still runs: by its pidfd when the daemon tracks it, so
    /// a reused pid never counts as the holder.
    func isRunning(_ pid: Int32) -> Bool { !processes.hasExited(ProcessID(pid)) }

    /// Signals `pid` through its pidfd (never a later process with its pid).
    func signal(_ pid: Int32, _ signal: StopSignal) {
        guard processes.isTracked(pid) else {
            log.error("process \(pid) holds leases but is not tracked by a pidfd; not signalling a pid that may have been reused")
            return
        }
        processes.signal(ProcessID(pid), signal)
    }

    /// Runs `killpath` (with the pid in TENURE_KILL_PID) as that process's
    /// own user and group; SIGTERM if it cannot start.
    func runKillpath(_ killpath: [String], for pid: Int32) {
        if processes.runKillpath(killpath, for: ProcessID(pid)) {
            log.warning("ran killpath \(killpath.joined(separator: " ")) for process \(pid) as its own user")
        } else {
            log.error("killpath \(killpath.first ?? "?") for process \(pid) failed to start (\(String(cString: strerror(errno)))); sending SIGTERM")
            signal(pid, .terminate)
        }
    }

    /// Converts `name` held by `pid` to shared or exclusive.
    func convert(_ name: String, of pid: Int32, shared: Bool) async throws -> String {
        observeLockspaces()
        let held: HeldLease
        switch try core.prepareConvert(name, of: ProcessID(pid), toShared: shared, at: context.clock.now()) {
        case .done(let lease): return lease.stateString
        case .run(let lease): held = lease
        }
        let (joined, _) = try await self.joined(held.resource.lockspace)
        let resource = try await self.resource(held.resource)
        let converted: HeldLease
        do {
            converted = shared
                ? try await PaxosLease.convertToShared(resource, held: held, context: context)
                : try await PaxosLease.convertToExclusive(resource, held: held, oracle: joined.lockspace.observer, context: context)
        } catch {
            // The core counts the lease shared since the convert began (``HostCore/prepareConvert``).
            guard shared, let error = error as? TenureError else { throw error }
            throw TenureError(error.code, "\(error.message) The lease is held shared from now on: its writes may still land, so its exclusive mode is given up.",
                              remedy: error.remedy)
        }
        core.converted(name, of: ProcessID(pid), to: converted)
        log.info("process \(pid) converted \(converted)")
        return converted.stateString
    }

    /// The joined lockspace `name` and its key; `.noLockspace` when it is not joined here.
    func joinedLockspace(_ name: String) throws -> (key: LeaseName, joined: JoinedLockspace) {
        let key = try LeaseName(name, what: "lockspace name")
        guard let joined = lockspaces[key] else { throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.") }
        return (key, joined)
    }

    /// Every host slot of `joined` ever used, read now, with its state as
    /// this host judges it (nil: not judged yet); for host-status and
    /// sanlock's get_hosts.
    func hostsInUse(_ joined: JoinedLockspace) async throws -> [(id: HostID, record: LeaderRecord, state: HostState?)] {
        let observer = joined.lockspace.observer
        var hosts: [(id: HostID, record: LeaderRecord, state: HostState?)] = []
        for (id, record, _) in try await observer.observeRange(upTo: HostID(UInt64(observer.geometry.maxHosts)))
        where !record.timestamp.isFree || record.ownerGeneration.rawValue > 0 {
            hosts.append((id, record, await observer.state(of: id)))
        }
        return hosts
    }

    // MARK: The poll loop

    /// Every `requestPoll`: look for requests aimed at held leases.
    func pollLoop() async {
        while !Task.isCancelled {
            try? await context.clock.sleep(for: config.requestPoll)
            await answerRequests()
            await deliverHostEvents()
            await clearOldSignals()
        }
    }

    /// Reads the request records of held exclusive leases and hands what
    /// it finds to the core, which stops the holder (force: SIGKILL;
    /// graceful: asked first); once it is gone its leases are given up, so
    /// the requester can take them.
    ///
    /// The request records are read when a host in the lockspace has set
    /// this host's bit (every second, one read of the slots of hosts in
    /// use), and every 2N regardless (a requester that cannot signal: `direct
    /// request`, a host the view does not cover), so idle traffic does not
    /// grow by a read per held lease per second.
    func answerRequests() async {
        let due = await lockspacesToPollForRequests()
        for (pid, held) in core.leasesToWatchForRequests where due.contains(held.resource.lockspace) {
            guard let resource = try? await self.resource(held.resource),
                  let request = try? await PaxosLease.pendingRequest(resource, held: held) else { continue }
            let directives = core.requestSeen(for: held, heldBy: pid, force: request.forceMode == .force, lver: request.lver, at: context.clock.now())
            if !directives.isEmpty { counters.requestsSeen += 1 }
            await carryOut(directives)
        }
    }

    /// The lockspaces whose held leases' request records should be read now:
    /// signalled, or due for the every-2N poll.
    func lockspacesToPollForRequests() async -> Set<LeaseName> {
        await onRenewalThread { await lockspacesToPollForRequestsHere() }
    }

    private func lockspacesToPollForRequestsHere() async -> Set<LeaseName> {
        var due: Set<LeaseName> = []
        let watched = core.leasesToWatchForRequests.map(\.1)
        let holding = Set(watched.map(\.resource.lockspace))
        for name in holding {
            guard let joined = lockspaces[name], let host = await joined.lockspace.localHost else { continue }
            let now = context.clock.now()
            let every = joined.lockspace.timeouts.renewalInterval
            if now >= nextFullRequestPoll[name, default: now] {
                nextFullRequestPoll[name] = now + every
                due.insert(name)
                continue
            }
            let widest = watched.filter { $0.resource.lockspace == name }.compactMap { resources[Self.cacheable($0.resource).description]?.numHosts }.max() ?? 1
            // A failed read counts as a signal: better one poll too many than a request missed.
            if (try? await joined.lockspace.observer.isSignalled(host.id, hostsUpTo: widest, refreshEvery: every)) ?? true {
                log.debug("lockspace \(name): another host signalled this one; reading the request records of its leases")
                due.insert(name)
            }
            // The same read shows whether this host's clock stood still
            // (a paused VM): its holders then die now, not at the next renewal.
            if let lost = await joined.lockspace.lookAtPeers(await joined.lockspace.observer.takeRecentReads()) {
                await fenceLost(joined, lost)
            }
        }
        return due
    }

    /// Bits this host set to signal a request are cleared after 6N (as
    /// sanlock does): by then the holder has answered or never will.
    func clearOldSignals() async {
        await onRenewalThread { await clearOldSignalsHere() }
    }

    private func clearOldSignalsHere() async {
        let now = context.clock.now()
        for (name, since) in signalledAt {
            guard let joined = lockspaces[name] else { signalledAt[name] = nil; continue }
            if now >= since + joined.lockspace.timeouts.renewalWarning {
                await joined.lockspace.clearSignals()
                signalledAt[name] = nil
            }
        }
    }

    // MARK: Status and shutdown

    func status() async -> String {
        await onRenewalThread { await statusHere() }
    }

    private func statusHere() async -> String {
        var spaces: [[String: Any]] = []
        for (name, joined) in lockspaces.sorted(by: { $0.key.description < $1.key.description }) {
            let host = await joined.lockspace.localHost
            let valid = await joined.lockspace.isValid(at: context.clock.now())
            let renewals = await joined.lockspace.renewals
            let failed = await joined.lockspace.failedRenewals
            let worst = await joined.lockspace.worstRenewalGap
            // The renewal handle does nothing but renew (and set request bits):
            // its counters are the renewal traffic.
            let io = (joined.renewalDevice as? any MeasuredBlockDevice)?.statistics ?? IOStatistics()
            let now = context.clock.now()
            let lastGood = await joined.lockspace.hold?.lastRenewalStart
            let lastAttempt = await joined.lockspace.lastRenewalAttempt
            let recent = await joined.lockspace.renewalHistory.suffix(Self.statusRecentRenewals).map { r -> [String: Any] in
                ["timestamp": Int(r.timestamp.rawValue), "read_ms": Int(RenewalRecord.milliseconds(r.readTime)),
                 "write_ms": Int(RenewalRecord.milliseconds(r.writeTime)), "timeouts_after": r.timeoutsAfter, "errors_after": r.errorsAfter]
            }
            spaces.append(["name": name.description, "host_id": Int(joined.spec.hostID.rawValue),
                           "last_renewal_age_ms": lastGood.map { Int((now - $0).nanosecondsClamped / 1_000_000) } ?? -1,
                           "last_attempt_age_ms": lastAttempt.map { Int((now - $0).nanosecondsClamped / 1_000_000) } ?? -1,
                           "recent_renewals": recent,
                           "generation": Int(host?.generation.rawValue ?? 0), "valid": valid, "renewals": renewals,
                           "failed_renewals": failed, "worst_renewal_gap_ms": Int(worst.nanosecondsClamped / 1_000_000),
                           "path": joined.spec.disk.path, "offset": Int(joined.spec.disk.offset),
                           "renewal_io": ["reads": Int(io.reads), "writes": Int(io.writes),
                                          "bytes_read": Int(io.bytesRead), "bytes_written": Int(io.bytesWritten)],
                           "participant_view_reads": await joined.lockspace.observer.viewReads])
        }
        let all = core.leases.sorted { $0.key < $1.key }.flatMap { pid, held in
            held.values.sorted { $0.resource.name.description < $1.resource.name.description }.map { l -> [String: Any] in
                ["pid": Int(pid.rawValue), "resource": l.stateString, "lver": Int(l.lver.rawValue), "shared": l.shared,
                 "held_ms": heldSince[Self.heldKey(pid, l)].map { Int((context.clock.now() - $0).nanosecondsClamped / 1_000_000) } ?? -1]
            }
        }
        // The reply is one protocol field: list leases while they fit, and count them all.
        var leases: [[String: Any]] = []
        var budget = Self.statusLeaseBytes
        for lease in all {
            let size = (lease["resource"] as? String ?? "").utf8.count + 64
            guard size <= budget else { break }
            budget -= size
            leases.append(lease)
        }
        let object: [String: Any] = ["host_name": config.hostName, "lockspaces": spaces, "leases": leases,
                                     "lease_count": all.count, "leases_omitted": all.count - leases.count,
                                     "orphans": core.orphans.values.map(\.stateString).sorted(),
                                     "resident_kib": Self.residentKiB() ?? 0,
                                     "joining": core.joining.keys.map(\.description).sorted(),
                                     "fencing": core.fencedProcesses.map { Int($0.rawValue) },
                                     "watchdog_pet_failures": petFailures,
                                     "open_devices": devices.count,
                                     "memory_locked_kib": Starvation.lockedKiB() ?? 0,
                                     "oom_score_adj": Starvation.oomScoreAdjustment() ?? 0,
                                     "realtime": renewalThread.isRealtime,
                                     "shutting_down": shuttingDown]
        return JSON.text(object)
    }

    /// How many of each lockspace's latest renewals status lists.
    static let statusRecentRenewals = 10

    /// The key of a process's lease in ``heldSince``.
    static func heldKey(_ pid: ProcessID, _ lease: HeldLease) -> String { "\(pid):\(lease.resource.lockspace):\(lease.resource.name)" }

    /// Room for the lease list in a status reply: the rest of the largest
    /// field (64 KiB) is left to the lockspaces and the other keys.
    static let statusLeaseBytes = 48 * 1024

    /// This process's resident set size (VmRSS), for status and the bench.
    static func residentKiB() -> Int? { ProcFiles.selfStatusKiB("VmRSS") }

    /// Stops serving: refused while leases are held unless forced; forced,
    /// the holders are stopped first and their leases given up once they
    /// are gone. Then lockspaces are left.
    public func shutdown(force: Bool) async throws {
        observeLockspaces()
        let directives = try core.shutdown(force: force, at: context.clock.now())
        shuttingDown = true
        await carryOut(directives)
        // The fence loop reports their exits to the core, which gives their leases up.
        while !core.holders.isEmpty {
            try? await context.clock.sleep(for: Timeouts.fencePoll)
        }
        for name in Array(lockspaces.keys) { try? await removeLockspace(name.description) }
        for task in background { task.cancel() }
        for open in devices.values { await open.device.close() }
        devices = [:]
        watchdog?.closeCleanly()
        log.info("shut down")
    }
}
