import Glibc
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureSanlockWire

/// sanlock's resource index, served to sanlock's clients: format, lookup,
/// update, create, delete and rebuild (docs/sanlock-compatibility.md).
///
/// Where Tenure is stricter than sanlock, it is so that no change to the
/// index can take a lease from anyone (docs/safety.md, "The resource index"):
/// - every change that writes a lease area — create over an area that still
///   holds a lease, delete — first *acquires* that lease as this host, so it
///   is never cleared or laid out again under a holder, here or elsewhere;
/// - update takes the index lease as create and delete do (sanlock writes
///   the entry unguarded), unless the caller said not to use the lockspace;
/// - create refuses a name the index lists already (sanlock lists it twice).
extension Daemon {
    /// format: the index and its guard lease, laid out (no lockspace needed).
    func formatIndex(_ rx: SanlockRindex) async throws {
        let name = try LeaseName(rx.lockspace, what: "lockspace name")
        let header = try await withDevice(rx.disk.path) { device in
            try await ResourceIndexArea.format(on: device, at: rx.disk.offset, lockspace: name,
                                               geometry: try Self.geometry(rx.flags, device: device), maxResources: Int(rx.maxResources))
        }
        log.info("formatted the resource index of \(name) at \(rx.disk.path):\(rx.disk.offset) (\(header.geometry), \(header.maxResources) entries)")
    }

    /// lookup: by name, by offset, both (SANLK_RINDEX_DIFF when the index
    /// names another resource there), or neither (the first free area).
    /// Reads only; takes no lease, as sanlock does.
    func lookupIndex(_ rx: SanlockRindex, _ asked: SanlockRentry, flags: UInt32) async throws -> (Int32, SanlockRentry) {
        let name = try LeaseName(asked.name, what: "resource name")
        return try await withIndex(rx, flags: flags) { device, layout in
            let entries = layout.entries(in: try await ResourceIndexArea.readArea(on: device, layout.header))
            let (found, matches) = try ResourceIndexArea.lookup(name: name, offset: asked.offset, in: entries, layout)
            return (matches ? 0 : SanlockResult.rindexDiff, SanlockRentry(name: found.name.description, offset: found.resourceOffset))
        }
    }

