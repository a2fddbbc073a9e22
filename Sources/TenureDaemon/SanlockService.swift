import Glibc
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureSanlockWire
import TenureSyscall

/// What the daemon sends back for one sanlock request.
struct SanlockAnswer: Sendable {
    /// nil: no reply (register: libsanlock reads none).
    var header: SanlockHeader?
    var payload: [UInt8] = []
    /// Close the connection after the reply.
    var close = false
}

extension Daemon {
    /// Answers one request that came over sanlock's socket: the same
    /// operations, privileges and core as Tenure's own protocol, with
    /// sanlock's result codes and reply layouts.
    func handleSanlock(_ request: SanlockRequest, _ header: SanlockHeader, from peer: Peer, connectionFD: Int32 = -1) async -> SanlockAnswer {
        guard let command = SanlockCommand(rawValue: header.command) else {
            return SanlockAnswer(header: header.reply(result: -EINVAL), close: true)
        }
        do {
            switch request {
            case .lookupIndex, .updateIndex, .createResource, .deleteResource:
                // Answered with an entry whatever the result, refusals too.
                return await answerIndexEntry(request, header, command, from: peer)
            default:
                // The one admission rule, before anything is done.
                try admit(request.operation, from: peer)
            }
            switch request {
            case .register:
                _ = try await run(.register, .register, from: peer)
                return SanlockAnswer(header: nil)
            case .version:
                return SanlockAnswer(header: SanlockHeader(command: header.command, data: 0, data2: SanlockWire.versionCombined))
            case .inqLockspace(let lockspace, let wait):
                return SanlockAnswer(header: header.reply(result: await inquireLockspace(lockspace, wait: wait)))
            case .getLockspaces:
                let all = lockspaceList()
                let payload = all.flatMap(\.encoded)
                return SanlockAnswer(header: header.reply(result: 0, data2: UInt32(all.count), payloadBytes: payload.count), payload: payload)
            case .inquire(let target):
                let pid = try self.target(pid(of: target, peer), peer)
                let states = sanlockStates(of: pid)
                guard !states.isEmpty else { return SanlockAnswer(header: header.reply(result: 0)) }
                let payload = Array(states.joined(separator: " ").utf8) + [0]
                return SanlockAnswer(header: header.reply(result: 0, data2: UInt32(states.count), payloadBytes: payload.count), payload: payload)
            case .status(let depth):
                let payload = await sanlockStatus(depth: depth).flatMap(\.encoded)
                // The stream of records ends when the connection closes.
                return SanlockAnswer(header: header.reply(result: 0), payload: payload, close: true)
            case .hostStatus(let name):
                let hosts = try await sanlockHosts(name, only: 0)
                let payload = hosts.flatMap { host in
                    SanlockState(kind: .host, data32: UInt32(truncatingIfNeeded: host.hostID), data64: host.timestamp, name: "",
                                 text: "owner_id=\(host.hostID) owner_generation=\(host.generation) timestamp=\(host.timestamp) io_timeout=\(host.ioTimeout)").encoded
                }
                return SanlockAnswer(header: header.reply(result: 0), payload: payload, close: true)
            case .regEvent(let name):
                let key = try joinedLockspace(name).key
                guard (eventListeners[key]?.count ?? 0) < Limits.maxEventListeners else {
                    throw TenureError(.limitReached, "Lockspace \(name) has \(Limits.maxEventListeners) event listeners, the limit.")
                }
                eventListeners[key, default: []].append(EventListener(connection: peer.connection, fd: connectionFD))
                return SanlockAnswer(header: header.reply(result: 0))
            case .setEvent(let name, let event, let flags):
                return SanlockAnswer(header: header.reply(result: try await setHostEvent(name, event, flags: flags)))
            case .endEvent:
                return SanlockAnswer(header: header.reply(result: 0))
            case .setConfig(let name, let command):
                let key = try joinedLockspace(name).key
                switch command {
                case SanlockFlags.configUsed: externallyUsed.insert(key)
                case SanlockFlags.configUnused: externallyUsed.remove(key)
                // Orphans always keep their lockspace from being left here.
                case SanlockFlags.configUsedByOrphans: break
                case SanlockFlags.configUnusedByOrphans:
                    throw TenureError(.invalidArgument, "In Tenure orphan leases always keep their lockspace from being left (SANLK_CONFIG_USED_BY_ORPHANS, always on).",
                                      remedy: "Release the orphans (SANLK_REL_ORPHAN) before leaving.")
                default:
                    throw TenureError(.invalidArgument, "set_config \(command) is not a configuration command.",
                                      remedy: "Use SANLK_CONFIG_USED, _UNUSED or _USED_BY_ORPHANS.")
                }
                return SanlockAnswer(header: header.reply(result: 0))
            case .examine:
                await answerRequests()
                return SanlockAnswer(header: header.reply(result: 0))
            case .logDump:
                let text = Array(DebugRing.shared.text.utf8) + [0]
                // libsanlock reads `data` bytes after the header.
                return SanlockAnswer(header: SanlockHeader(command: header.command, length: UInt32(SanlockWire.headerBytes + text.count),
                                                           seq: header.seq, data: UInt32(text.count)), payload: text, close: true)
            case .renewal(let name):
                let joined = try joinedLockspace(name).joined
                let payload = await onRenewalThread { await joined.lockspace.renewalHistory }.flatMap {
                    SanlockState(kind: .renewal, name: name, text: $0.sanlockText).encoded
                }
                return SanlockAnswer(header: header.reply(result: 0), payload: payload, close: true)
            case .getHosts(let name, let hostID):
                let hosts = try await sanlockHosts(name, only: hostID)
                let payload = hosts.flatMap(\.encoded)
                return SanlockAnswer(header: header.reply(result: 0, data2: UInt32(hosts.count), payloadBytes: payload.count), payload: payload)
            case .writeLockspace(let ls, let maxHosts, let ioTimeout, _):
                try await writeLockspace(ls, maxHosts: maxHosts, ioTimeoutSeconds: ioTimeout)
                return SanlockAnswer(header: header.reply(result: 0))
            case .writeResource(let resource, let maxHosts, let numHosts, let flags):
                try await writeResource(resource, maxHosts: maxHosts, numHosts: numHosts, flags: flags)
                return SanlockAnswer(header: header.reply(result: 0))
            case .readLockspace(let ls, _):
                let (found, ioTimeout) = try await readLockspace(ls)
                let payload = found.encoded
                return SanlockAnswer(header: header.reply(result: 0, data2: ioTimeout, payloadBytes: payload.count), payload: payload)
            case .readResource(let resource, _):
                let payload = Array(try await readResource(resource).encoded.prefix(SanlockWire.resourceBytes))
                return SanlockAnswer(header: header.reply(result: 0, payloadBytes: payload.count), payload: payload)
            case .readResourceOwners(let resource, _):
                let (found, owners) = try await readResourceOwners(resource)
                let payload = Array(found.encoded.prefix(SanlockWire.resourceBytes)) + owners.flatMap(\.encoded)
                return SanlockAnswer(header: header.reply(result: 0, data2: UInt32(owners.count), payloadBytes: payload.count), payload: payload)
            case .align(let disk):
                let sector = try await withDevice(disk.path) { $0.sectorSize }
                return SanlockAnswer(header: header.reply(result: Int32(LeaseGeometry.defaultFor(sector).alignment.bytes)))
            case .setLVB(let resource, let bytes):
                return SanlockAnswer(header: header.reply(result: setLVB(lockspace: resource.lockspace, name: resource.name, bytes: bytes)))
            case .getLVB(let resource, let length):
                let (result, bytes) = getLVB(lockspace: resource.lockspace, name: resource.name, length: Int(length))
                return SanlockAnswer(header: header.reply(result: result, payloadBytes: bytes.count), payload: bytes)
            case .release(let target, let resources, let flags) where flags & SanlockFlags.releaseRename != 0:
                // The first resource is released, renamed as the second.
                guard resources.count == 2, flags & (SanlockFlags.releaseAll | SanlockFlags.releaseOrphan) == 0 else {
                    throw TenureError(.invalidArgument, "A release with SANLK_REL_RENAME takes two resources: the lease, then its new name.")
                }
                let pid = try self.target(pid(of: target, peer), peer)
                try await releaseRenaming(resources[0].name, lockspace: resources[0].lockspace, of: pid, to: resources[1].name)
                return SanlockAnswer(header: header.reply(result: 0))
            case .formatIndex(let rx):
                try await formatIndex(rx)
                return SanlockAnswer(header: header.reply(result: 0))
            case .rebuildIndex(let rx, let flags):
                try await rebuildIndex(rx, flags: flags)
                return SanlockAnswer(header: header.reply(result: 0))
            default:
                let (tenureCommand, daemonRequest) = try Self.daemonRequest(for: request, peer: peer)
                _ = try await run(tenureCommand, daemonRequest, from: peer)
                return SanlockAnswer(header: header.reply(result: 0))
            }
        } catch let error as TenureError {
            log.info("sanlock \(command) of process \(peer.pid) refused: \(error)")
            return SanlockAnswer(header: header.reply(result: SanlockResult.code(for: error, command: command)))
        } catch {
            return SanlockAnswer(header: header.reply(result: -ECANCELED))
        }
    }

