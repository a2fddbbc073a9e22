import Glibc
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureSanlockWire

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
    func handleSanlock(_ request: SanlockRequest, _ header: SanlockHeader, from peer: Peer) async -> SanlockAnswer {
        guard let command = SanlockCommand(rawValue: header.command) else {
            return SanlockAnswer(header: header.reply(result: -EINVAL), close: true)
        }
        do {
            switch request {
            case .register:
                _ = try await run(.register, .register, from: peer)
                return SanlockAnswer(header: nil)
            case .version:
                return SanlockAnswer(header: SanlockHeader(command: header.command, data: 0, data2: SanlockWire.versionCombined))
            case .inqLockspace(let lockspace, let wait):
                return SanlockAnswer(header: header.reply(result: await inquireLockspace(lockspace, wait: wait)))
            case .getLockspaces:
                let all = try lockspaceList()
                let payload = all.flatMap(\.encoded)
                return SanlockAnswer(header: header.reply(result: 0, data2: UInt32(all.count), payloadBytes: payload.count), payload: payload)
            case .inquire(let target):
                let pid = try self.target(pid(of: target, peer), peer)
                let states = sanlockStates(of: pid)
                guard !states.isEmpty else { return SanlockAnswer(header: header.reply(result: 0)) }
                let payload = Array(states.joined(separator: " ").utf8) + [0]
                return SanlockAnswer(header: header.reply(result: 0, data2: UInt32(states.count), payloadBytes: payload.count), payload: payload)
            case .unsupported(let which):
                log.notice("process \(peer.pid) sent sanlock's \(which) command, which this daemon does not serve yet")
                return SanlockAnswer(header: header.reply(result: -EOPNOTSUPP))
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

    /// Admits and performs a request as Tenure's protocol would.
    private func run(_ command: Command, _ request: DaemonRequest, from peer: Peer) async throws -> [String] {
        try admit(request, command, from: peer)
        return try await perform(request, from: peer)
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
            guard ioTimeout <= UInt32(UInt16.max) else {
                throw TenureError(.invalidArgument, "The io_timeout \(ioTimeout) s is beyond \(UInt16.max) s.", remedy: "Give 1...60 s, or 0 for the daemon's own.")
            }
            return (.addLockspace, .addLockspace(text: spec.description, hostName: nil,
                                                 ioTimeout: ioTimeout == 0 ? nil : IOTimeout(seconds: UInt16(ioTimeout)), async: async))
        case .remLockspace(let ls, _):
            // Tenure leaves only a lockspace with no lease held (sanlock's
            // REM_UNUSED); leaving is quick, so an async leave is done at once.
            return (.remLockspace, .remLockspace(name: ls.name))
        case .acquire(let target, let resources, let flags, _):
            guard flags & (SanlockFlags.acquireOrphan | SanlockFlags.acquireOrphanOnly | SanlockFlags.acquireLVB) == 0,
                  resources.allSatisfy({ $0.flags & SanlockFlags.resPersistent == 0 }) else {
                throw TenureError(.invalidArgument, "Persistent and orphan leases and lock value blocks are not served over sanlock's protocol yet.",
                                  remedy: "Acquire without SANLK_RES_PERSISTENT, SANLK_ACQUIRE_ORPHAN and SANLK_ACQUIRE_LVB.")
            }
            let shared = resources[0].isShared
            guard resources.allSatisfy({ $0.isShared == shared }) else {
                throw TenureError(.invalidArgument, "One acquire mixes shared and exclusive resources.", remedy: "Acquire the shared ones and the exclusive ones apart.")
            }
            let texts = try resources.map { try resourceSpec($0, keepLver: true).description }
            return (.acquire, .acquire(pid: targetPid(target, peer), shared: shared, resources: texts))
        case .release(let target, let resources, let flags):
            let names = flags & SanlockFlags.releaseAll != 0 ? ["*"] : resources.map(\.name)
            return (.release, .release(pid: targetPid(target, peer), names: names))
        case .convert(let target, let resource):
            return (.convert, .convert(pid: targetPid(target, peer), name: resource.name, shared: resource.isShared))
        case .request(let resource, let forceMode):
            return (.request, .request(resource: try resourceSpec(resource, keepLver: false).description,
                                       force: forceMode & SanlockFlags.requestForce != 0))
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
        case .register, .version, .inqLockspace, .getLockspaces, .getHosts, .inquire, .unsupported:
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
        return await joined.lockspace.isValid(at: context.clock.now()) ? 0 : -ENOENT
    }

    /// get_lockspaces: every lockspace joined or being joined here.
    func lockspaceList() throws -> [SanlockLockspace] {
        var out = lockspaces.values.sorted { $0.spec.name.description < $1.spec.name.description }.map { joined in
            SanlockLockspace(name: joined.spec.name.description, hostID: UInt64(joined.spec.hostID.rawValue), flags: 0,
                             disk: SanlockDisk(path: joined.spec.disk.path, offset: joined.spec.disk.offset))
        }
        out += joining.values.sorted { $0.name.description < $1.name.description }.map { spec in
            SanlockLockspace(name: spec.name.description, hostID: UInt64(spec.hostID.rawValue), flags: 0x1,   // SANLK_LSF_ADD
                             disk: SanlockDisk(path: spec.disk.path, offset: spec.disk.offset))
        }
        return out
    }

    /// The state strings of `pid`'s leases, as sanlock's inquire gives them.
    func sanlockStates(of pid: Int32) -> [String] {
        (core.leases[ProcessID(pid)] ?? [:]).values.map { lease in
            SanlockResource(lockspace: lease.resource.lockspace.description, name: lease.resource.name.description,
                            lver: lease.lver.rawValue, flags: lease.shared ? SanlockFlags.resShared : 0,
                            disks: lease.resource.disks.map { SanlockDisk(path: $0.path, offset: $0.offset) }).stateString
        }.sorted()
    }
}
