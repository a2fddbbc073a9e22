import Glibc
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost

extension Daemon {
    /// The one handler: admits `request` for `peer` by the one rule
    /// (``admit(_:from:)``) and carries it out, whichever socket it came
    /// through. Throws a ``TenureError`` for a refusal; each codec encodes
    /// the answer, or the error, in its own protocol. `socket` is the
    /// connection's descriptor (an event listener is sent events on it).
    func handle(_ request: Request, from peer: Peer, socket: Int32 = -1) async throws -> Reply {
        try admit(request.operation, from: peer)
        switch request {
        // A process and its leases
        case .register:
            registered.insert(peer.connection)
            return .done
        case .acquire(let subject, let shared, let resources, let options):
            return .fields(try await acquire(resources, for: try target(subject, peer), by: peer, shared: shared, options: options))
        case .release(let subject, let names):
            try await release(names, of: try target(subject, peer))
            return .done
        case .releaseRenaming(let subject, let lockspace, let name, let newName):
            try await releaseRenaming(name, lockspace: lockspace, of: try target(subject, peer), to: newName)
            return .done
        case .releaseOrphans(let lockspace, let names):
            observeLockspaces()
            if let error = await carryOut(try core.releaseOrphans(names, in: lockspace, at: context.clock.now())) { throw error }
            return .done
        case .inquire(let subject):
            let pid = try target(subject, peer)
            return .held(Array((core.leases[ProcessID(pid)] ?? [:]).values))
        case .convert(let subject, let name, let shared):
            return .fields([try await convert(name, of: try target(subject, peer), shared: shared)])
        case .killpath(let program, let arguments):
            try setKillpath(program, arguments, for: peer)
            return .done
        case .restrict(let options):
            _ = try process(peer.pid, for: peer)
            try core.restrict(ProcessID(peer.pid), sigkillOnly: options.contains(.sigkillOnly), sigtermOnly: options.contains(.sigtermOnly))
            if options.contains(.all) { restricted.insert(peer.connection) }
            return .done
        case .setLVB(let reference, let bytes):
            let (lockspace, name) = try leaseNamed(reference, peer)
            try setLVB(lockspace: lockspace, name: name, bytes: bytes)
            return .done
        case .getLVB(let reference, let length):
            let (lockspace, name) = try leaseNamed(reference, peer)
            return .lvb(try getLVB(lockspace: lockspace, name: name, length: length))

        // Lockspaces
        case .addLockspace(let spec, let hostName, let io, let async):
            try reserveJoin(spec)
            guard async else {
                defer { finishedJoining(spec.name) }
                return .fields([try await addLockspace(spec, hostName: hostName, ioTimeout: io)])
            }
            background.append(Task {
                do { _ = try await self.addLockspace(spec, hostName: hostName, ioTimeout: io) } catch {
                    self.log.error("joining \(spec) failed: \(error)")
                }
                self.finishedJoining(spec.name)
            })
            return .joining
        case .remLockspace(let name):
            try await removeLockspace(name.description)
            return .done
        case .inquireLockspace(let name, let hostID, let wait):
            return .lockspaceState(await lockspaceState(name, hostID: hostID, wait: wait))
        case .listLockspaces:
            return .lockspaces(lockspaceList())
        case .hosts(let lockspace, let only):
            let joined = try joinedLockspace(lockspace.description).joined
            return .hosts(try await hostsInUse(joined).filter { only == nil || $0.id == only }.map {
                HostView(id: $0.id, record: $0.record, state: $0.state, isSelf: $0.id == joined.spec.hostID)
            })
        case .renewal(let lockspace):
            let joined = try joinedLockspace(lockspace.description).joined
            return .renewals(await onRenewalThread { await joined.lockspace.renewalHistory })
        case .markUsed(let lockspace, let use):
            try markUsed(lockspace, use)
            return .done
        case .listenForEvents(let lockspace):
            let key = try joinedLockspace(lockspace.description).key
            guard (eventListeners[key]?.count ?? 0) < Limits.maxEventListeners else {
                throw TenureError(.limitReached, "Lockspace \(lockspace) has \(Limits.maxEventListeners) event listeners, the limit.",
                                  remedy: "Close a listener (sanlock_end_event) first.")
            }
            eventListeners[key, default: []].append(EventListener(connection: peer.connection, fd: socket))
            return .done
        case .endEvents:
            return .done
        case .setEvent(let lockspace, let event, let options):
            try await setHostEvent(lockspace, event, options)
            return .done
        case .request(let resource, let force):
            try await requestLease(resource, force: force)
            return .done
        case .examine:
            await answerRequests()
            return .done

        // The daemon
        case .status(.summary):
            return .fields([await status()])
        case .status(.records(let depth)):
            return .records(statusRecords(depth: depth))
        case .logDump:
            return .log(DebugRing.shared.text)
        case .metrics:
            return .fields([await metricsText()])
        case .version:
            return .version
        case .shutdown(let force):
            try await shutdown(force: force)
            return .done

        // Lease areas
        case .writeLockspace(let area, let maxHosts, let ioTimeout):
            try await writeLockspace(area, maxHosts: maxHosts, ioTimeout: ioTimeout)
            return .done
        case .writeResource(let area, let maxHosts, let numHosts, let clear):
            try await writeResource(area, maxHosts: maxHosts, numHosts: numHosts, clear: clear)
            return .done
        case .readLockspace(let disk):
            let leader = try await readLeader(at: disk, as: .delta)
            return .lockspaceArea(name: leader.spaceName, ioTimeout: leader.ioTimeout)
        case .readResource(let disk):
            let leader = try await readLeader(at: disk, as: .paxos)
            return .resourceArea(lockspace: leader.spaceName, name: leader.resourceName, lver: leader.lver)
        case .readResourceOwners(let disk):
            return try await readResourceOwners(disk)
        case .align(let path):
            return .alignment(try await withDevice(path) { LeaseGeometry.defaultFor($0.sectorSize).alignment })
        case .index(let index):
            return try await indexOperation(index)
        }
    }