    /// The four index commands that answer with an entry: sanlock sends
    /// the entry after the header whatever the result.
    private func answerIndexEntry(_ request: SanlockRequest, _ header: SanlockHeader, _ command: SanlockCommand, from peer: Peer) async -> SanlockAnswer {
        var result: Int32 = 0
        var entry = SanlockRentry()
        do {
            try admit(request.operation, from: peer)
            switch request {
            case .lookupIndex(let rx, let asked, let flags):
                (result, entry) = try await lookupIndex(rx, asked, flags: flags)
            case .updateIndex(let rx, let asked, let flags):
                entry = try await updateIndex(rx, asked, flags: flags)
            case .createResource(let rx, let asked, let numHosts):
                entry = try await createResource(rx, asked, numHosts: numHosts)
            case .deleteResource(let rx, let asked):
                // sanlock's delete_resource answers an empty entry.
                _ = try await deleteResource(rx, asked)
                entry = SanlockRentry()
            default:
                preconditionFailure("\(request) is not an index entry command")
            }
        } catch let error as TenureError {
            log.info("sanlock \(command) of process \(peer.pid) refused: \(error)")
            result = SanlockResult.code(for: error, command: command)
        } catch {
            result = -ECANCELED
        }
        let payload = entry.encoded
        return SanlockAnswer(header: header.reply(result: result, payloadBytes: payload.count), payload: payload)
    }

