import Glibc
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureIO
import TenureSanlockWire

/// sanlock's protocol at the edge (docs/sanlock-compatibility.md): a
/// header and payload decoded (``SanlockRequest``) and mapped into the one
/// ``Request``; a ``Reply`` or a ``TenureError`` encoded as sanlock's
/// result codes and reply layouts. Nothing past this file sees sanlock's
/// flags or structs.
struct SanlockCodec: ConnectionCodec {
    let daemon: Daemon
    var name: String { "sanlock" }

    func read(from socket: LoopSocket, deadline: MonotonicInstant) async throws(TenureError) -> (SanlockHeader, SanlockRequest)? {
        guard let headerBytes = try await socket.receiveExactly(SanlockWire.headerBytes, eofAllowed: true, deadline: deadline) else { return nil }
        let header = try SanlockHeader(decoding: headerBytes)
        let payload = try await socket.receiveExactly(header.bytesToRead, deadline: deadline) ?? []
        return (header, try SanlockRequest.decode(header, payload: payload))
    }

    /// As sanlock does: a message that cannot be read ends the connection.
    func unreadable(_ error: TenureError) -> [UInt8]? { nil }
    func refusal(_ error: TenureError) -> [UInt8]? { nil }

    func keepsConnection(_ request: (SanlockHeader, SanlockRequest)) -> Bool {
        if request.1 == .register { return true }
        if case .regEvent = request.1 { return true }
        return false
    }

    func answer(_ request: (SanlockHeader, SanlockRequest), from peer: Peer, on socket: LoopSocket) async -> ConnectionAnswer {
        let (header, wire) = request
        guard let command = SanlockCommand(rawValue: header.command) else {
            return ConnectionAnswer(bytes: header.reply(result: -EINVAL).encoded, close: true, succeeded: false)
        }
        do {
            let reply = try await daemon.handle(try Self.request(wire, peer: peer), from: peer, socket: socket.fd.rawValue)
            return Self.encode(reply, answering: wire, header)
        } catch {
            let typed = error as? TenureError ?? TenureError(.cancelled, "The request was cancelled: \(error).")
            daemon.log.info("sanlock \(command) of process \(peer.pid) refused: \(typed)")
            return Self.refuse(wire, header, SanlockResult.code(for: typed, command: command))
        }
    }

    func replied(_ request: (SanlockHeader, SanlockRequest), _ answer: ConnectionAnswer, peer: Peer) async {
        if case .regEvent = request.1, answer.succeeded {
            await daemon.activateEventListener(peer.connection)
        }
    }

    // MARK: Decoding into the one request