    /// The process a request acts for: the caller, or another process
    /// the caller may act for (``target(_:_:)-(Int32,_)``).
    func target(_ subject: Subject, _ peer: Peer) throws -> Int32 {
        switch subject {
        case .caller: peer.pid
        case .process(let pid): try target(pid.rawValue, peer)
        }
    }

    /// The caller's killpath: an executable file by its absolute path,
    /// run as the caller's user when fencing reaches it.
    private func setKillpath(_ program: String, _ arguments: [String], for peer: Peer) throws {
        guard program.hasPrefix("/"), access(program, X_OK) == 0 else {
            throw TenureError(.invalidArgument, "The killpath \(program) is not an executable file given by its absolute path.",
                              remedy: "Give the absolute path of an executable file.")
        }
        _ = try process(peer.pid, for: peer)
        core.setKillpath([program] + arguments, for: ProcessID(peer.pid))
        log.info("process \(peer.pid) (user \(peer.uid)) set its killpath: \(([program] + arguments).joined(separator: " "))")
    }

    /// set_config: whether something outside the daemon uses the lockspace.
    private func markUsed(_ lockspace: LeaseName, _ use: LockspaceUse) throws {
        let key = try joinedLockspace(lockspace.description).key
        switch use {
        case .used: core.markUsed(key, true)
        case .unused: core.markUsed(key, false)
        // Orphans always keep their lockspace from being left here.
        case .usedByOrphans: break
        case .unusedByOrphans:
            throw TenureError(.invalidArgument, "In Tenure orphan leases always keep their lockspace from being left (SANLK_CONFIG_USED_BY_ORPHANS, always on).",
                              remedy: "Release the orphans (SANLK_REL_ORPHAN) before leaving.")
        }
    }

    /// The lockspace and name of the lease an LVB command names.
    private func leaseNamed(_ reference: LeaseReference, _ peer: Peer) throws -> (LeaseName, LeaseName) {
        switch reference {
        case .heldBy(let subject, let name):
            let lease = try heldLease(name, of: try target(subject, peer))
            return (lease.resource.lockspace, lease.resource.name)
        case .onThisHost(let lockspace, let name):
            return (lockspace, name)
        }
    }
}