    /// Performs a request as Tenure's protocol would (admitted already).
    private func run(_ command: Command, _ request: DaemonRequest, from peer: Peer) async throws -> [String] {
        try await perform(request, from: peer)
    }

    /// The pid a lease command is for: the caller, or the pid it names.
    private func pid(of target: SanlockRequest.Target, _ peer: Peer) -> Int32 {
        switch target {
        case .caller: peer.pid
        case .pid(let pid): pid
        }
    }

    /// The Tenure request a sanlock request is, for those that have one.
    static func daemonRequest(for request: SanlockRequest, peer: Peer) throws -> (Command, DaemonRequest) {
        switch request {
        case .addLockspace(let ls, let async, let ioTimeout):
            let spec = try lockspaceSpec(ls)
            let io = try IOTimeout.requested(Int(ioTimeout), what: "The io_timeout of an add_lockspace request")
            return (.addLockspace, .addLockspace(spec, hostName: nil, ioTimeout: io, async: async))
        case .remLockspace(let ls, _):
            // Tenure leaves only a lockspace with no lease held (sanlock's
            // REM_UNUSED); leaving is quick, so an async leave is done at once.
            return (.remLockspace, .remLockspace(name: ls.name))
        case .acquire(let target, let resources, let flags, _):
            let persistent = resources[0].flags & SanlockFlags.resPersistent != 0
            guard resources.allSatisfy({ ($0.flags & SanlockFlags.resPersistent != 0) == persistent }) else {
                throw TenureError(.invalidArgument, "One acquire mixes persistent and other resources.", remedy: "Acquire them apart.")
            }
            let shared = resources[0].isShared
            guard resources.allSatisfy({ $0.isShared == shared }) else {
                throw TenureError(.invalidArgument, "One acquire mixes shared and exclusive resources.", remedy: "Acquire the shared ones and the exclusive ones apart.")
            }
            let specs = try resources.map { try resourceSpec($0, keepLver: true) }
            let options = LeaseOptions(lvb: flags & SanlockFlags.acquireLVB != 0, persistent: persistent,
                                       adoptOrphan: flags & (SanlockFlags.acquireOrphan | SanlockFlags.acquireOrphanOnly) != 0,
                                       orphanOnly: flags & SanlockFlags.acquireOrphanOnly != 0)
            return (.acquire, .acquire(pid: targetPid(target, peer), shared: shared, resources: specs, options: options))
        case .release(_, let resources, let flags) where flags & SanlockFlags.releaseOrphan != 0:
            guard let lockspace = resources.first?.lockspace else {
                throw TenureError(.invalidArgument, "A release of orphans names no lockspace.", remedy: "Name a resource of the lockspace (or its lockspace with SANLK_REL_ALL).")
            }
            let names = flags & SanlockFlags.releaseAll != 0 ? ["*"] : resources.map(\.name)
            return (.release, .releaseOrphans(lockspace: lockspace, names: names))
        case .release(let target, let resources, let flags):
            let names = flags & SanlockFlags.releaseAll != 0 ? ["*"] : resources.map(\.name)
            return (.release, .release(pid: targetPid(target, peer), names: names))
        case .convert(let target, let resource):
            return (.convert, .convert(pid: targetPid(target, peer), name: resource.name, shared: resource.isShared))
        case .request(let resource, let forceMode):
            return (.request, .request(resource: try resourceSpec(resource, keepLver: false), force: forceMode & SanlockFlags.requestForce != 0))
        case .killpath(let program, let arguments, let flags):
            var argv = arguments.split(separator: " ").map(String.init)
            if flags & 0x1 != 0 { argv.append(String(peer.pid)) }   // SANLK_KILLPATH_PID
            return (.killpath, .killpath(program: program, arguments: argv))
        case .restrict(let flags):
            var tenure: UInt32 = 0
            if flags & SanlockFlags.restrictAll != 0 { tenure |= Wire.restrictAll }
            if flags & SanlockFlags.restrictSIGKILL != 0 { tenure |= Wire.restrictSigkill }
            if flags & SanlockFlags.restrictSIGTERM != 0 { tenure |= Wire.restrictSigterm }
            return (.restrict, .restrict(flags: tenure))
        case .shutdown(let force):
            return (.shutdown, .shutdown(force: force))
        case .register, .version, .inqLockspace, .getLockspaces, .getHosts, .inquire, .status, .hostStatus, .renewal, .logDump,
             .setConfig, .examine, .regEvent, .setEvent, .endEvent,
             .writeLockspace, .writeResource, .readLockspace, .readResource, .readResourceOwners, .align, .setLVB, .getLVB,
             .formatIndex, .rebuildIndex, .lookupIndex, .updateIndex, .createResource, .deleteResource:
            throw TenureError(.protocolError, "\(request) has no Tenure request.")
        }
    }

