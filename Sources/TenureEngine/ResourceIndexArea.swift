import TenureCore
import TenureFormat

/// The resource index's I/O (its layout: ``ResourceIndexHeader``): laying
/// one out, reading it, changing one entry, and finding the leases after it.
/// Every write stays inside the index's two areas or the one lease area it
/// names. Who may change what, under which lease, is the daemon's to decide.
public enum ResourceIndexArea {
    /// Lays out an index at `offset`: its area (header, no entries) and
    /// the paxos lease guarding it in the next area. Refuses to write over
    /// a lease someone holds, and `maxResources` past the geometry's
    /// capacity; 0 or nil takes ``ResourceIndexLayout/defaultMaxResources``.
    public static func format(on device: any BlockDevice, at offset: UInt64, lockspace: LeaseName,
                              geometry: LeaseGeometry, maxResources: Int?) async throws -> ResourceIndexHeader {
        let align = UInt64(geometry.alignment.bytes)
        try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
        try geometry.validate(areaOffset: offset + align, deviceSize: device.sizeBytes, path: device.path)
        let capacity = ResourceIndexLayout.capacity(of: geometry)
        let asked = maxResources ?? 0
        let header = ResourceIndexHeader(geometry: geometry, maxResources: min(asked == 0 ? ResourceIndexLayout.defaultMaxResources : asked, capacity),
                                         offset: offset, lockspace: lockspace)
        try await LeaseAreas.refuseToOverwriteHeld(on: device, at: offset, length: 2 * geometry.alignment.bytes,
                                                   remedy: "Release the leases there first, or format the index somewhere else.")
        var area = [UInt8](repeating: 0, count: geometry.alignment.bytes)
        area.replaceSubrange(0..<geometry.sectorSize.bytes, with: header.encodedSector())
        try await device.write(area, at: offset)
        try await LeaseAreas.initialiseResource(on: device, at: offset + align, lockspace: lockspace, name: ResourceIndexLayout.indexLeaseName,
                                                geometry: geometry, numHosts: geometry.maxHosts)
        return header
    }

    /// Reads and checks the header at `offset` (for `lockspace`, if given).
    public static func readHeader(on device: any BlockDevice, at offset: UInt64, lockspace: LeaseName?) async throws -> ResourceIndexHeader {
        let place = "\(device.path):\(offset)"
        guard offset % UInt64(device.sectorSize.bytes) == 0, offset + UInt64(device.sectorSize.bytes) <= device.sizeBytes else {
            throw TenureError(.outOfBounds, "No resource index can start at \(place): \(device.path) has \(device.sizeBytes) bytes of \(device.sectorSize)-byte sectors.",
                              remedy: "Give the offset the index was formatted at.")
        }
        let sector = try await device.read(at: offset, length: device.sectorSize.bytes)
        let header = try ResourceIndexHeader(decoding: sector[...], at: offset, lockspace: lockspace, place: place)
        try header.geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
        return header
    }

    /// The whole index area, header sector included: what a search reads.
    public static func readArea(on device: any BlockDevice, _ header: ResourceIndexHeader) async throws -> [UInt8] {
        try await device.read(at: header.offset, length: header.geometry.alignment.bytes)
    }

    /// Writes `entry` as entry `i`: the one sector holding it, the rest of
    /// that sector as `area` has it. `area` is updated to match the disk.
    public static func write(_ entry: ResourceIndexEntry, asEntry i: Int, of area: inout [UInt8], _ layout: ResourceIndexLayout,
                             on device: any BlockDevice) async throws {
        precondition(i >= 0 && i < layout.header.maxResources, "entry \(i) outside the index")
        let at = layout.entryOffset(i)
        area.replaceSubrange(at..<(at + ResourceIndexEntry.encodedBytes), with: entry.encoded)
        let sector = layout.sectorRange(ofEntry: i)
        try await device.write(Array(area[sector]), at: layout.header.offset + UInt64(sector.lowerBound))
    }