    /// The request a sanlock message is: sanlock's flags and structs become
    /// typed values here, and only here.
    static func request(_ wire: SanlockRequest, peer: Peer) throws -> Request {
        switch wire {
        case .register:
            return .register
        case .addLockspace(let ls, let async, let ioTimeout):
            return .addLockspace(try lockspaceSpec(ls), hostName: nil,
                                 ioTimeout: try IOTimeout.requested(Int(ioTimeout), what: "The io_timeout of an add_lockspace request"), async: async)
        case .remLockspace(let ls, _):
            return .remLockspace(name: try LeaseName(ls.name, what: "lockspace name"))
        case .inqLockspace(let ls, let wait):
            return .inquireLockspace(name: try LeaseName(ls.name, what: "lockspace name"), hostID: HostID(ls.hostID), wait: wait)
        case .getLockspaces:
            return .listLockspaces
        case .getHosts(let name, let hostID):
            return .hosts(lockspace: try LeaseName(name, what: "lockspace name"), only: hostID == 0 ? nil : HostID(hostID))
        case .acquire(let target, let resources, let flags, _):
            return try acquire(subject(target), resources, flags: flags)
        case .release(let target, let resources, let flags):
            return try release(subject(target), resources, flags: flags)
        case .inquire(let target):
            return .inquire(try subject(target))
        case .convert(let target, let resource):
            return .convert(try subject(target), name: resource.name, shared: resource.isShared)
        case .request(let resource, let forceMode):
            return .request(resource: try resourceSpec(resource, keepLver: false), force: forceMode & SanlockFlags.requestForce != 0)
        case .killpath(let program, let arguments, let flags):
            var argv = arguments.split(separator: " ").map(String.init)
            if flags & 0x1 != 0 { argv.append(String(peer.pid)) }   // SANLK_KILLPATH_PID
            return .killpath(program: program, arguments: argv)
        case .restrict(let flags):
            var options: RestrictOptions = []
            if flags & SanlockFlags.restrictAll != 0 { options.insert(.all) }
            if flags & SanlockFlags.restrictSIGKILL != 0 { options.insert(.sigkillOnly) }
            if flags & SanlockFlags.restrictSIGTERM != 0 { options.insert(.sigtermOnly) }
            return .restrict(options)
        case .version:
            return .version
        case .shutdown(let force):
            return .shutdown(force: force)
        case .status(let depth):
            switch depth {
            case SanlockState.Kind.daemon.rawValue: return .status(.records(depth: .daemon))
            case SanlockState.Kind.client.rawValue: return .status(.records(depth: .clients))
            case SanlockState.Kind.lockspace.rawValue: return .status(.records(depth: .lockspaces))
            default: return .status(.records(depth: nil))
            }
        case .hostStatus(let name):
            return .hosts(lockspace: try LeaseName(name, what: "lockspace name"), only: nil)
        case .renewal(let name):
            return .renewal(lockspace: try LeaseName(name, what: "lockspace name"))
        case .logDump:
            return .logDump
        case .setConfig(let name, let command):
            return .markUsed(lockspace: try LeaseName(name, what: "lockspace name"), try lockspaceUse(command))
        case .examine:
            return .examine
        case .regEvent(let name):
            return .listenForEvents(lockspace: try LeaseName(name, what: "lockspace name"))
        case .endEvent(let name):
            return .endEvents(lockspace: try LeaseName(name, what: "lockspace name"))
        case .setEvent(let name, let event, let flags):
            return .setEvent(lockspace: try LeaseName(name, what: "lockspace name"),
                             HostEventRequest(to: HostID(event.hostID), generation: Generation(event.generation), event: event.event, data: event.data),
                             eventOptions(flags))
        case .writeLockspace(let ls, let maxHosts, let ioTimeout, _):
            // The layout is in the lockspace's own flags (SANLK_LSF_ALIGN*,
            // SANLK_LSF_SECTOR*), as libsanlock sends it; the header's flags
            // carry none. Reading the wrong word lays out the device's default
            // area instead — 8 MiB on a 4K disk where 1 MiB was asked, over
            // the leases that follow.
            let area = LockspaceArea(name: try LeaseName(ls.name, what: "lockspace name"), disk: try disk(ls.disk), layout: layout(ls.flags))
            return .writeLockspace(area, maxHosts: Int(maxHosts),
                                   ioTimeout: try IOTimeout.requested(Int(ioTimeout), what: "The io_timeout of a write_lockspace request"))
        case .writeResource(let r, let maxHosts, let numHosts, let flags):
            guard !r.disks.isEmpty else { throw noDisk(r) }
            let area = ResourceArea(lockspace: try LeaseName(r.lockspace, what: "lockspace name"), name: try LeaseName(r.name, what: "resource name"),
                                    disks: try r.disks.map(disk), layout: layout(r.flags))
            return .writeResource(area, maxHosts: Int(maxHosts), numHosts: Int(numHosts), clear: flags & SanlockFlags.writeClear != 0)
        case .readLockspace(let ls, _):
            return .readLockspace(try disk(ls.disk))
        case .readResource(let r, _):
            return .readResource(try firstDisk(r))
        case .readResourceOwners(let r, _):
            return .readResourceOwners(try firstDisk(r))
        case .align(let disk):
            return .align(path: disk.path)
        case .setLVB(let r, let bytes):
            return .setLVB(try onThisHost(r), bytes: bytes)
        case .getLVB(let r, let length):
            return .getLVB(try onThisHost(r), length: Int(length))
        case .formatIndex(let rx):
            return .index(.format(try index(rx), layout: layout(rx.flags), maxResources: Int(rx.maxResources)))
        case .rebuildIndex(let rx, let flags):
            return .index(.rebuild(try index(rx), useLockspace: flags & SanlockFlags.indexNoLockspace == 0))
        case .lookupIndex(let rx, let entry, let flags):
            return .index(.lookup(try index(rx), name: try LeaseName(entry.name, what: "resource name"), offset: entry.offset,
                                  useLockspace: flags & SanlockFlags.indexNoLockspace == 0))
        case .updateIndex(let rx, let entry, let flags):
            let useLockspace = flags & SanlockFlags.indexNoLockspace == 0
            if flags & SanlockFlags.indexUpdateRemove != 0 && entry.offset != 0 {
                return .index(.remove(try index(rx), offset: entry.offset, useLockspace: useLockspace))
            }
            guard flags & SanlockFlags.indexUpdateAdd != 0, !entry.name.isEmpty, entry.offset != 0 else {
                throw TenureError(.invalidArgument, "update_rindex needs SANLK_RXUP_ADD with a name and an offset, or SANLK_RXUP_REM with an offset.",
                                  remedy: "Give the flag and the entry's fields it needs.")
            }
            return .index(.add(try index(rx), name: try LeaseName(entry.name, what: "resource name"), offset: entry.offset, useLockspace: useLockspace))
        case .createResource(let rx, let entry, let numHosts):
            return .index(.create(try index(rx), name: try LeaseName(entry.name, what: "resource name"), numHosts: Int(numHosts)))
        case .deleteResource(let rx, let entry):
            return .index(.delete(try index(rx), name: try LeaseName(entry.name, what: "resource name"), offset: entry.offset))
        }
    }