    private static func targetPid(_ target: SanlockRequest.Target, _ peer: Peer) -> Int32 {
        switch target {
        case .caller: 0
        case .pid(let pid): pid
        }
    }

    static func lockspaceSpec(_ ls: SanlockLockspace) throws -> LockspaceSpec {
        LockspaceSpec(name: try LeaseName(ls.name, what: "lockspace name"), hostID: HostID(ls.hostID),
                      disk: try LeaseDisk(path: ls.disk.path, offset: ls.disk.offset))
    }

    static func resourceSpec(_ r: SanlockResource, keepLver: Bool) throws -> ResourceSpec {
        guard !r.disks.isEmpty else {
            throw TenureError(.invalidArgument, "Resource \(r.name) names no disk.", remedy: "Give the path and offset of its lease area.")
        }
        let wantsLver = keepLver && r.flags & SanlockFlags.resLver != 0
        return ResourceSpec(lockspace: try LeaseName(r.lockspace, what: "lockspace name"), name: try LeaseName(r.name, what: "resource name"),
                            disks: try r.disks.map { try LeaseDisk(path: $0.path, offset: $0.offset) },
                            lver: wantsLver ? LeaseVersion(r.lver) : nil, shared: r.isShared)
    }

    /// inq_lockspace: 0 joined and valid, -EINPROGRESS joining, -ENOENT
    /// otherwise (and for a lockspace lost here). With `wait`, waits out a join.
    func inquireLockspace(_ ls: SanlockLockspace, wait: Bool) async -> Int32 {
        guard let name = try? LeaseName(ls.name, what: "lockspace name") else { return -EINVAL }
        while wait && joining[name] != nil {
            try? await context.clock.sleep(for: Timeouts.sanlockJoinPoll)
        }
        if joining[name] != nil { return -EINPROGRESS }
        guard let joined = lockspaces[name], joined.spec.hostID == HostID(ls.hostID) || ls.hostID == 0 else { return -ENOENT }
        let now = context.clock.now()
        return await onRenewalThread { await joined.lockspace.isValid(at: now) } ? 0 : -ENOENT
    }

