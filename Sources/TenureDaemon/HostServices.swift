import Glibc
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureSanlockWire
import TenureSyscall

/// The operations sanlock's clients brought, on the daemon's side of the
/// one handler: lockspace state, status records, lease areas, host events.
/// Protocol-neutral: the codecs encode what these answer.
extension Daemon {
    // MARK: Lockspaces

    /// Whether lockspace `name` is joined here and valid (with `hostID`,
    /// unless `.none`), being joined, or neither (a lockspace lost here
    /// too). With `wait`, a join in progress is waited out.
    func lockspaceState(_ name: LeaseName, hostID: HostID, wait: Bool) async -> LockspaceState {
        while wait && core.joining[name] != nil {
            try? await context.clock.sleep(for: Timeouts.sanlockJoinPoll)
        }
        if core.joining[name] != nil { return .joining }
        guard let joined = lockspaces[name], joined.spec.hostID == hostID || hostID.isNone else { return .absent }
        let now = context.clock.now()
        return await onRenewalThread { await joined.lockspace.isValid(at: now) } ? .joined : .absent
    }

    /// Every lockspace joined or being joined here.
    func lockspaceList() -> [LockspaceListing] {
        lockspaces.values.sorted { $0.spec.name.description < $1.spec.name.description }.map { LockspaceListing(spec: $0.spec, joining: false) }
            + core.joining.values.sorted { $0.name.description < $1.name.description }.map { LockspaceListing(spec: $0, joining: true) }
    }

    // MARK: Status

    /// The records of sanlock's status: the daemon, its connected
    /// processes, its lockspaces (and those being joined), and every held
    /// lease with its holder. `depth` stops after one kind.
    func statusRecords(depth: StatusView.StatusDepth?) -> [StatusRecord] {
        var records: [StatusRecord] = [.daemon(DaemonFacts(config))]
        if depth == .daemon { return records }
        records += connections.keys.sorted().map { .client(pid: $0) }
        if depth == .clients { return records }
        records += lockspaceList().map { .lockspace($0) }
        if depth == .lockspaces { return records }
        records += core.orphans.values.sorted { $0.resource.name.description < $1.resource.name.description }.map { .orphan($0) }
        for (pid, leases) in core.leases.sorted(by: { $0.key < $1.key }) {
            records += leases.values.sorted { $0.resource.name.description < $1.resource.name.description }.map { .lease($0, pid: pid) }
        }
        return records
    }

    // MARK: Lease areas

    /// The geometry a layout names, else the device's default.
    static func geometry(_ layout: AreaLayout, device: any BlockDevice) throws -> LeaseGeometry {
        try LeaseAreas.geometry(sectorSize: layout.sectorSize, alignment: layout.alignment, device: device)
    }

    static let releaseFirst = "Release those leases (and leave the lockspace) first."

    /// write_lockspace: lays out a lockspace area, unless hosts are joined to it.
    func writeLockspace(_ area: LockspaceArea, maxHosts: Int, ioTimeout: IOTimeout?) async throws {
        let io = ioTimeout ?? config.ioTimeout
        try await withDevice(area.disk.path) { device in
            let geometry = try Self.geometry(area.layout, device: device)
            guard maxHosts <= geometry.maxHosts else {
                throw TenureError(.invalidArgument, "max_hosts \(maxHosts) is over \(geometry.maxHosts), what a \(geometry) area holds.",
                                  remedy: "Ask for at most \(geometry.maxHosts) hosts, or a larger alignment.")
            }
            // sanlock would overwrite them; Tenure never takes a lease away by re-initialising.
            try await LeaseAreas.refuseToOverwriteHeld(on: device, at: area.disk.offset, length: geometry.alignment.bytes,
                                                       remedy: Self.releaseFirst)
            try await LeaseAreas.initialiseLockspace(on: device, at: area.disk.offset, name: area.name, geometry: geometry, ioTimeout: io)
        }
        log.info("laid out lockspace \(area.name) at \(area.disk)")
    }

    /// write_resource: lays out a resource area, unless it is held.
    func writeResource(_ area: ResourceArea, maxHosts: Int, numHosts: Int, clear: Bool) async throws {
        guard !clear else {
            throw TenureError(.invalidArgument, "SANLK_WRITE_CLEAR is not served.", remedy: "Write the resource without it.")
        }
        guard area.disks.count == 1 else {
            throw TenureError(.invalidArgument, "write_resource on \(area.disks.count) disks is not served yet.", remedy: "Write each disk's area apart.")
        }
        let disk = area.disks[0]
        try await withDevice(disk.path) { device in
            let geometry = try Self.geometry(area.layout, device: device)
            let hosts = numHosts == 0 ? geometry.maxHosts : numHosts
            try await LeaseAreas.refuseToOverwriteHeld(on: device, at: disk.offset, length: geometry.alignment.bytes,
                                                       remedy: Self.releaseFirst)
            try await LeaseAreas.initialiseResource(on: device, at: disk.offset, lockspace: area.lockspace, name: area.name,
                                                    geometry: geometry, numHosts: hosts)
        }
        log.info("laid out resource \(area.name) of \(area.lockspace) at \(disk)")
    }

