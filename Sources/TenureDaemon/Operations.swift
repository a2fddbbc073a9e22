import Foundation
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
import TenureIO

extension Daemon {
    // MARK: Devices

    /// The shared client handle for `path` (resources and observers), opened once.
    func device(_ path: String) throws -> any BlockDevice {
        if let open = devices[path] { return open }
        let opened = try openBlockDevice(path: path, engine: .aio, ioTimeout: config.timeouts.ioTimeout)
        devices[path] = opened
        return opened
    }

    // MARK: Lockspaces

    /// Joins `text` ("NAME:HOST_ID:PATH:OFFSET") and starts renewing it.
    func addLockspace(_ text: String, hostName: String, ioTimeout: Int) async throws -> String {
        let spec = try LockspaceSpec(parsing: text)
        guard !spec.hostID.isNone else {
            throw TenureError(.invalidArgument, "\(text) names host id 0.", remedy: "Give this host's id (1 or more) in the lockspace string.")
        }
        guard lockspaces[spec.name] == nil else {
            throw TenureError(.alreadyExists, "Lockspace \(spec.name) is joined already.", remedy: "Remove it first to join with another host id.")
        }
        let io = ioTimeout > 0 ? IOTimeout(seconds: UInt16(clamping: ioTimeout)) : config.ioTimeout
        let name = try LeaseName(hostName.isEmpty ? config.hostName : hostName, what: "host name")
        // Renewal has a handle, an io_context and a reaper of its own.
        let renewalDevice = try openBlockDevice(path: spec.disk.path, engine: .aio, ioTimeout: .seconds(Int64(io.seconds)))
        do {
            let clientDevice = try device(spec.disk.path)
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
        let opened = try await PaxosResource.open(key, devices: try spec.disks.map { try device($0.path) })
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
        var taken: [ProcessLease] = []
        do {
            for text in texts {
                let spec = try ResourceSpec(parsing: text)
                guard holders[pid]?[spec.name.description] == nil else {
                    throw TenureError(.alreadyExists, "Process \(pid) holds \(spec.name) already.")
                }
                // This host's own processes: the disk cannot tell them apart (the
                // lease names the host, not the process), so the daemon must. A lease
                // another local process holds, or is acquiring, is refused here;
                // sharing is allowed between local sharers.
                let key = "\(spec.lockspace):\(spec.name)"
                if let other = localHolder(of: spec, except: pid), !(other.shared && (shared || spec.shared)) {
                    throw TenureError(.heldByLiveHost, "\(spec.name) is held by process \(other.pid) on this host.",
                                      remedy: "Wait for it to release the lease, or ask it to with `request`.")
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
                let held = ProcessLease(lockspace: spec.lockspace, resource: resource, lease: lease)
                taken.append(held)
                holders[pid, default: [:]][held.name] = held
                log.info("process \(pid) acquired \(lease)")
            }
        } catch {
            for held in taken {
                holders[pid]?[held.name] = nil
                try? await PaxosLease.release(held.resource, held: held.lease, context: context)
            }
            if holders[pid]?.isEmpty == true { holders[pid] = nil }
            throw error
        }
        return taken.map(\.lease.stateString)
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
            // The disk has one shared mark per host: it stays while another
            // local process still shares the lease.
            if lease.lease.shared, localHolder(of: lease.lease.resource, except: pid) != nil {
                log.info("process \(pid) released \(lease.lease); other local sharers keep it")
                continue
            }
            do {
                try await PaxosLease.release(lease.resource, held: lease.lease, context: context)
                log.info("process \(pid) released \(lease.lease)")
            } catch {
                log.warning("releasing \(lease.lease) of process \(pid) failed: \(error)")
                firstError = firstError ?? error
            }
        }
        if holders[pid]?.isEmpty == true { holders[pid] = nil }
        if let firstError { throw firstError }
    }

    func releaseAll(of pid: Int32) async {
        try? await release(["*"], of: pid)
    }

    func inquire(_ pid: Int32) -> String {
        (holders[pid] ?? [:]).values.map(\.lease.stateString).sorted().joined(separator: " ")
    }

    /// Writes a request for `text`'s lease (force: its holder is killed).
    func requestLease(_ text: String, force: Bool) async throws {
        let spec = try ResourceSpec(parsing: text)
        let resource = try await self.resource(spec)
        let (leader, wanted) = try await PaxosLease.request(resource, lver: spec.lver, mode: force ? .force : .graceful, context: context)
        log.info("requested \(spec.name) at lver \(wanted) (\(force ? "force" : "graceful"))")
        // Tell the owner to look now: our bit for it in our delta lease.
        if let joined = lockspaces[spec.lockspace], let host = await joined.lockspace.localHost,
           !leader.timestamp.isFree, !leader.ownerID.isNone, leader.ownerID != host.id {
            do {
                try await joined.lockspace.signal(leader.ownerID)
                signalledAt[spec.lockspace] = context.clock.now()
            } catch {
                log.notice("could not signal host \(leader.ownerID) of the request (it will see it within 2N): \(error)")
            }
        }
    }

    // MARK: Fencing

    /// Waits for the lockspace's expiry; if it is lost then, kills every
    /// process holding a lease in it and gives the leases up.
    func fence(_ joined: JoinedLockspace) async {
        while !Task.isCancelled {
            guard let expiry = joined.lockspace.publishedExpiry else { return }
            do { try await context.clock.sleep(until: expiry) } catch { return }
            guard let lost = await joined.lockspace.checkExpiry() else { continue }
            log.critical("lockspace \(joined.spec.name) lost: \(lost.message) Killing its lease holders.")
            let victims = holders.filter { $0.value.values.contains { $0.lockspace == joined.spec.name } }.map(\.key)
            let names = Set(holders.values.flatMap { $0.values.filter { $0.lockspace == joined.spec.name }.map(\.name) })
            await kill(victims, graceful: true, why: "lockspace \(joined.spec.name) lost", for: names)
            for pid in victims {
                for (name, lease) in holders[pid] ?? [:] where lease.lockspace == joined.spec.name {
                    holders[pid]?[name] = nil
                }
                if holders[pid]?.isEmpty == true { holders[pid] = nil }
            }
            return
        }
    }

    /// SIGTERM (graceful) then SIGKILL after the grace, and waits until each
    /// process is gone (bounded: a process stuck in the kernel is left to the watchdog).
    ///
    /// `for`: the leases (by name) the stop is about. A process that gave all
    /// of them up meanwhile — a killpath that paused a VM, whose manager then
    /// released its leases — is spared SIGKILL: it no longer holds them.
    func kill(_ pids: [Int32], graceful: Bool, why: String, for leases: Set<String>? = nil) async {
        guard !pids.isEmpty else { return }
        func stillHolds(_ pid: Int32) -> Bool {
            guard let leases else { return true }
            return (holders[pid] ?? [:]).keys.contains { leases.contains($0) }
        }
        let gentle = pids.filter { controls[$0]?.sigkillOnly != true }
        if graceful && !gentle.isEmpty && (config.effectiveKillGrace > .zero || gentle.contains { controls[$0]?.killpath != nil }) {
            for pid in gentle { stopGently(pid, why: why) }
            // A killpath (pausing a VM through libvirt, say) gets at least W/2
            // to act, still within the W the fencing argument allows.
            let usesKillpath = gentle.contains { controls[$0]?.killpath != nil }
            let grace = usesKillpath ? max(config.effectiveKillGrace, config.watchdogFire / 2) : config.effectiveKillGrace
            let deadline = context.clock.now() + grace
            while context.clock.now() < deadline, pids.contains(where: { Self.alive($0) && stillHolds($0) }) {
                try? await context.clock.sleep(for: .milliseconds(50))
            }
        }
        // A process that allows only SIGTERM is left to the watchdog.
        let survivors = pids.filter { Self.alive($0) && stillHolds($0) && controls[$0]?.sigtermOnly != true }
        for pid in survivors { Glibc.kill(pid, SIGKILL) }
        if !survivors.isEmpty { log.warning("sent SIGKILL to \(survivors) (\(why))") }
        let deadline = context.clock.now() + .seconds(5)
        while context.clock.now() < deadline, pids.contains(where: { Self.alive($0) }) {
            try? await context.clock.sleep(for: .milliseconds(20))
        }
    }

    /// The killpath if the process set one (with its pid in TENURE_KILL_PID), else SIGTERM.
    func stopGently(_ pid: Int32, why: String) {
        guard let killpath = controls[pid]?.killpath else {
            Glibc.kill(pid, SIGTERM)
            log.warning("sent SIGTERM to process \(pid) (\(why)); SIGKILL in \(config.effectiveKillGrace)")
            return
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: killpath[0])
        process.arguments = Array(killpath.dropFirst())
        process.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", Wire.killPidEnvironment: String(pid)]
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
            log.warning("ran killpath \(killpath.joined(separator: " ")) for process \(pid) (\(why)); SIGKILL in \(config.effectiveKillGrace)")
        } catch {
            log.error("killpath \(killpath[0]) for process \(pid) failed to start (\(error)); sending SIGTERM")
            Glibc.kill(pid, SIGTERM)
        }
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
            for pid in holders.keys where connections[pid] == nil && !Self.alive(pid) {
                log.info("process \(pid) exited; releasing its leases")
                await releaseAll(of: pid)
            }
        }
    }

    /// A request for a version after the one held: force kills the holder
    /// (SIGKILL), graceful asks it (SIGTERM, then SIGKILL after the grace);
    /// then the lease is released so the requester can take it.
    ///
    /// The request records of held leases are read when a host in the
    /// lockspace has set this host's bit (every second, one read of the
    /// slots of hosts in use), and every 2N regardless (a requester that
    /// cannot signal: `direct request`, a host the view does not cover), so
    /// idle traffic does not grow by a read per held lease per second.
    func answerRequests() async {
        let due = await lockspacesToPollForRequests()
        for (pid, leases) in holders {
            for (name, held) in leases where !held.lease.shared && due.contains(held.lockspace) {
                guard let request = try? await PaxosLease.pendingRequest(held.resource, held: held.lease),
                      holders[pid]?[name] != nil else { continue }
                let force = request.forceMode == .force
                log.warning("request for \(held.lease) at lver \(request.lver) (\(force ? "force" : "graceful")): stopping process \(pid)")
                await kill([pid], graceful: !force, why: "request for \(name)", for: [name])
                if holders[pid]?[name] != nil {
                    try? await release([name], of: pid)
                }
            }
        }
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
        await kill(pids, graceful: true, why: "daemon shutdown")
        for pid in pids { await releaseAll(of: pid) }
        for name in Array(lockspaces.keys) { try? await removeLockspace(name.description) }
        for task in background { task.cancel() }
        for device in devices.values { await device.close() }
        devices = [:]
        watchdog?.closeCleanly()
        log.info("shut down")
    }
}