    /// get_lockspaces: every lockspace joined or being joined here.
    func lockspaceList() -> [SanlockLockspace] {
        var out = lockspaces.values.sorted { $0.spec.name.description < $1.spec.name.description }.map { joined in
            SanlockLockspace(joined.spec)
        }
        out += joining.values.sorted { $0.name.description < $1.name.description }.map { spec in
            SanlockLockspace(spec, flags: 0x1)   // SANLK_LSF_ADD
        }
        return out
    }

    /// The state strings of `pid`'s leases, as sanlock's inquire gives them.
    func sanlockStates(of pid: Int32) -> [String] {
        (core.leases[ProcessID(pid)] ?? [:]).values.map { lease in
            SanlockResource(held: lease).stateString
        }.sorted()
    }

    // MARK: Hosts and lease areas

    /// get_hosts: the hosts of a joined lockspace as this host sees them
    /// (every slot ever used; `only` one host id unless 0).
    func sanlockHosts(_ name: String, only: UInt64) async throws -> [SanlockHost] {
        let joined = try joinedLockspace(name).joined
        return try await hostsInUse(joined).filter { only == 0 || $0.id.rawValue == only }.map { id, record, judged in
            let state: UInt32
            switch id == joined.spec.hostID ? .live : judged {
            case .free?: state = SanlockFlags.hostFree
            case .live?: state = SanlockFlags.hostLive
            case .failing?: state = SanlockFlags.hostFail
            case .dead?: state = SanlockFlags.hostDead
            case .unknown?, nil: state = SanlockFlags.hostUnknown
            }
            return SanlockHost(hostID: id.rawValue, generation: record.ownerGeneration.rawValue, timestamp: record.timestamp.rawValue,
                               ioTimeout: UInt32(record.ioTimeout.seconds), flags: state)
        }
    }

    /// The geometry sanlock's align and sector flags name, else the device's default.
    static func geometry(_ flags: UInt32, device: any BlockDevice) throws -> LeaseGeometry {
        let sector: SectorSize? = flags & SanlockFlags.sector4K != 0 ? .bytes4096 : flags & SanlockFlags.sector512 != 0 ? .bytes512 : nil
        return try LeaseAreas.geometry(sectorSize: sector, alignment: LeaderFlags.alignment(in: flags), device: device)
    }

    static let releaseFirst = "Release those leases (and leave the lockspace) first."