    /// Whom a lease command is for: the registered caller, or a pid.
    private static func subject(_ target: SanlockRequest.Target) throws -> Subject {
        switch target {
        case .caller: .caller
        case .pid(let pid): .process(ProcessID(pid))
        }
    }

    private static func acquire(_ subject: Subject, _ resources: [SanlockResource], flags: UInt32) throws -> Request {
        let persistent = resources[0].flags & SanlockFlags.resPersistent != 0
        guard resources.allSatisfy({ ($0.flags & SanlockFlags.resPersistent != 0) == persistent }) else {
            throw TenureError(.invalidArgument, "One acquire mixes persistent and other resources.", remedy: "Acquire them apart.")
        }
        let shared = resources[0].isShared
        guard resources.allSatisfy({ $0.isShared == shared }) else {
            throw TenureError(.invalidArgument, "One acquire mixes shared and exclusive resources.", remedy: "Acquire the shared ones and the exclusive ones apart.")
        }
        let options = LeaseOptions(lvb: flags & SanlockFlags.acquireLVB != 0, persistent: persistent,
                                   adoptOrphan: flags & (SanlockFlags.acquireOrphan | SanlockFlags.acquireOrphanOnly) != 0,
                                   orphanOnly: flags & SanlockFlags.acquireOrphanOnly != 0)
        return .acquire(subject, shared: shared, resources: try resources.map { try resourceSpec($0, keepLver: true) }, options: options)
    }

    private static func release(_ subject: Subject, _ resources: [SanlockResource], flags: UInt32) throws -> Request {
        let all = flags & SanlockFlags.releaseAll != 0
        if flags & SanlockFlags.releaseRename != 0 {
            // The first resource is released, renamed as the second.
            guard resources.count == 2, flags & (SanlockFlags.releaseAll | SanlockFlags.releaseOrphan) == 0 else {
                throw TenureError(.invalidArgument, "A release with SANLK_REL_RENAME takes two resources: the lease, then its new name.",
                                  remedy: "Give the lease, then a resource carrying its new name.")
            }
            let newName = try LeaseName(resources[1].name, what: "new resource name")
            guard !newName.isEmpty else {
                throw TenureError(.invalidArgument, "A release with SANLK_REL_RENAME names no new name.", remedy: "Give the new name in the second resource.")
            }
            return .releaseRenaming(subject, lockspace: try LeaseName(resources[0].lockspace, what: "lockspace name"),
                                    name: try LeaseName(resources[0].name, what: "resource name"), to: newName)
        }
        if flags & SanlockFlags.releaseOrphan != 0 {
            guard let lockspace = resources.first?.lockspace else {
                throw TenureError(.invalidArgument, "A release of orphans names no lockspace.",
                                  remedy: "Name a resource of the lockspace (or its lockspace with SANLK_REL_ALL).")
            }
            return .releaseOrphans(lockspace: try LeaseName(lockspace, what: "lockspace name"), names: all ? ["*"] : resources.map(\.name))
        }
        return .release(subject, names: all ? ["*"] : resources.map(\.name))
    }