    /// Writes the whole index area (header and every entry), as rebuild does.
    public static func writeArea(_ area: [UInt8], on device: any BlockDevice, _ header: ResourceIndexHeader) async throws {
        precondition(area.count == header.geometry.alignment.bytes)
        try await device.write(area, at: header.offset)
    }

    /// The leases found in the index's lease areas, as the entries a
    /// rebuild writes: an area whose first sector carries a resource lease's
    /// magic is listed under the name it records (sanlock's rule: the
    /// magic alone, so a rebuild lists what sanlock's would). Stops at the
    /// end of the device.
    public static func leasesFound(on device: any BlockDevice, _ layout: ResourceIndexLayout) async throws -> [ResourceIndexEntry] {
        var found: [ResourceIndexEntry] = []
        for i in 0..<layout.header.maxResources {
            let offset = layout.resourceOffset(ofEntry: i)
            guard offset + UInt64(layout.header.geometry.sectorSize.bytes) <= device.sizeBytes else { break }
            let leader = try await LeaseAreas.readLeader(on: device, at: offset)
            found.append(leader.magic == Magic.paxosLease ? ResourceIndexEntry(resourceOffset: offset, name: leader.resourceName) : .free)
        }
        return found
    }
}

extension ResourceIndexArea {
    /// lookup's four questions: by name (`offset` 0), by offset (`name`
    /// empty), both (`matches` false when the index names another resource
    /// there), or neither (the first free area, no name).
    public static func lookup(name: LeaseName, offset: UInt64, in entries: [ResourceIndexEntry],
                              _ layout: ResourceIndexLayout) throws -> (found: ResourceIndexEntry, matches: Bool) {
        if offset != 0 {
            let listed = entries[try layout.entry(forResourceAt: offset)].name
            return (ResourceIndexEntry(resourceOffset: offset, name: listed), name.isEmpty || name == listed)
        }
        if name.isEmpty {
            return (ResourceIndexEntry(resourceOffset: layout.resourceOffset(ofEntry: try firstFree(entries, layout)), name: .empty), true)
        }
        return (ResourceIndexEntry(resourceOffset: layout.resourceOffset(ofEntry: try find(name, in: entries, layout)), name: name), true)
    }

    /// The first free entry; `.notFound` when every entry is used.
    public static func firstFree(_ entries: [ResourceIndexEntry], _ layout: ResourceIndexLayout) throws -> Int {
        guard let i = entries.firstIndex(where: \.isFree) else {
            throw TenureError(.notFound, "The resource index of \(layout.header.lockspace) has no free entry (\(layout.header.maxResources) in use).",
                              remedy: "Delete leases no longer used, or format a larger index.")
        }
        return i
    }

    /// The entry listing `name`; `.notFound` when none does.
    public static func find(_ name: LeaseName, in entries: [ResourceIndexEntry], _ layout: ResourceIndexLayout) throws -> Int {
        guard !name.isEmpty, let i = entries.firstIndex(where: { $0.name == name }) else {
            throw TenureError(.notFound, "The resource index of \(layout.header.lockspace) at offset \(layout.header.offset) does not list \"\(name)\".",
                              remedy: "Check the name; a rebuild lists the leases found after the index again.")
        }
        return i
    }

    /// The index area a rebuild writes: the header sector kept, every
    /// entry replaced by what `found` lists.
    public static func rebuilt(_ area: [UInt8], found: [ResourceIndexEntry], _ layout: ResourceIndexLayout) -> [UInt8] {
        var out = area
        let start = layout.entryOffset(0)
        out.replaceSubrange(start..<out.count, with: [UInt8](repeating: 0, count: out.count - start))
        for (i, entry) in found.enumerated() where !entry.isFree {
            let at = layout.entryOffset(i)
            out.replaceSubrange(at..<(at + ResourceIndexEntry.encodedBytes), with: entry.encoded)
        }
        return out
    }
}
