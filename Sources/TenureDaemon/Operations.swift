import CTenureSys
import Foundation
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
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
        let opened = try openBlockDevice(path: path, engine: .aio, ioTimeout: config.timeouts.ioTimeout)
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
        log.debug("closed \(path): no lease, lockspace or operation uses it")
    }

    /// A held lease keeps a reference to each of its disks' handles while
    /// it is in the table; these two take and drop it.
    func retainDevices(of lease: ProcessLease) throws {
        for disk in lease.lease.resource.disks { _ = try retainDevice(disk.path) }
    }

    func releaseDevices(of lease: ProcessLease) async {
        for disk in lease.lease.resource.disks { await releaseDevice(disk.path) }
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
        // Renewal has a handle, an io_context and a reaper of its own.
        let renewalDevice = try openBlockDevice(path: spec.disk.path, engine: .aio, ioTimeout: .seconds(Int64(io.seconds)))
        var clientPath: String?
        do {
            let clientDevice = try retainDevice(spec.disk.path)
            clientPath = spec.disk.path
            let observer = try await LockspaceObserver.open(spec, device: clientDevice, context: context)
            let lockspace = try Lockspace(spec: spec, renewalDevice: renewalDevice, observer: observer, ioTimeout: io, context: context)
            log.info("joining lockspace \(spec.name) as host \(spec.hostID) (io_timeout \(io.seconds)s)")
            let host = try await lockspace.join(name: name)
            let joined = JoinedLockspace(spec: spec, lockspace: lockspace, renewalDevice: renewalDevice, clientDevice: clientDevice)
            joined.tasks = [Task { await lockspace.runRenewals() }, Task { await self.fence(joined) }]
            lockspaces[spec.name] = joined
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
        let key = try LeaseName(name, what: "lockspace name")
        guard let joined = lockspaces[key] else {
            throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.")
        }
        let users = holders.filter { $0.value.values.contains { $0.lockspace == key } }.map(\.key).sorted()
        guard users.isEmpty else {
            throw TenureError(.leaseInUse, "Processes \(users.map(String.init).joined(separator: ", ")) hold leases in lockspace \(name).",
                              remedy: "Release them first.")
        }
        // A ballot in flight must end before the host id is released: other
        // hosts' participant views skip a free slot (docs/timeouts.md).
        let inFlight = acquiring.filter { $0.hasPrefix("\(key):") }.sorted()
        guard inFlight.isEmpty else {
            throw TenureError(.leaseInUse, "Lockspace \(name) has acquires in progress (\(inFlight.joined(separator: ", "))).",
                              remedy: "Retry once they finish, and release what they acquired first.")
        }
        lockspaces[key] = nil
        for task in joined.tasks { task.cancel() }
        try? await joined.lockspace.leave()
        await joined.renewalDevice.close()
        await releaseDevice(joined.spec.disk.path)
        log.info("left lockspace \(name)")
    }

    func joined(_ name: LeaseName) async throws -> (JoinedLockspace, LocalHost) {
        guard let joined = lockspaces[name] else {
            throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.",
                              remedy: "Join it first: `tenure client add-lockspace -s \(name):HOST_ID:PATH:OFFSET`.")
        }
        guard await joined.lockspace.isValid(at: context.clock.now()), let host = await joined.lockspace.localHost else {
            throw TenureError(.lockspaceLost, "Lockspace \(name) is lost on this host; its leases cannot be used.",
                              remedy: "Check the storage, then remove and add the lockspace again.")
        }
        return (joined, host)
    }

    // MARK: Leases

    func resource(_ spec: ResourceSpec) async throws -> PaxosResource {
        var key = spec
        key.lver = nil
        key.shared = false
        if let open = resources[key.description] { return open }
        guard spec.disks.allSatisfy({ devices[$0.path] != nil }) else {
            preconditionFailure("resource(\(spec)) called without its devices retained")
        }
        let opened = try await PaxosResource.open(key, devices: spec.disks.map { devices[$0.path]!.device })
        resources[key.description] = opened
        return opened
    }

    /// Acquires every resource for `pid`, all or nothing; returns their state strings.
    func acquire(_ texts: [String], for pid: Int32, shared: Bool) async throws -> [String] {
        guard !texts.isEmpty, texts.count <= Wire.maxResourcesPerRequest else {
            throw TenureError(.invalidArgument, "An acquire names \(texts.count) resources; it takes 1...\(Wire.maxResourcesPerRequest).")
        }
        let leaseCount = holders.values.reduce(0) { $0 + $1.count }
        guard leaseCount + texts.count <= config.maxLeases else {
            throw TenureError(.limitReached, "The daemon holds \(leaseCount) leases; its limit is \(config.maxLeases).")
        }
        let specs = try texts.map { try ResourceSpec(parsing: $0) }
        var taken: [ProcessLease] = []
        do {
            for spec in specs {
                let held = try await withDevices(of: spec) { try await acquireOne(spec, for: pid, shared: shared) }
                try retainDevices(of: held)
                taken.append(held)
                holders[pid, default: [:]][held.name] = held
                log.info("process \(pid) acquired \(held.lease)")
            }
        } catch {
            for held in taken {
                holders[pid]?[held.name] = nil
                try? await PaxosLease.release(held.resource, held: held.lease, context: context)
                await releaseDevices(of: held)
            }
            if holders[pid]?.isEmpty == true { holders[pid] = nil }
            throw error
        }
        return taken.map(\.lease.stateString)
    }

    /// One resource of an acquire: local arbitration, the ballot, and the
    /// check that the lockspace was still valid when it was won.
    func acquireOne(_ spec: ResourceSpec, for pid: Int32, shared: Bool) async throws -> ProcessLease {
        guard holders[pid]?[spec.name.description] == nil else {
            throw TenureError(.alreadyExists, "Process \(pid) holds \(spec.name) already.")
        }
        // This host's own processes: the disk cannot tell them apart (the
        // lease names the host, not the process), so the daemon must. A lease
        // another local process holds, or is acquiring, is refused here;
        // sharing is allowed between local sharers.
        let key = "\(spec.lockspace):\(spec.name)"
        if let other = localHolder(of: spec, except: pid) {
            guard other.shared && (shared || spec.shared) else {
                throw TenureError(.heldByLiveHost, "\(spec.name) is held by process \(other.pid) on this host.",
                                  remedy: "Wait for it to release the lease, or ask it to with `request`.")
            }
            // This host shares the lease already: the disk has one shared mark
            // per host, and it is there. Another ballot would write an
            // exclusive mode block while it runs, hiding the mark from other
            // hosts' exclusive acquires while our sharer still holds.
            if let shared = holders[other.pid]?[spec.name.description], shared.lockspace == spec.lockspace,
               spec.lver == nil || spec.lver == shared.lease.lver {
                _ = try await self.joined(spec.lockspace)
                return shared
            }
        }
        guard !acquiring.contains(key) else {
            throw TenureError(.heldByLiveHost, "\(spec.name) is being acquired by another process on this host.",
                              remedy: "Retry in a moment.")
        }
        acquiring.insert(key)
        defer { acquiring.remove(key) }
        let (joined, host) = try await self.joined(spec.lockspace)
        var resource = try await self.resource(spec)
        // Ballots read only the dblocks of hosts that can take part.
        resource.participants = joined.lockspace.observer
        try resource.validate(host: host.id)
        let lease = try await PaxosLease.acquire(resource, host: host, oracle: joined.lockspace.observer,
                                                 options: AcquireOptions(shared: shared || spec.shared, requiredLver: spec.lver, noWait: true),
                                                 context: context)
        // A lease won after the lockspace expired is never handed out.
        guard await joined.lockspace.isValid(at: context.clock.now()) else {
            try? await PaxosLease.release(resource, held: lease, context: context)
            throw TenureError(.lockspaceLost, "Lockspace \(spec.lockspace) expired while \(spec.name) was acquired.")
        }
        return ProcessLease(lockspace: spec.lockspace, resource: resource, lease: lease)
    }

    /// A local process other than `pid` holding `spec`'s lease, if any.
    func localHolder(of spec: ResourceSpec, except pid: Int32) -> (pid: Int32, shared: Bool)? {
        for (holder, leases) in holders where holder != pid {
            if let lease = leases[spec.name.description], lease.lockspace == spec.lockspace {
                return (holder, lease.lease.shared)
            }
        }
        return nil
    }

    /// Releases `names` (or "*" for all) of `pid`.
    func release(_ names: [String], of pid: Int32) async throws {
        guard let held = holders[pid] else {
            throw TenureError(.notOwner, "Process \(pid) holds no leases.")
        }
        let chosen = names.contains("*") || names.isEmpty ? Array(held.keys) : names
        for name in chosen where held[name] == nil {
            throw TenureError(.notOwner, "Process \(pid) does not hold \(name).", remedy: "`tenure client inquire` lists what it holds.")
        }
        var firstError: Error?
        for name in chosen.sorted() {
            guard let lease = holders[pid]?.removeValue(forKey: name) else { continue }
            do {
                try await releaseOnDisk(lease, of: pid)
            } catch {
                log.warning("releasing \(lease.lease) of process \(pid) failed: \(error)")
                firstError = firstError ?? error
            }
            await releaseDevices(of: lease)
        }
        if holders[pid]?.isEmpty == true { holders[pid] = nil }
        if let firstError { throw firstError }
    }

    /// Gives up `lease` on disk, unless that would be wrong: another local
    /// process still shares it (the disk has one shared mark per host), or
    /// its lockspace is lost — then nothing is written, since another host
    /// may own the lease by now and a late write of ours could undo its commit.
    func releaseOnDisk(_ lease: ProcessLease, of pid: Int32) async throws {
        if lease.lease.shared, localHolder(of: lease.lease.resource, except: pid) != nil {
            log.info("process \(pid) released \(lease.lease); other local sharers keep it")
            return
        }
        guard let joined = lockspaces[lease.lockspace], await joined.lockspace.isValid(at: context.clock.now()) else {
            log.warning("process \(pid) gave up \(lease.lease) of a lost lockspace; nothing is written to the lease")
            return
        }
        try await PaxosLease.release(lease.resource, held: lease.lease, context: context)
        log.info("process \(pid) released \(lease.lease)")
    }

    func releaseAll(of pid: Int32) async {
        try? await release(["*"], of: pid)
    }

    func inquire(_ pid: Int32) -> String {
        (holders[pid] ?? [:]).values.map(\.lease.stateString).sorted().joined(separator: " ")
    }

    /// Writes a request for `text`'s lease (force: its holder is killed).
    /// The lockspace must be joined here: nothing is opened for one that is not.
    func requestLease(_ text: String, force: Bool) async throws {
        let spec = try ResourceSpec(parsing: text)
        guard let joined = lockspaces[spec.lockspace] else {
            throw TenureError(.noLockspace, "Lockspace \(spec.lockspace) is not joined on this host; a request goes through a joined lockspace.",
                              remedy: "Join it first (`tenure client add-lockspace`), or write the request with `tenure direct request`.")
        }
        let (leader, wanted) = try await withDevices(of: spec) {
            try await PaxosLease.request(try await self.resource(spec), lver: spec.lver, mode: force ? .force : .graceful, context: context)
        }
        log.info("requested \(spec.name) at lver \(wanted) (\(force ? "force" : "graceful"))")
        // Tell the owner to look now: our bit for it in our delta lease.
        if let host = await joined.lockspace.localHost, !leader.timestamp.isFree, !leader.ownerID.isNone, leader.ownerID != host.id {
            do {
                try await joined.lockspace.signal(leader.ownerID)
                signalledAt[spec.lockspace] = context.clock.now()
            } catch {
                log.notice("could not signal host \(leader.ownerID) of the request (it will see it within 2N): \(error)")
            }
        }
    }

    // MARK: Fencing

    /// Waits for the lockspace's expiry; if it is lost then, stops every
    /// process holding a lease in it. The leases stay in the table — so the
    /// watchdog stays unpetted — until each holder is gone (``stop``).
    func fence(_ joined: JoinedLockspace) async {
        while !Task.isCancelled {
            guard let expiry = joined.lockspace.publishedExpiry else { return }
            // Wake at the expiry, or sooner: a renewal that finds our slot
            // rewritten (another join of our host id) loses the lockspace at once.
            do { try await context.clock.sleep(until: min(expiry, context.clock.now() + Timeouts.lossCheck)) } catch { return }
            guard let lost = await joined.lockspace.checkExpiry() else { continue }
            log.critical("lockspace \(joined.spec.name) lost: \(lost.message) Killing its lease holders.")
            let victims = holders.filter { $0.value.values.contains { $0.lockspace == joined.spec.name } }.map(\.key)
            let names = Set(holders.values.flatMap { $0.values.filter { $0.lockspace == joined.spec.name }.map(\.name) })
            await stop(victims, graceful: true, why: "lockspace \(joined.spec.name) lost", for: names)
            for pid in victims {
                for (name, lease) in holders[pid] ?? [:] where lease.lockspace == joined.spec.name {
                    holders[pid]?[name] = nil
                    await releaseDevices(of: lease)
                }
                if holders[pid]?.isEmpty == true { holders[pid] = nil }
            }
            log.notice("every holder of a lease in lost lockspace \(joined.spec.name) is gone")
            return
        }
    }

    /// Stops `pids`, the holders of `leases` (nil: of everything), and
    /// returns only once each is gone or has given every one of them up.
    ///
    /// The fencing rule: a lease is given up only when its holders are gone,
    /// or the host is reset. So this never gives up: it asks (the killpath,
    /// or SIGTERM) and waits the grace, then escalates — SIGKILL, or SIGTERM
    /// again for a process that allows only SIGTERM — every
    /// ``Timeouts/fenceResignal`` until the process is gone. Meanwhile its
    /// leases stay held; for a lost lockspace that keeps the watchdog
    /// unpetted, so the host is reset before another host may take them.
    ///
    /// A process that gave all of `leases` up meanwhile — a killpath that
    /// paused a VM, whose manager then released its leases — is spared: it
    /// no longer holds them.
    func stop(_ pids: [Int32], graceful: Bool, why: String, for leases: Set<String>? = nil) async {
        guard !pids.isEmpty else { return }
        for pid in pids { fencing[pid, default: 0] += 1 }
        defer {
            for pid in pids {
                fencing[pid, default: 1] -= 1
                if fencing[pid] == 0 { fencing[pid] = nil }
            }
        }
        func remaining() -> [Int32] {
            pids.filter { pid in isRunning(pid) && (leases.map { l in (holders[pid] ?? [:]).keys.contains { l.contains($0) } } ?? true) }
        }
        let askFirst = pids.filter { pid in
            let control = processes[pid]?.control ?? ProcessControl()
            return control.sigtermOnly || (graceful && !control.sigkillOnly)
        }
        if !askFirst.isEmpty {
            for pid in askFirst { stopGently(pid, why: why) }
            // A killpath (pausing a VM through libvirt, say) gets at least W/2
            // to act, still within the W the fencing argument allows.
            let usesKillpath = askFirst.contains { processes[$0]?.control.killpath != nil }
            let grace = usesKillpath ? max(config.effectiveKillGrace, config.watchdogFire / 2) : config.effectiveKillGrace
            let deadline = context.clock.now() + grace
            while context.clock.now() < deadline, !remaining().isEmpty {
                try? await context.clock.sleep(for: Timeouts.fencePoll)
            }
        }
        var lastSignal: MonotonicInstant?
        var lastWarning: MonotonicInstant?
        let started = context.clock.now()
        while true {
            let left = remaining()
            if left.isEmpty { return }
            let now = context.clock.now()
            if lastSignal.map({ now >= $0 + Timeouts.fenceResignal }) ?? true {
                lastSignal = now
                for pid in left {
                    let onlyTerm = processes[pid]?.control.sigtermOnly == true
                    signal(pid, onlyTerm ? SIGTERM : SIGKILL)
                }
            }
            if lastWarning.map({ now >= $0 + Timeouts.fenceWarningEvery }) ?? true {
                lastWarning = now
                let waited = now - started
                log.critical("fencing (\(why)): processes \(left) still hold their leases \(waited) after SIGKILL (or SIGTERM where restricted); the leases stay held, and the watchdog resets this host if a lockspace is lost")
            }
            try? await context.clock.sleep(for: Timeouts.fencePoll)
        }
    }

    /// Whether `pid` still runs: by its pidfd when the daemon tracks it, so
    /// a reused pid never counts as the holder.
    func isRunning(_ pid: Int32) -> Bool {
        if let tracked = processes[pid] { return !tracked.exited }
        return Self.alive(pid)
    }

    /// Signals `pid` through its pidfd (never a later process with its pid).
    func signal(_ pid: Int32, _ signal: Int32) {
        guard let tracked = processes[pid] else {
            log.error("process \(pid) holds leases but is not tracked by a pidfd; not signalling a pid that may have been reused")
            return
        }
        tracked.signal(signal)
    }

    /// The killpath if the process set one (with its pid in TENURE_KILL_PID),
    /// run with that process's own user and group, else SIGTERM.
    func stopGently(_ pid: Int32, why: String) {
        guard let tracked = processes[pid], let killpath = tracked.control.killpath else {
            signal(pid, SIGTERM)
            log.warning("sent SIGTERM to process \(pid) (\(why)); SIGKILL in \(config.effectiveKillGrace)")
            return
        }
        let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "\(Wire.killPidEnvironment)=\(pid)"]
        let child = spawn(killpath, environment: environment, uid: tracked.uid, gid: tracked.gid)
        if child > 0 {
            log.warning("ran killpath \(killpath.joined(separator: " ")) as user \(tracked.uid) for process \(pid) (\(why)); SIGKILL in \(config.effectiveKillGrace)")
            background.append(Task.detached { var status: Int32 = 0; _ = waitpid(child, &status, 0) })
        } else {
            log.error("killpath \(killpath[0]) for process \(pid) failed to start (\(String(cString: strerror(errno)))); sending SIGTERM")
            signal(pid, SIGTERM)
        }
    }

    /// fork + exec of `argv` as `uid`/`gid` (CTenureSys does the child's side in C).
    func spawn(_ argv: [String], environment: [String], uid: UInt32, gid: UInt32) -> Int32 {
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        return tenure_spawn_as(argv[0], &cArgs, &cEnv, uid, gid)
    }

    /// Converts `name` held by `pid` to shared or exclusive.
    func convert(_ name: String, of pid: Int32, shared: Bool) async throws -> String {
        guard var held = holders[pid]?[name] else {
            throw TenureError(.notOwner, "Process \(pid) does not hold \(name).")
        }
        if !shared, let other = localHolder(of: held.lease.resource, except: pid) {
            throw TenureError(.leaseInUse, "\(name) is shared with process \(other.pid) on this host.",
                              remedy: "Wait until every other sharer releases it.")
        }
        if shared, localHolder(of: held.lease.resource, except: pid) != nil {
            // Only a holder alone can be exclusive; nothing to convert.
            return held.lease.stateString
        }
        let (joined, _) = try await self.joined(held.lockspace)
        held.lease = shared
            ? try await PaxosLease.convertToShared(held.resource, held: held.lease, context: context)
            : try await PaxosLease.convertToExclusive(held.resource, held: held.lease, oracle: joined.lockspace.observer, context: context)
        holders[pid]?[name] = held
        log.info("process \(pid) converted \(held.lease)")
        return held.lease.stateString
    }

    /// Every host slot in use, with its state as this host sees it.
    func hostStatus(_ name: String) async throws -> String {
        let key = try LeaseName(name, what: "lockspace name")
        guard let joined = lockspaces[key] else { throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.") }
        let observer = joined.lockspace.observer
        let slots = try await observer.observeRange(upTo: HostID(UInt64(observer.geometry.maxHosts)))
        var hosts: [[String: Any]] = []
        for (id, record, _) in slots where !record.timestamp.isFree || record.ownerGeneration.rawValue > 0 {
            let state = await observer.state(of: id)
            hosts.append(["host_id": Int(id.rawValue), "generation": Int(record.ownerGeneration.rawValue), "name": record.resourceName.description,
                          "timestamp": Int(record.timestamp.rawValue), "io_timeout": Int(record.ioTimeout.seconds),
                          "state": id == joined.spec.hostID ? "self" : (state?.description ?? "unknown")])
        }
        let data = try JSONSerialization.data(withJSONObject: ["lockspace": name, "hosts": hosts], options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Whether `pid` still runs (a zombie counts as gone: it holds nothing).
    /// Only for a process the daemon does not track by a pidfd.
    static func alive(_ pid: Int32) -> Bool {
        guard Glibc.kill(pid, 0) == 0 else { return errno == EPERM }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }

    // MARK: The poll loop

    /// Every `requestPoll`: answer requests for held leases, and release
    /// the leases of processes that exited without a connection.
    func pollLoop() async {
        while !Task.isCancelled {
            try? await context.clock.sleep(for: config.requestPoll)
            await answerRequests()
            await clearOldSignals()
            for pid in holders.keys where connections[pid] == nil && !isRunning(pid) && fencing[pid] == nil {
                log.info("process \(pid) exited; releasing its leases")
                await releaseAll(of: pid)
                if holders[pid] == nil { processes[pid] = nil }
            }
        }
    }

    /// A request for a version after the one held: force kills the holder
    /// (SIGKILL), graceful asks it (SIGTERM, then SIGKILL after the grace);
    /// once it is gone the lease is released so the requester can take it.
    /// Each holder is stopped in a task of its own, so one that will not
    /// die does not hold up the answers to other requests.
    ///
    /// The request records of held leases are read when a host in the
    /// lockspace has set this host's bit (every second, one read of the
    /// slots of hosts in use), and every 2N regardless (a requester that
    /// cannot signal: `direct request`, a host the view does not cover), so
    /// idle traffic does not grow by a read per held lease per second.
    func answerRequests() async {
        let due = await lockspacesToPollForRequests()
        for (pid, leases) in holders where !answering.contains(pid) {
            for (name, held) in leases where !held.lease.shared && due.contains(held.lockspace) {
                guard let request = try? await PaxosLease.pendingRequest(held.resource, held: held.lease),
                      holders[pid]?[name] != nil, !answering.contains(pid) else { continue }
                let force = request.forceMode == .force
                log.warning("request for \(held.lease) at lver \(request.lver) (\(force ? "force" : "graceful")): stopping process \(pid)")
                answering.insert(pid)
                background.append(Task {
                    await self.stop([pid], graceful: !force, why: "request for \(name)", for: [name])
                    await self.releaseIfStillHeld(name, of: pid)
                    await self.answered(pid)
                })
            }
        }
    }

    func answered(_ pid: Int32) { answering.remove(pid) }

    /// After a request's holder is gone: give the lease up if nobody has.
    func releaseIfStillHeld(_ name: String, of pid: Int32) async {
        guard holders[pid]?[name] != nil else { return }
        try? await release([name], of: pid)
    }

    /// The lockspaces whose held leases' request records should be read now:
    /// signalled, or due for the every-2N poll.
    func lockspacesToPollForRequests() async -> Set<LeaseName> {
        var due: Set<LeaseName> = []
        let holding = Set(holders.values.flatMap { $0.values.filter { !$0.lease.shared }.map(\.lockspace) })
        for name in holding {
            guard let joined = lockspaces[name], let host = await joined.lockspace.localHost else { continue }
            let now = context.clock.now()
            let every = joined.lockspace.timeouts.renewalInterval
            if now >= nextFullRequestPoll[name, default: now] {
                nextFullRequestPoll[name] = now + every
                due.insert(name)
                continue
            }
            let widest = holders.values.flatMap { $0.values.filter { $0.lockspace == name }.map(\.resource.numHosts) }.max() ?? 1
            // A failed read counts as a signal: better one poll too many than a request missed.
            if (try? await joined.lockspace.observer.isSignalled(host.id, hostsUpTo: widest, refreshEvery: every)) ?? true {
                log.debug("lockspace \(name): another host signalled this one; reading the request records of its leases")
                due.insert(name)
            }
        }
        return due
    }

    /// Bits this host set to signal a request are cleared after 6N (as
    /// sanlock does): by then the holder has answered or never will.
    func clearOldSignals() async {
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
            spaces.append(["name": name.description, "host_id": Int(joined.spec.hostID.rawValue),
                           "generation": Int(host?.generation.rawValue ?? 0), "valid": valid, "renewals": renewals,
                           "failed_renewals": failed, "worst_renewal_gap_ms": Int(worst.nanosecondsClamped / 1_000_000),
                           "path": joined.spec.disk.path, "offset": Int(joined.spec.disk.offset),
                           "renewal_io": ["reads": Int(io.reads), "writes": Int(io.writes),
                                          "bytes_read": Int(io.bytesRead), "bytes_written": Int(io.bytesWritten)],
                           "participant_view_reads": await joined.lockspace.observer.viewReads])
        }
        let all = holders.sorted { $0.key < $1.key }.flatMap { pid, held in
            held.values.sorted { $0.name < $1.name }.map { l -> [String: Any] in
                ["pid": Int(pid), "resource": l.lease.stateString, "lver": Int(l.lease.lver.rawValue), "shared": l.lease.shared]
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
                                     "resident_kib": Self.residentKiB() ?? 0,
                                     "joining": joining.map(\.description).sorted(),
                                     "fencing": fencing.keys.sorted().map(Int.init),
                                     "open_devices": devices.count,
                                     "shutting_down": shuttingDown]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Room for the lease list in a status reply: the rest of the largest
    /// field (64 KiB) is left to the lockspaces and the other keys.
    static let statusLeaseBytes = 48 * 1024

    /// This process's resident set size (VmRSS), for status and the bench.
    static func residentKiB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    /// Stops serving: refused while leases are held unless forced; forced,
    /// the holders are killed first. Then leases are released and lockspaces left.
    public func shutdown(force: Bool) async throws {
        let pids = Array(holders.keys)
        if !pids.isEmpty && !force {
            throw TenureError(.leaseInUse, "Processes \(pids.sorted().map(String.init).joined(separator: ", ")) hold leases.",
                              remedy: "Stop them first, or shut down with force (their holders are killed).")
        }
        shuttingDown = true
        await stop(pids, graceful: true, why: "daemon shutdown")
        for pid in pids { await releaseAll(of: pid) }
        for name in Array(lockspaces.keys) { try? await removeLockspace(name.description) }
        for task in background { task.cancel() }
        for open in devices.values { await open.device.close() }
        devices = [:]
        watchdog?.closeCleanly()
        log.info("shut down")
    }
}