    /// update: lists `entry` (SANLK_RXUP_ADD, name and offset) or unlists
    /// the offset (SANLK_RXUP_REM). The lease area itself is not touched.
    func updateIndex(_ rx: SanlockRindex, _ entry: SanlockRentry, flags: UInt32) async throws -> SanlockRentry {
        let remove = flags & SanlockFlags.indexUpdateRemove != 0 && entry.offset != 0
        let add = !remove && flags & SanlockFlags.indexUpdateAdd != 0 && !entry.name.isEmpty && entry.offset != 0
        guard remove || add else {
            throw TenureError(.invalidArgument, "update_rindex needs SANLK_RXUP_ADD with a name and an offset, or SANLK_RXUP_REM with an offset.")
        }
        let name = add ? try LeaseName(entry.name, what: "resource name") : .empty
        return try await withIndex(rx, flags: flags) { device, layout in
            let i = try layout.entry(forResourceAt: entry.offset)
            try await self.underIndexLease(layout, device, rx, flags: flags) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let written = add ? ResourceIndexEntry(resourceOffset: entry.offset, name: name) : .free
                try await ResourceIndexArea.write(written, asEntry: i, of: &area, layout, on: device)
            }
            log.info("resource index of \(rx.lockspace): entry \(i) \(add ? "lists \(name) at \(entry.offset)" : "is free")")
            return add ? SanlockRentry(name: entry.name, offset: entry.offset) : SanlockRentry()
        }
    }

    /// create_resource: a new lease in the first free area, then its entry
    /// (the lease first: the index never lists an area not laid out).
    func createResource(_ rx: SanlockRindex, _ entry: SanlockRentry, numHosts: UInt32) async throws -> SanlockRentry {
        let name = try LeaseName(entry.name, what: "resource name")
        guard !name.isEmpty else { throw TenureError(.invalidArgument, "create_resource names no resource.", remedy: "Give the new lease's name.") }
        return try await withIndex(rx, flags: 0) { device, layout in
            let geometry = layout.header.geometry
            guard numHosts <= UInt32(geometry.maxHosts) else {
                throw TenureError(.invalidArgument, "num_hosts \(numHosts) is over \(geometry.maxHosts), what a \(geometry) lease holds.")
            }
            return try await self.underIndexLease(layout, device, rx, flags: 0) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let entries = layout.entries(in: area)
                if entries.contains(where: { $0.name == name }) {
                    throw TenureError(.alreadyExists, "The resource index of \(rx.lockspace) lists \(name) already.",
                                      remedy: "Look it up (`sanlock client lookup`), or delete it first.")
                }
                let i = try ResourceIndexArea.firstFree(entries, layout)
                let offset = layout.resourceOffset(ofEntry: i)
                try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
                try await self.takingAnyLease(at: offset, on: device, rx) {
                    try await self.requireIndexLockspaceValid(rx)
                    try await LeaseAreas.initialiseResource(on: device, at: offset, lockspace: layout.header.lockspace, name: name,
                                                            geometry: geometry, numHosts: numHosts == 0 ? geometry.maxHosts : Int(numHosts))
                }
                try await ResourceIndexArea.write(ResourceIndexEntry(resourceOffset: offset, name: name), asEntry: i, of: &area, layout, on: device)
                log.info("resource index of \(rx.lockspace): created \(name) at \(rx.disk.path):\(offset) (entry \(i))")
                return SanlockRentry(name: entry.name, offset: offset)
            }
        }
    }

    /// delete_resource: unlists the name, then clears its area — after
    /// acquiring its lease, so that no one holds what is cleared. Answers
    /// the entry it deleted (sanlock's clients are sent an empty one).
    func deleteResource(_ rx: SanlockRindex, _ entry: SanlockRentry) async throws -> SanlockRentry {
        let name = try LeaseName(entry.name, what: "resource name")
        return try await withIndex(rx, flags: 0) { device, layout in
            if entry.offset != 0 { _ = try layout.entry(forResourceAt: entry.offset) }
            return try await self.underIndexLease(layout, device, rx, flags: 0) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let i = try ResourceIndexArea.find(name, in: layout.entries(in: area), layout)
                let offset = layout.resourceOffset(ofEntry: i)
                // Taken before the entry goes: a lease someone holds stays listed.
                try await self.takingAnyLease(at: offset, on: device, rx) {
                    try await ResourceIndexArea.write(.free, asEntry: i, of: &area, layout, on: device)
                    try await self.requireIndexLockspaceValid(rx)
                    let geometry = layout.header.geometry
                    try await device.write(LeaseAreas.resourceImage(lockspace: layout.header.lockspace, name: name, geometry: geometry,
                                                                      numHosts: geometry.maxHosts, cleared: true), at: offset)
                }
                log.info("resource index of \(rx.lockspace): deleted \(name) at \(rx.disk.path):\(offset) (entry \(i))")
                return SanlockRentry(name: name.description, offset: offset)
            }
        }
    }

    /// rebuild: every entry written again from the leases found after the
    /// index. With SANLK_RX_NO_LOCKSPACE it takes no lease (as sanlock).
    func rebuildIndex(_ rx: SanlockRindex, flags: UInt32) async throws {
        try await withIndex(rx, flags: flags) { device, layout in
            try await self.underIndexLease(layout, device, rx, flags: flags) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let found = try await ResourceIndexArea.leasesFound(on: device, layout)
                area = ResourceIndexArea.rebuilt(area, found: found, layout)
                if flags & SanlockFlags.indexNoLockspace == 0 { try await self.requireIndexLockspaceValid(rx) }
                try await ResourceIndexArea.writeArea(area, on: device, layout.header)
                log.info("resource index of \(rx.lockspace): rebuilt, \(found.filter { !$0.isFree }.count) leases listed")
            }
        }
    }

    /// Tenure's own index request: the same operations sanlock's clients
    /// use, on the same code; answers the entry's name and offset.
    func indexEntry(_ action: DaemonRequest.IndexAction, _ index: IndexSpec, name: String, offset: UInt64) async throws -> [String] {
        let rx = SanlockRindex(lockspace: index.lockspace.description, disk: SanlockDisk(path: index.disk.path, offset: index.disk.offset))
        let asked = SanlockRentry(name: name, offset: offset)
        let entry: SanlockRentry
        switch action {
        case .lookup:
            let (result, found) = try await lookupIndex(rx, asked, flags: 0)
            guard result == 0 else {
                throw TenureError(.nameMismatch, "The index lists \(found.name.isEmpty ? "no resource" : found.name) at \(found.offset), not \(name).",
                                  remedy: "Look it up by name alone, or by offset alone.")
            }
            entry = found
        case .create:
            entry = try await createResource(rx, asked, numHosts: 0)
        case .delete:
            entry = try await deleteResource(rx, asked)
        }
        return [entry.name, String(entry.offset)]
    }

    // MARK: The steps

    /// Runs `body` on the index `rx` names, its header read and checked.
    /// Using the lockspace (no SANLK_RX_NO_LOCKSPACE): it must be joined
    /// here, and only one index operation per lockspace runs at a time.
    private func withIndex<T>(_ rx: SanlockRindex, flags: UInt32, _ body: (any BlockDevice, ResourceIndexLayout) async throws -> T) async throws -> T {
        let name = try LeaseName(rx.lockspace, what: "lockspace name")
        let exclusive = flags & SanlockFlags.indexNoLockspace == 0
        if exclusive {
            _ = try joinedLockspace(rx.lockspace)
            guard !indexWork.contains(name) else {
                throw TenureError(.leaseInUse, "Another change to the resource index of \(name) is under way on this host.", remedy: "Retry when it is done.")
            }
            indexWork.insert(name)
        }
        defer { if exclusive { indexWork.remove(name) } }
        return try await withDevice(rx.disk.path) { device in
            let header = try await ResourceIndexArea.readHeader(on: device, at: rx.disk.offset, lockspace: name)
            return try await body(device, ResourceIndexLayout(header))
        }
    }

    /// Runs `body` holding the index's guard lease (unless the caller
    /// said not to use the lockspace), released after.
    private func underIndexLease<T>(_ layout: ResourceIndexLayout, _ device: any BlockDevice, _ rx: SanlockRindex, flags: UInt32,
                                    _ body: () async throws -> T) async throws -> T {
        guard flags & SanlockFlags.indexNoLockspace == 0 else { return try await body() }
        let spec = ResourceSpec(lockspace: layout.header.lockspace, name: ResourceIndexLayout.indexLeaseName,
                                disks: [try LeaseDisk(path: rx.disk.path, offset: layout.indexLeaseOffset)], lver: nil, shared: false)
        return try await holdingAreaLease(spec, releaseAfter: true, body)
    }

    /// Runs `body` (which writes the area at `offset`) holding the lease
    /// the area has now, if it has one: an area with a resource lease's
    /// magic is acquired first; one without (never laid out, or cleared)
    /// can be held by no one.
    private func takingAnyLease(at offset: UInt64, on device: any BlockDevice, _ rx: SanlockRindex, _ body: () async throws -> Void) async throws {
        let leader = try await LeaseAreas.readLeader(on: device, at: offset)
        guard leader.magic == Magic.paxosLease else { return try await body() }
        guard leader.validKind == .paxos else {
            throw TenureError(.badRecord, "The lease area at \(device.path):\(offset) carries a resource lease that cannot be read (bad checksum or version).",
                              remedy: "Look at it with `tenure direct dump \(device.path):\(offset)`; clear it with `tenure direct init` once no one uses it.")
        }
        guard leader.spaceName.description == rx.lockspace else {
            throw TenureError(.nameMismatch, "The lease area at \(device.path):\(offset) holds a lease of lockspace \(leader.spaceName), not \(rx.lockspace).",
                              remedy: "Check the index's place; rebuild it if it is wrong.")
        }
        let spec = ResourceSpec(lockspace: leader.spaceName, name: leader.resourceName,
                                disks: [try LeaseDisk(path: rx.disk.path, offset: offset)], lver: nil, shared: false)
        // The body clears or lays out the area again: our hold ends with it.
        try await holdingAreaLease(spec, releaseAfter: false, body)
    }

    /// Holds `spec`'s lease as this host (not for a process) while `body`
    /// runs: local arbitration through the core, the engine's acquire
    /// without waiting, then `body`, then the release (if asked).
    private func holdingAreaLease<T>(_ spec: ResourceSpec, releaseAfter: Bool, _ body: () async throws -> T) async throws -> T {
        observeLockspaces()
        try core.beginAreaWork(spec, at: context.clock.now())
        defer { core.endAreaWork(spec) }
        return try await withDevices(of: spec) {
            let (joined, host) = try await self.joined(spec.lockspace)
            var resource = try await self.resource(spec)
            resource.participants = joined.lockspace.observer
            try resource.validate(host: host.id)
            let held = try await PaxosLease.acquire(resource, host: host, oracle: joined.lockspace.observer,
                                                    options: AcquireOptions(noWait: true), context: context)
            let result: T
            do {
                result = try await body()
            } catch {
                if releaseAfter { try? await PaxosLease.release(resource, held: held, context: context) }
                throw error
            }
            if releaseAfter { try await PaxosLease.release(resource, held: held, context: context) }
            return result
        }
    }

    /// Each write under a lease is issued only while the lockspace is valid.
    private func requireIndexLockspaceValid(_ rx: SanlockRindex) async throws {
        observeLockspaces()
        try core.requireValid(try LeaseName(rx.lockspace, what: "lockspace name"), at: context.clock.now())
    }

}