    /// write_lockspace: lays out a lockspace area, unless hosts are joined to it.
    func writeLockspace(_ ls: SanlockLockspace, maxHosts: UInt32, ioTimeoutSeconds: UInt32) async throws {
        let name = try LeaseName(ls.name, what: "lockspace name")
        let io = try IOTimeout.requested(Int(ioTimeoutSeconds), what: "The io_timeout of a write_lockspace request") ?? config.ioTimeout
        try await withDevice(ls.disk.path) { device in
            // The layout is in the lockspace's own flags (SANLK_LSF_ALIGN*,
            // SANLK_LSF_SECTOR*), as libsanlock sends it; the header's flags
            // carry none. Reading the wrong word lays out the device's default
            // area instead — 8 MiB on a 4K disk where 1 MiB was asked, over
            // the leases that follow.
            let geometry = try Self.geometry(ls.flags, device: device)
            guard maxHosts <= UInt32(geometry.maxHosts) else {
                throw TenureError(.invalidArgument, "max_hosts \(maxHosts) is over \(geometry.maxHosts), what a \(geometry) area holds.")
            }
            // sanlock would overwrite them; Tenure never takes a lease away by re-initialising.
            try await LeaseAreas.refuseToOverwriteHeld(on: device, at: ls.disk.offset, length: geometry.alignment.bytes,
                                                       remedy: Self.releaseFirst)
            try await LeaseAreas.initialiseLockspace(on: device, at: ls.disk.offset, name: name, geometry: geometry, ioTimeout: io)
        }
        log.info("laid out lockspace \(name) at \(ls.disk.path):\(ls.disk.offset) for a sanlock client")
    }

    /// write_resource: lays out a resource area, unless it is held.
    func writeResource(_ r: SanlockResource, maxHosts: UInt32, numHosts: UInt32, flags: UInt32) async throws {
        guard flags & SanlockFlags.writeClear == 0 else {
            throw TenureError(.invalidArgument, "SANLK_WRITE_CLEAR is not served.", remedy: "Write the resource without it.")
        }
        let spec = try Self.resourceSpec(r, keepLver: false)
        guard spec.disks.count == 1 else { throw TenureError(.invalidArgument, "write_resource on \(spec.disks.count) disks is not served yet.") }
        let disk = spec.disks[0]
        try await withDevice(disk.path) { device in
            let geometry = try Self.geometry(r.flags, device: device)
            let hosts = numHosts == 0 ? geometry.maxHosts : Int(numHosts)
            try await LeaseAreas.refuseToOverwriteHeld(on: device, at: disk.offset, length: geometry.alignment.bytes,
                                                       remedy: Self.releaseFirst)
            try await LeaseAreas.initialiseResource(on: device, at: disk.offset, lockspace: spec.lockspace, name: spec.name,
                                                    geometry: geometry, numHosts: hosts)
        }
        log.info("laid out resource \(spec.name) of \(spec.lockspace) at \(disk) for a sanlock client")
    }

    /// read_lockspace: the area's name (host id 0) and its io_timeout.
    func readLockspace(_ ls: SanlockLockspace) async throws -> (SanlockLockspace, UInt32) {
        let leader = try await withDevice(ls.disk.path) { device in
            let leader = try await LeaseAreas.readLeader(on: device, at: ls.disk.offset)
            try leader.verified(as: .delta, lockspace: nil, at: "\(ls.disk.path):\(ls.disk.offset)")
            return leader
        }
        var found = ls
        found.name = leader.spaceName.description
        found.hostID = 0
        return (found, UInt32(leader.ioTimeout.seconds))
    }

    /// read_resource: the area's lockspace and resource names and its lver.
    func readResource(_ r: SanlockResource) async throws -> SanlockResource {
        guard let disk = r.disks.first else { throw TenureError(.invalidArgument, "Resource \(r.name) names no disk.") }
        let leader = try await withDevice(disk.path) { device in
            let leader = try await LeaseAreas.readLeader(on: device, at: disk.offset)
            try leader.verified(as: .paxos, lockspace: nil, resource: nil, at: "\(disk.path):\(disk.offset)")
            return leader
        }
        var found = r
        found.lockspace = leader.spaceName.description
        found.name = leader.resourceName.description
        found.lver = leader.lver.rawValue
        return found
    }

    // MARK: Status

