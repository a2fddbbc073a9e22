import Glibc
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost

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
    /// One index operation, as either protocol asks it.
    func indexOperation(_ request: IndexRequest) async throws -> Reply {
        switch request {
        case .format(let index, let layout, let maxResources):
            try await formatIndex(index, layout: layout, maxResources: maxResources)
            return .done
        case .rebuild(let index, let useLockspace):
            try await rebuildIndex(index, useLockspace: useLockspace)
            return .done
        case .lookup(let index, let name, let offset, let useLockspace):
            return try await lookupIndex(index, name: name, offset: offset, useLockspace: useLockspace)
        case .add(let index, let name, let offset, let useLockspace):
            try await updateIndex(index, offset: offset, listing: name, useLockspace: useLockspace)
            return .indexEntry(name: name, offset: offset, exact: true)
        case .remove(let index, let offset, let useLockspace):
            try await updateIndex(index, offset: offset, listing: nil, useLockspace: useLockspace)
            return .indexEntry(name: .empty, offset: 0, exact: true)
        case .create(let index, let name, let numHosts):
            return .indexEntry(name: name, offset: try await createResource(index, name: name, numHosts: numHosts), exact: true)
        case .delete(let index, let name, let offset):
            return .indexEntry(name: name, offset: try await deleteResource(index, name: name, offset: offset), exact: true)
        }
    }

    /// format: the index and its guard lease, laid out (no lockspace needed).
    func formatIndex(_ index: IndexSpec, layout: AreaLayout, maxResources: Int) async throws {
        let header = try await withDevice(index.disk.path) { device in
            try await ResourceIndexArea.format(on: device, at: index.disk.offset, lockspace: index.lockspace,
                                               geometry: try Self.geometry(layout, device: device), maxResources: maxResources)
        }
        log.info("formatted the resource index of \(index.lockspace) at \(index.disk) (\(header.geometry), \(header.maxResources) entries)")
    }

    /// lookup: by name, by offset, both (not exact when the index names
    /// another resource there), or neither (the first free area).
    /// Reads only; takes no lease, as sanlock does.
    func lookupIndex(_ index: IndexSpec, name: LeaseName, offset: UInt64, useLockspace: Bool) async throws -> Reply {
        try await withIndex(index, useLockspace: useLockspace) { device, layout in
            let entries = layout.entries(in: try await ResourceIndexArea.readArea(on: device, layout.header))
            let (found, matches) = try ResourceIndexArea.lookup(name: name, offset: offset, in: entries, layout)
            return .indexEntry(name: found.name, offset: found.resourceOffset, exact: matches)
        }
    }

    /// update: lists `listing` at `offset`, or (nil) unlists the offset.
    /// The lease area itself is not touched.
    func updateIndex(_ index: IndexSpec, offset: UInt64, listing: LeaseName?, useLockspace: Bool) async throws {
        try await withIndex(index, useLockspace: useLockspace) { device, layout in
            let i = try layout.entry(forResourceAt: offset)
            try await self.underIndexLease(layout, device, index, useLockspace: useLockspace) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let written = listing.map { ResourceIndexEntry(resourceOffset: offset, name: $0) } ?? .free
                try await ResourceIndexArea.write(written, asEntry: i, of: &area, layout, on: device)
            }
            log.info("resource index of \(index.lockspace): entry \(i) \(listing.map { "lists \($0) at \(offset)" } ?? "is free")")
        }
    }

    /// create_resource: a new lease in the first free area, then its entry
    /// (the lease first: the index never lists an area not laid out).
    /// Answers the new lease's offset.
    func createResource(_ index: IndexSpec, name: LeaseName, numHosts: Int) async throws -> UInt64 {
        guard !name.isEmpty else { throw TenureError(.invalidArgument, "create_resource names no resource.", remedy: "Give the new lease's name.") }
        return try await withIndex(index, useLockspace: true) { device, layout in
            let geometry = layout.header.geometry
            guard numHosts <= geometry.maxHosts else {
                throw TenureError(.invalidArgument, "num_hosts \(numHosts) is over \(geometry.maxHosts), what a \(geometry) lease holds.",
                                  remedy: "Ask for at most \(geometry.maxHosts), or 0 for all.")
            }
            return try await self.underIndexLease(layout, device, index, useLockspace: true) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let entries = layout.entries(in: area)
                if entries.contains(where: { $0.name == name }) {
                    throw TenureError(.alreadyExists, "The resource index of \(index.lockspace) lists \(name) already.",
                                      remedy: "Look it up (`sanlock client lookup`), or delete it first.")
                }
                let i = try ResourceIndexArea.firstFree(entries, layout)
                let offset = layout.resourceOffset(ofEntry: i)
                try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
                try await self.takingAnyLease(at: offset, on: device, index) {
                    try await self.requireIndexLockspaceValid(index)
                    try await LeaseAreas.initialiseResource(on: device, at: offset, lockspace: layout.header.lockspace, name: name,
                                                            geometry: geometry, numHosts: numHosts == 0 ? geometry.maxHosts : numHosts)
                }
                try await ResourceIndexArea.write(ResourceIndexEntry(resourceOffset: offset, name: name), asEntry: i, of: &area, layout, on: device)
                log.info("resource index of \(index.lockspace): created \(name) at \(index.disk.path):\(offset) (entry \(i))")
                return offset
            }
        }
    }

    /// delete_resource: unlists the name, then clears its area — after
    /// acquiring its lease, so that no one holds what is cleared. Answers
    /// the offset of the lease it deleted.
    func deleteResource(_ index: IndexSpec, name: LeaseName, offset asked: UInt64) async throws -> UInt64 {
        try await withIndex(index, useLockspace: true) { device, layout in
            if asked != 0 { _ = try layout.entry(forResourceAt: asked) }
            return try await self.underIndexLease(layout, device, index, useLockspace: true) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let i = try ResourceIndexArea.find(name, in: layout.entries(in: area), layout)
                let offset = layout.resourceOffset(ofEntry: i)
                // Taken before the entry goes: a lease someone holds stays listed.
                try await self.takingAnyLease(at: offset, on: device, index) {
                    try await ResourceIndexArea.write(.free, asEntry: i, of: &area, layout, on: device)
                    try await self.requireIndexLockspaceValid(index)
                    let geometry = layout.header.geometry
                    try await device.write(LeaseAreas.resourceImage(lockspace: layout.header.lockspace, name: name, geometry: geometry,
                                                                      numHosts: geometry.maxHosts, cleared: true), at: offset)
                }
                log.info("resource index of \(index.lockspace): deleted \(name) at \(index.disk.path):\(offset) (entry \(i))")
                return offset
            }
        }
    }

    /// rebuild: every entry written again from the leases found after the
    /// index. Without the lockspace (SANLK_RX_NO_LOCKSPACE) it takes no lease, as sanlock.
    func rebuildIndex(_ index: IndexSpec, useLockspace: Bool) async throws {
        try await withIndex(index, useLockspace: useLockspace) { device, layout in
            try await self.underIndexLease(layout, device, index, useLockspace: useLockspace) {
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let found = try await ResourceIndexArea.leasesFound(on: device, layout)
                area = ResourceIndexArea.rebuilt(area, found: found, layout)
                if useLockspace { try await self.requireIndexLockspaceValid(index) }
                try await ResourceIndexArea.writeArea(area, on: device, layout.header)
                log.info("resource index of \(index.lockspace): rebuilt, \(found.filter { !$0.isFree }.count) leases listed")
            }
        }
    }

    // MARK: The steps

    /// Runs `body` on the index `index` names, its header read and checked.
    /// Using the lockspace (no SANLK_RX_NO_LOCKSPACE): it must be joined
    /// here, and only one index operation per lockspace runs at a time.
    private func withIndex<T>(_ index: IndexSpec, useLockspace exclusive: Bool, _ body: (any BlockDevice, ResourceIndexLayout) async throws -> T) async throws -> T {
        let name = index.lockspace
        if exclusive {
            _ = try joinedLockspace(name.description)
            guard !indexWork.contains(name) else {
                throw TenureError(.leaseInUse, "Another change to the resource index of \(name) is under way on this host.", remedy: "Retry when it is done.")
            }
            indexWork.insert(name)
        }
        defer { if exclusive { indexWork.remove(name) } }
        return try await withDevice(index.disk.path) { device in
            let header = try await ResourceIndexArea.readHeader(on: device, at: index.disk.offset, lockspace: name)
            return try await body(device, ResourceIndexLayout(header))
        }
    }

    /// Runs `body` holding the index's guard lease (unless the caller
    /// said not to use the lockspace), released after.
    private func underIndexLease<T>(_ layout: ResourceIndexLayout, _ device: any BlockDevice, _ index: IndexSpec, useLockspace: Bool,
                                    _ body: () async throws -> T) async throws -> T {
        guard useLockspace else { return try await body() }
        let spec = ResourceSpec(lockspace: layout.header.lockspace, name: ResourceIndexLayout.indexLeaseName,
                                disks: [try LeaseDisk(path: index.disk.path, offset: layout.indexLeaseOffset)], lver: nil, shared: false)
        return try await holdingAreaLease(spec, releaseAfter: true, body)
    }

    /// Runs `body` (which writes the area at `offset`) holding the lease
    /// the area has now, if it has one: an area with a resource lease's
    /// magic is acquired first; one without (never laid out, or cleared)
    /// can be held by no one.
    private func takingAnyLease(at offset: UInt64, on device: any BlockDevice, _ index: IndexSpec, _ body: () async throws -> Void) async throws {
        let leader = try await LeaseAreas.readLeader(on: device, at: offset)
        guard leader.magic == Magic.paxosLease else { return try await body() }
        guard leader.validKind == .paxos else {
            throw TenureError(.badRecord, "The lease area at \(device.path):\(offset) carries a resource lease that cannot be read (bad checksum or version).",
                              remedy: "Look at it with `tenure direct dump \(device.path):\(offset)`; clear it with `tenure direct init` once no one uses it.")
        }
        guard leader.spaceName == index.lockspace else {
            throw TenureError(.nameMismatch, "The lease area at \(device.path):\(offset) holds a lease of lockspace \(leader.spaceName), not \(index.lockspace).",
                              remedy: "Check the index's place; rebuild it if it is wrong.")
        }
        let spec = ResourceSpec(lockspace: leader.spaceName, name: leader.resourceName,
                                disks: [try LeaseDisk(path: index.disk.path, offset: offset)], lver: nil, shared: false)
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
    private func requireIndexLockspaceValid(_ index: IndexSpec) async throws {
        observeLockspaces()
        try core.requireValid(index.lockspace, at: context.clock.now())
    }

}