    /// read_lockspace, read_resource: the area's leader, checked to be of `kind`.
    func readLeader(at disk: LeaseDisk, as kind: LeaseKind) async throws -> LeaderRecord {
        try await withDevice(disk.path) { device in
            let leader = try await LeaseAreas.readLeader(on: device, at: disk.offset)
            return try leader.verified(as: kind, lockspace: nil, resource: nil, at: "\(disk.path):\(disk.offset)")
        }
    }

    /// read_resource_owners: the leader's owner (when it names one with a
    /// timestamp) and every host whose mode block marks it shared, as
    /// sanlock reads them; with the lver, and whether anyone shares it.
    func readResourceOwners(_ disk: LeaseDisk) async throws -> Reply {
        let snapshot = try await withDevice(disk.path) { device in
            try await LeaseAreas.readResource(on: device, at: disk.offset, lockspace: nil, name: nil)
        }
        let leader = snapshot.leader
        var owners: [LeaseOwner] = []
        let owned = !leader.timestamp.isFree && !leader.ownerID.isNone
        if owned {
            owners.append(LeaseOwner(hostID: leader.ownerID, generation: leader.ownerGeneration, timestamp: leader.timestamp.rawValue))
        }
        var shared = false
        for slot in snapshot.dblocks where slot.mode.isShared {
            shared = true
            if owned && slot.hostID == leader.ownerID { continue }
            owners.append(LeaseOwner(hostID: slot.hostID, generation: slot.mode.generation, timestamp: nil))
        }
        return .owners(lver: leader.lver, shared: shared, owners)
    }

    // MARK: Host events

    /// set_event: carries `event` to its host (or all hosts) in our delta
    /// lease. Refused as busy when another event set less than 6N ago
    /// would be replaced without ``EventOptions/replace``.
    func setHostEvent(_ name: LeaseName, _ event: HostEventRequest, _ options: EventOptions) async throws {
        try await onRenewalThread { () async throws in try await setHostEventHere(name, event, options) }
    }

    private func setHostEventHere(_ name: LeaseName, _ event: HostEventRequest, _ options: EventOptions) async throws {
        let (key, joined) = try joinedLockspace(name.description)
        guard let local = await joined.lockspace.localHost else {
            throw TenureError(.noLockspace, "Lockspace \(name) is not joined on this host.", remedy: "Join it first.")
        }
        let maxHosts = UInt64(joined.lockspace.observer.geometry.maxHosts)
        guard event.to.rawValue >= 1, event.to.rawValue <= maxHosts else {
            throw TenureError(.invalidArgument, "Host \(options.contains(.allHosts) ? "all" : event.to.description) is not a host id of lockspace \(name) (1...\(maxHosts)).",
                              remedy: "Name a host id of the lockspace.")
        }
        let target = event.to
        let now = context.clock.now()
        let current = await joined.lockspace.hold?.written.hostEvent ?? .none
        if options.contains(.clearEvent) {
            try await joined.lockspace.setEvent(.none, for: [])
            return
        }
        if options.contains(.clearHost) {
            try await joined.lockspace.setEvent(current, for: [], clearing: [target])
            return
        }
        if !options.contains(.replace), let last = eventSet[key], now < last.at + joined.lockspace.timeouts.renewalWarning,
           last.event.event != 0, event.event != 0, last.event.event != event.event {
            throw TenureError(.leaseInUse, "Lockspace \(name) carries event \(last.event.event), set less than 6N ago.",
                              remedy: "Wait for it to be seen, or replace it (SANLK_SETEV_REPLACE_EVENT).")
        }
        var generation = event.generation
        if generation == .zero, options.contains(.currentGeneration) {
            generation = try await joined.lockspace.observer.observeRange(upTo: target).first { $0.0 == target }?.1.ownerGeneration ?? .zero
        }
        let carried = HostEvent(generation: generation, event: event.event, data: event.data)
        let recipients = options.contains(.allHosts)
            ? (1...maxHosts).map { HostID($0) }.filter { $0 != local.id } : [target]
        try await joined.lockspace.setEvent(carried, for: recipients)
        eventSet[key] = (carried, now)
        // The bits are cleared after 6N, as a request's are (clearOldSignals).
        signalledAt[key] = now
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

/// What sanlock's status shows of the daemon itself.
struct DaemonFacts: Sendable {
    let hostName: String
    let watchdog: Bool
    let realtime: Bool
    let lockMemory: Bool
    let ioTimeout: IOTimeout
    let watchdogFireSeconds: Int64

    init(_ config: DaemonConfig) {
        hostName = config.hostName
        watchdog = config.watchdogDevice != nil
        realtime = config.realtime
        lockMemory = config.lockMemory
        ioTimeout = config.ioTimeout
        watchdogFireSeconds = config.watchdogFire.components.seconds
    }
}