    private static func lockspaceUse(_ command: UInt32) throws -> LockspaceUse {
        switch command {
        case SanlockFlags.configUsed: return .used
        case SanlockFlags.configUnused: return .unused
        case SanlockFlags.configUsedByOrphans: return .usedByOrphans
        case SanlockFlags.configUnusedByOrphans: return .unusedByOrphans
        default:
            throw TenureError(.invalidArgument, "set_config \(command) is not a configuration command.",
                              remedy: "Use SANLK_CONFIG_USED, _UNUSED or _USED_BY_ORPHANS.")
        }
    }

    private static func eventOptions(_ flags: UInt32) -> EventOptions {
        var options: EventOptions = []
        if flags & SanlockFlags.setEventAllHosts != 0 { options.insert(.allHosts) }
        if flags & SanlockFlags.setEventCurrentGeneration != 0 { options.insert(.currentGeneration) }
        if flags & SanlockFlags.setEventReplace != 0 { options.insert(.replace) }
        if flags & SanlockFlags.setEventClearHost != 0 { options.insert(.clearHost) }
        if flags & SanlockFlags.setEventClearEvent != 0 { options.insert(.clearEvent) }
        return options
    }

    /// The sector size and alignment sanlock's align and sector flags name.
    static func layout(_ flags: UInt32) -> AreaLayout {
        AreaLayout(sectorSize: flags & SanlockFlags.sector4K != 0 ? .bytes4096 : flags & SanlockFlags.sector512 != 0 ? .bytes512 : nil,
                   alignment: LeaderFlags.alignment(in: flags))
    }

    static func lockspaceSpec(_ ls: SanlockLockspace) throws -> LockspaceSpec {
        LockspaceSpec(name: try LeaseName(ls.name, what: "lockspace name"), hostID: HostID(ls.hostID), disk: try disk(ls.disk))
    }

    static func resourceSpec(_ r: SanlockResource, keepLver: Bool) throws -> ResourceSpec {
        guard !r.disks.isEmpty else { throw noDisk(r) }
        let wantsLver = keepLver && r.flags & SanlockFlags.resLver != 0
        return ResourceSpec(lockspace: try LeaseName(r.lockspace, what: "lockspace name"), name: try LeaseName(r.name, what: "resource name"),
                            disks: try r.disks.map(disk), lver: wantsLver ? LeaseVersion(r.lver) : nil, shared: r.isShared)
    }

    private static func disk(_ disk: SanlockDisk) throws -> LeaseDisk {
        try LeaseDisk(path: disk.path, offset: disk.offset)
    }

    private static func firstDisk(_ r: SanlockResource) throws -> LeaseDisk {
        guard let first = r.disks.first else { throw noDisk(r) }
        return try disk(first)
    }

    private static func noDisk(_ r: SanlockResource) -> TenureError {
        TenureError(.invalidArgument, "Resource \(r.name) names no disk.", remedy: "Give the path and offset of its lease area.")
    }

    private static func onThisHost(_ r: SanlockResource) throws -> LeaseReference {
        .onThisHost(lockspace: try LeaseName(r.lockspace, what: "lockspace name"), name: try LeaseName(r.name, what: "resource name"))
    }

    private static func index(_ rx: SanlockRindex) throws -> IndexSpec {
        IndexSpec(lockspace: try LeaseName(rx.lockspace, what: "lockspace name"), disk: try disk(rx.disk))
    }

    // MARK: Encoding the answer