    /// The records `sanlock client status` prints: the daemon, its
    /// connected processes, its lockspaces (and those being joined), and
    /// every held lease with its holder. `depth` stops after one kind.
    func sanlockStatus(depth: UInt32) async -> [SanlockState] {
        var records = [SanlockState(kind: .daemon, name: config.hostName,
                                    text: "our_host_name=\(config.hostName) use_watchdog=\(config.watchdogDevice == nil ? 0 : 1) high_priority=\(config.realtime ? 1 : 0) mlock_level=\(config.lockMemory ? 1 : 0) io_timeout=\(config.ioTimeout.seconds) watchdog_fire_timeout=\(Int(config.watchdogFire.components.seconds)) version_str=tenure")]
        if depth == SanlockState.Kind.daemon.rawValue { return records }
        for pid in connections.keys.sorted() {
            records.append(SanlockState(kind: .client, data32: UInt32(bitPattern: pid), name: String(pid), text: "pid=\(pid)"))
        }
        if depth == SanlockState.Kind.client.rawValue { return records }
        for list in lockspaceList() {
            let joining = list.flags & 0x1 != 0
            records.append(SanlockState(kind: .lockspace, data64: list.hostID, name: list.name,
                                        text: "list=\(joining ? "add" : "spaces")", trailer: list.encoded))
        }
        if depth == SanlockState.Kind.lockspace.rawValue { return records }
        for orphan in core.orphans.values.sorted(by: { $0.resource.name.description < $1.resource.name.description }) {
            var resource = SanlockResource(held: orphan)
            resource.flags |= SanlockFlags.resPersistent
            records.append(SanlockState(kind: .resource, data32: 0, data64: orphan.lver.rawValue, name: resource.name,
                                        text: "list=orphan lver=\(orphan.lver.rawValue)", trailer: resource.encoded))
        }
        for (pid, leases) in core.leases.sorted(by: { $0.key < $1.key }) {
            for lease in leases.values.sorted(by: { $0.resource.name.description < $1.resource.name.description }) {
                let resource = SanlockResource(held: lease)
                records.append(SanlockState(kind: .resource, data32: UInt32(bitPattern: pid.rawValue), data64: lease.lver.rawValue,
                                            name: resource.name, text: "list=held lver=\(lease.lver.rawValue)", trailer: resource.encoded))
            }
        }
        return records
    }

    /// read_resource_owners: the leader's owner (when it names one with a
    /// timestamp) and every host whose mode block marks it shared, as
    /// sanlock reads them; the resource comes back with its lver, and
    /// SANLK_RES_SHARED when anyone shares it.
    func readResourceOwners(_ r: SanlockResource) async throws -> (SanlockResource, [SanlockHost]) {
        guard let disk = r.disks.first else { throw TenureError(.invalidArgument, "Resource \(r.name) names no disk.") }
        let snapshot = try await withDevice(disk.path) { device in
            try await LeaseAreas.readResource(on: device, at: disk.offset, lockspace: nil, name: nil)
        }
        let leader = snapshot.leader
        var found = r
        found.lver = leader.lver.rawValue
        var owners: [SanlockHost] = []
        let owned = !leader.timestamp.isFree && !leader.ownerID.isNone
        if owned {
            owners.append(SanlockHost(hostID: leader.ownerID.rawValue, generation: leader.ownerGeneration.rawValue,
                                      timestamp: leader.timestamp.rawValue, ioTimeout: 0, flags: 0))
        }
        for slot in snapshot.dblocks where slot.mode.isShared {
            found.flags |= SanlockFlags.resShared
            if owned && slot.hostID == leader.ownerID { continue }
            owners.append(SanlockHost(hostID: slot.hostID.rawValue, generation: slot.mode.generation.rawValue, timestamp: 0, ioTimeout: 0, flags: 0))
        }
        return (found, owners)
    }

    // MARK: Host events

    /// set_event: carries `event` to host `event.hostID` in our delta lease
    /// (sanlock's SANLK_SETEV_* flags). -EBUSY when another event set less
    /// than 6N ago would be replaced without SANLK_SETEV_REPLACE_EVENT.
    func setHostEvent(_ name: String, _ event: SanlockHostEvent, flags: UInt32) async throws -> Int32 {
        try await onRenewalThread { () async throws -> Int32 in try await setHostEventHere(name, event, flags: flags) }
    }