    /// `reply` in sanlock's layout for the command `wire` was.
    static func encode(_ reply: Reply, answering wire: SanlockRequest, _ header: SanlockHeader) -> ConnectionAnswer {
        func answer(_ result: Int32 = 0, data2: UInt32 = 0, payload: [UInt8] = [], close: Bool = false) -> ConnectionAnswer {
            ConnectionAnswer(bytes: header.reply(result: result, data2: data2, payloadBytes: payload.count).encoded + payload, close: close,
                             succeeded: result >= 0)
        }
        switch reply {
        case .done, .fields, .joining:
            // libsanlock reads no reply to register.
            if wire == .register { return ConnectionAnswer(bytes: nil) }
            return answer()
        case .version:
            return ConnectionAnswer(bytes: SanlockHeader(command: header.command, data: 0, data2: SanlockWire.versionCombined).encoded)
        case .lockspaceState(let state):
            switch state {
            case .joined: return answer(0)
            case .joining: return answer(-EINPROGRESS)
            case .absent: return answer(-ENOENT)
            }
        case .lockspaces(let all):
            return answer(data2: UInt32(all.count), payload: all.flatMap { SanlockLockspace($0).encoded })
        case .held(let leases):
            let states = leases.map { SanlockResource(held: $0).stateString }.sorted()
            guard !states.isEmpty else { return answer() }
            return answer(data2: UInt32(states.count), payload: Array(states.joined(separator: " ").utf8) + [0])
        case .records(let records):
            // The stream of records ends when the connection closes.
            return answer(payload: records.flatMap { SanlockState($0).encoded }, close: true)
        case .hosts(let hosts):
            if case .getHosts = wire {
                return answer(data2: UInt32(hosts.count), payload: hosts.flatMap { SanlockHost($0).encoded })
            }
            return answer(payload: hosts.flatMap { host in
                SanlockState(kind: .host, data32: UInt32(truncatingIfNeeded: host.id.rawValue), data64: host.record.timestamp.rawValue, name: "",
                             text: "owner_id=\(host.id.rawValue) owner_generation=\(host.record.ownerGeneration.rawValue) timestamp=\(host.record.timestamp.rawValue) io_timeout=\(host.record.ioTimeout.seconds)").encoded
            }, close: true)
        case .renewals(let renewals):
            guard case .renewal(let name) = wire else { return answer() }
            return answer(payload: renewals.flatMap { SanlockState(kind: .renewal, name: name, text: $0.sanlockText).encoded }, close: true)
        case .log(let text):
            // libsanlock reads `data` bytes after the header.
            let bytes = Array(text.utf8) + [0]
            return ConnectionAnswer(bytes: SanlockHeader(command: header.command, length: UInt32(SanlockWire.headerBytes + bytes.count),
                                                         seq: header.seq, data: UInt32(bytes.count)).encoded + bytes, close: true)
        case .lockspaceArea(let name, let ioTimeout):
            guard case .readLockspace(var found, _) = wire else { return answer() }
            found.name = name.description
            found.hostID = 0
            return answer(data2: UInt32(ioTimeout.seconds), payload: found.encoded)
        case .resourceArea(let lockspace, let name, let lver):
            guard case .readResource(var found, _) = wire else { return answer() }
            found.lockspace = lockspace.description
            found.name = name.description
            found.lver = lver.rawValue
            return answer(payload: Array(found.encoded.prefix(SanlockWire.resourceBytes)))
        case .owners(let lver, let shared, let owners):
            guard case .readResourceOwners(var found, _) = wire else { return answer() }
            found.lver = lver.rawValue
            if shared { found.flags |= SanlockFlags.resShared }
            let hosts = owners.map {
                SanlockHost(hostID: $0.hostID.rawValue, generation: $0.generation.rawValue, timestamp: $0.timestamp ?? 0, ioTimeout: 0, flags: 0)
            }
            return answer(data2: UInt32(hosts.count), payload: Array(found.encoded.prefix(SanlockWire.resourceBytes)) + hosts.flatMap(\.encoded))
        case .alignment(let alignment):
            return answer(Int32(alignment.bytes))
        case .lvb(let bytes):
            return answer(payload: bytes)
        case .indexEntry(let name, let offset, let exact):
            // sanlock's delete_resource answers an empty entry.
            if case .deleteResource = wire { return answer(payload: SanlockRentry().encoded) }
            return answer(exact ? 0 : SanlockResult.rindexDiff, payload: SanlockRentry(name: name.description, offset: offset).encoded)
        }
    }