    private func setHostEventHere(_ name: String, _ event: SanlockHostEvent, flags: UInt32) async throws -> Int32 {
        let (key, joined) = try joinedLockspace(name)
        guard let local = await joined.lockspace.localHost else {
            throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.")
        }
        let maxHosts = UInt64(joined.lockspace.observer.geometry.maxHosts)
        guard event.hostID >= 1, event.hostID <= maxHosts else { return -EINVAL }
        let target = HostID(event.hostID)
        let now = context.clock.now()
        let current = await joined.lockspace.hold?.written.hostEvent ?? .none
        if flags & SanlockFlags.setEventClearEvent != 0 {
            try await joined.lockspace.setEvent(.none, for: [])
            return 0
        }
        if flags & SanlockFlags.setEventClearHost != 0 {
            try await joined.lockspace.setEvent(current, for: [], clearing: [target])
            return 0
        }
        if flags & SanlockFlags.setEventReplace == 0, let last = eventSet[key], now < last.at + joined.lockspace.timeouts.renewalWarning,
           last.event.event != 0, event.event != 0, last.event.event != event.event {
            return -EBUSY
        }
        var generation = Generation(event.generation)
        if generation == .zero, flags & SanlockFlags.setEventCurrentGeneration != 0 {
            generation = try await joined.lockspace.observer.observeRange(upTo: target).first { $0.0 == target }?.1.ownerGeneration ?? .zero
        }
        let carried = HostEvent(generation: generation, event: event.event, data: event.data)
        let recipients = flags & SanlockFlags.setEventAllHosts != 0
            ? (1...maxHosts).map { HostID($0) }.filter { $0 != local.id } : [target]
        try await joined.lockspace.setEvent(carried, for: recipients)
        eventSet[key] = (carried, now)
        // The bits are cleared after 6N, as a request's are (clearOldSignals).
        signalledAt[key] = now
        return 0
    }

    /// Every `requestPoll`, for lockspaces someone listens to: reads the
    /// slots of hosts that set our bit and delivers each new event once.
    func deliverHostEvents() async {
        await onRenewalThread { await deliverHostEventsHere() }
    }

    private func deliverHostEventsHere() async {
        for (name, listeners) in eventListeners where listeners.contains(where: \.active) {
            guard let joined = lockspaces[name], let local = await joined.lockspace.localHost else { continue }
            // The hosts that ever joined, as the request poll reads them: the
            // slots of the rest cannot carry an event.
            guard let signallers = try? await joined.lockspace.observer.signallers(
                of: local.id, hostsUpTo: joined.lockspace.observer.geometry.maxHosts, refreshEvery: joined.lockspace.timeouts.renewalInterval)
            else { continue }
            for (from, record) in signallers where record.hostEvent.event != 0 {
                let delivered = DeliveredEvent(generation: record.ownerGeneration, event: record.hostEvent)
                guard deliveredEvents[name]?[from] != delivered else { continue }
                deliveredEvents[name, default: [:]][from] = delivered
                let callback = SanlockHostEvent(hostID: local.id.rawValue, generation: record.hostEvent.generation.rawValue,
                                                event: record.hostEvent.event, data: record.hostEvent.data)
                    .callback(fromHost: from.rawValue, fromGeneration: record.ownerGeneration.rawValue)
                eventListeners[name]?.removeAll { listener in
                    listener.active && !UnixSocket.sendWithoutWaiting(callback, to: FileDescriptor(rawValue: listener.fd))
                }
                log.info("lockspace \(name): event \(record.hostEvent.event) (data \(record.hostEvent.data)) from host \(from) delivered")
            }
        }
    }

    /// The registration's reply is out: events may now be sent on it.
    func activateEventListener(_ connection: UInt64) {
        for name in eventListeners.keys {
            for i in eventListeners[name]!.indices where eventListeners[name]![i].connection == connection {
                eventListeners[name]![i].active = true
            }
        }
    }
}

/// A connection listening for a lockspace's host events.
struct EventListener: Sendable {
    let connection: UInt64
    let fd: Int32
    var active = false
}

/// An event seen from one host: its generation and the event it carried.
struct DeliveredEvent: Sendable, Equatable {
    let generation: Generation
    let event: HostEvent
}

extension SanlockResource {
    /// A lease held here, as sanlock describes it: its lver, and
    /// SANLK_RES_SHARED when shared.
    init(held lease: HeldLease) {
        self.init(lockspace: lease.resource.lockspace.description, name: lease.resource.name.description, lver: lease.lver.rawValue,
                  flags: lease.shared ? SanlockFlags.resShared : 0, disks: lease.resource.disks.map(SanlockDisk.init))
    }
}