    /// A refusal in sanlock's layout: the result code, and for the index
    /// commands that answer with an entry whatever the result, an empty one.
    static func refuse(_ wire: SanlockRequest, _ header: SanlockHeader, _ result: Int32) -> ConnectionAnswer {
        switch wire {
        case .lookupIndex, .updateIndex, .createResource, .deleteResource:
            let entry = SanlockRentry().encoded
            return ConnectionAnswer(bytes: header.reply(result: result, payloadBytes: entry.count).encoded + entry, succeeded: false)
        default:
            return ConnectionAnswer(bytes: header.reply(result: result).encoded, succeeded: false)
        }
    }
}

extension SanlockLockspace {
    /// A lockspace listed here (SANLK_LSF_ADD while it is being joined).
    init(_ listing: LockspaceListing) {
        self.init(listing.spec, flags: listing.joining ? 0x1 : 0)
    }
}

extension SanlockHost {
    /// A host as get_hosts shows it: this host is live.
    init(_ host: HostView) {
        let state: UInt32
        switch host.isSelf ? .live : host.state {
        case .free?: state = SanlockFlags.hostFree
        case .live?: state = SanlockFlags.hostLive
        case .failing?: state = SanlockFlags.hostFail
        case .dead?: state = SanlockFlags.hostDead
        case .unknown?, nil: state = SanlockFlags.hostUnknown
        }
        self.init(hostID: host.id.rawValue, generation: host.record.ownerGeneration.rawValue, timestamp: host.record.timestamp.rawValue,
                  ioTimeout: UInt32(host.record.ioTimeout.seconds), flags: state)
    }
}

extension SanlockResource {
    /// A lease held here, as sanlock describes it: its lver, and
    /// SANLK_RES_SHARED when shared.
    init(held lease: HeldLease) {
        self.init(lockspace: lease.resource.lockspace.description, name: lease.resource.name.description, lver: lease.lver.rawValue,
                  flags: lease.shared ? SanlockFlags.resShared : 0, disks: lease.resource.disks.map(SanlockDisk.init))
    }
}

extension SanlockState {
    /// One status record as `sanlock client status` reads it.
    init(_ record: StatusRecord) {
        switch record {
        case .daemon(let facts):
            self.init(kind: .daemon, name: facts.hostName,
                      text: "our_host_name=\(facts.hostName) use_watchdog=\(facts.watchdog ? 1 : 0) high_priority=\(facts.realtime ? 1 : 0) mlock_level=\(facts.lockMemory ? 1 : 0) io_timeout=\(facts.ioTimeout.seconds) watchdog_fire_timeout=\(facts.watchdogFireSeconds) version_str=tenure")
        case .client(let pid):
            self.init(kind: .client, data32: UInt32(bitPattern: pid), name: String(pid), text: "pid=\(pid)")
        case .lockspace(let listing):
            let ls = SanlockLockspace(listing)
            self.init(kind: .lockspace, data64: ls.hostID, name: ls.name, text: "list=\(listing.joining ? "add" : "spaces")", trailer: ls.encoded)
        case .orphan(let orphan):
            var resource = SanlockResource(held: orphan)
            resource.flags |= SanlockFlags.resPersistent
            self.init(kind: .resource, data32: 0, data64: orphan.lver.rawValue, name: resource.name,
                      text: "list=orphan lver=\(orphan.lver.rawValue)", trailer: resource.encoded)
        case .lease(let lease, let pid):
            let resource = SanlockResource(held: lease)
            self.init(kind: .resource, data32: UInt32(bitPattern: pid.rawValue), data64: lease.lver.rawValue,
                      name: resource.name, text: "list=held lver=\(lease.lver.rawValue)", trailer: resource.encoded)
        }
    }
}
