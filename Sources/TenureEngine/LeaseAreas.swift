import TenureCore
import TenureFormat

/// Reading and initialising whole lease areas: what `tenure direct init`,
/// `format`, `read` and `dump` need, and what the engine reuses to look at a
/// lease. Every write stays inside the one area it was given.
public enum LeaseAreas {
    /// How the area's geometry is chosen: the caller's choice, checked
    /// against the device (a 512-byte layout cannot live on a 4096-byte device).
    public static func geometry(sectorSize: SectorSize?, alignment: Alignment?, device: any BlockDevice) throws -> LeaseGeometry {
        let sector = sectorSize ?? device.sectorSize
        guard sector.bytes >= device.sectorSize.bytes else {
            throw TenureError(
                .invalidGeometry,
                "\(device.path) has \(device.sectorSize)-byte sectors; a lease layout with \(sector)-byte sectors cannot be written to it.",
                remedy: "Use --sector-size \(device.sectorSize) (or leave it out to use the device's own).")
        }
        guard let alignment else { return LeaseGeometry.defaultFor(sector) }
        return try LeaseGeometry(sectorSize: sector, alignment: alignment)
    }

    // MARK: Initialising

    /// The bytes `init -s` writes: a free delta lease in every host slot,
    /// zeros in the rest of the area. Sector 0 is returned separately because
    /// it is written last: its magic commits the lockspace.
    public static func lockspaceImage(name: LeaseName, geometry: LeaseGeometry, ioTimeout: IOTimeout) -> (rest: [UInt8], sector0: [UInt8]) {
        var leader = LeaderRecord(kind: .delta, geometry: geometry, spaceName: name, resourceName: .empty)
        leader.maxHosts = 1
        leader.ioTimeout = ioTimeout
        let sector = leader.encodedSector(geometry.sectorSize, bitmap: HostBitmap())
        var area = [UInt8](repeating: 0, count: geometry.alignment.bytes)
        for host in 0..<geometry.maxHosts {
            let at = host * geometry.sectorSize.bytes
            area.replaceSubrange(at..<(at + sector.count), with: sector)
        }
        return (Array(area[geometry.sectorSize.bytes...]), sector)
    }

    /// The bytes `init -r` writes: the leader (free, lver 0) in sector 0, an
    /// empty request record in sector 1, zeros (never-written dblocks) after.
    /// `cleared`: the leader carries the cleared magic instead (sanlock's
    /// `init` with clear, and a deleted index entry's lease): its names
    /// stay for whoever looks, and no one can acquire it until it is laid
    /// out again.
    public static func resourceImage(lockspace: LeaseName, name: LeaseName, geometry: LeaseGeometry, numHosts: Int, cleared: Bool = false) -> [UInt8] {
        precondition(numHosts >= 1 && numHosts <= geometry.maxHosts)
        var leader = LeaderRecord(kind: .paxos, geometry: geometry, spaceName: lockspace, resourceName: name)
        if cleared { leader.magic = Magic.paxosCleared }
        leader.numHosts = UInt64(numHosts)
        leader.maxHosts = UInt64(geometry.maxHosts)
        var area = [UInt8](repeating: 0, count: geometry.alignment.bytes)
        let s = geometry.sectorSize.bytes
        area.replaceSubrange(0..<s, with: leader.encodedSector(geometry.sectorSize))
        area.replaceSubrange(s..<(2 * s), with: RequestRecord.none.encodedSector(geometry.sectorSize))
        return area
    }

    /// Checks `numHosts` for a resource of `geometry`.
    public static func validate(numHosts: Int, geometry: LeaseGeometry) throws {
        guard numHosts >= 1, numHosts <= geometry.maxHosts else {
            throw TenureError(
                .invalidArgument,
                "--max-hosts \(numHosts) is outside 1...\(geometry.maxHosts), the range a \(geometry) resource area holds.",
                remedy: "Use a number of hosts from 1 to \(geometry.maxHosts); fewer hosts make every acquire read less.")
        }
    }

    /// Writes a lockspace area: every sector but the first, then the first.
    public static func initialiseLockspace(on device: any BlockDevice, at offset: UInt64, name: LeaseName,
                                           geometry: LeaseGeometry, ioTimeout: IOTimeout) async throws {
        try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
        let image = lockspaceImage(name: name, geometry: geometry, ioTimeout: ioTimeout)
        try await device.write(image.rest, at: offset + UInt64(geometry.sectorSize.bytes))
        try await device.write(image.sector0, at: offset)
    }

    /// Writes a resource area in one write.
    public static func initialiseResource(on device: any BlockDevice, at offset: UInt64, lockspace: LeaseName, name: LeaseName,
                                          geometry: LeaseGeometry, numHosts: Int) async throws {
        try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
        try validate(numHosts: numHosts, geometry: geometry)
        try await device.write(resourceImage(lockspace: lockspace, name: name, geometry: geometry, numHosts: numHosts), at: offset)
    }

    // MARK: Reading

    /// Reads and decodes the first sector of an area, whatever it holds.
    public static func readLeader(on device: any BlockDevice, at offset: UInt64) async throws -> LeaderRecord {
        let bytes = try await device.read(at: offset, length: max(device.sectorSize.bytes, LeaseGeometry.standard512.sectorSize.bytes))
        return LeaderRecord(decoding: bytes)
    }

    /// Reads a whole lockspace area: every host slot, decoded and judged.
    public static func readLockspace(on device: any BlockDevice, at offset: UInt64, name: LeaseName?) async throws -> LockspaceSnapshot {
        let place = "\(device.path):\(offset)"
        let first = try await readLeader(on: device, at: offset)
        try first.verified(as: .delta, lockspace: name, at: place)
        let geometry = try LeaseGeometry.declared(by: first, at: place)
        try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
        let s = geometry.sectorSize.bytes
        let bytes = try await device.read(at: offset, length: geometry.maxHosts * s)
        let slots = (1...geometry.maxHosts).map { id -> HostSlot in
            let sector = bytes[(id - 1) * s..<(id * s)]
            let leader = LeaderRecord(decoding: sector)
            let problem: TenureError?
            do {
                try leader.verified(as: .delta, lockspace: first.spaceName, at: "\(device.path):\(offset + UInt64((id - 1) * s))")
                problem = nil
            } catch let e as TenureError {
                problem = e
            } catch {
                preconditionFailure("verified(as:) throws only TenureError")
            }
            return HostSlot(hostID: HostID(UInt64(id)), leader: leader, bitmap: HostBitmap(decoding: sector), problem: problem)
        }
        return LockspaceSnapshot(disk: try LeaseDisk(path: device.path, offset: offset), geometry: geometry, slots: slots)
    }

    /// Reads a resource area: the leader, the request record and `numHosts` dblocks.
    public static func readResource(on device: any BlockDevice, at offset: UInt64, lockspace: LeaseName?, name: LeaseName?) async throws -> ResourceSnapshot {
        let place = "\(device.path):\(offset)"
        let first = try await readLeader(on: device, at: offset)
        try first.verified(as: .paxos, lockspace: lockspace, resource: name, at: place)
        let geometry = try LeaseGeometry.declared(by: first, at: place)
        try geometry.validate(areaOffset: offset, deviceSize: device.sizeBytes, path: device.path)
        let numHosts = Int(clamping: first.numHosts)
        guard numHosts >= 1, numHosts <= geometry.maxHosts else {
            throw TenureError(.badRecord, "The resource lease at \(place) declares \(first.numHosts) hosts; a \(geometry) area holds 1...\(geometry.maxHosts).",
                              remedy: "The record is damaged; re-initialise it only if no host uses it.")
        }
        let s = geometry.sectorSize.bytes
        let bytes = try await device.read(at: offset, length: geometry.resourceReadLength(numHosts: numHosts))
        let request = RequestRecord(decoding: bytes[s..<(2 * s)])
        let dblocks = (1...numHosts).map { id -> DblockSlot in
            let at = geometry.dblockOffset(of: HostID(UInt64(id)))
            return DblockSlot(hostID: HostID(UInt64(id)),
                              dblock: PaxosDblock(decoding: bytes[at..<(at + s)]),
                              mode: ModeBlock(decoding: bytes[(at + ModeBlock.offsetInSector)..<(at + s)]))
        }
        return ResourceSnapshot(disk: try LeaseDisk(path: device.path, offset: offset), geometry: geometry,
                                leader: first, request: request, dblocks: dblocks)
    }
}

/// One host's slot in a lockspace, as read.
public struct HostSlot: Sendable {
    public var hostID: HostID
    public var leader: LeaderRecord
    public var bitmap: HostBitmap
    /// Why the slot does not hold a valid delta lease, if it does not.
    public var problem: TenureError?

    /// A host has ever written this slot (a name or a timestamp is set).
    public var isInUse: Bool { problem == nil && (!leader.timestamp.isFree || !leader.resourceName.isEmpty || !leader.ownerID.isNone) }
    /// The slot's owner has not released it (its timestamp is not 0).
    public var isHeld: Bool { problem == nil && !leader.timestamp.isFree }
}

/// A whole lockspace area, as read at one moment.
public struct LockspaceSnapshot: Sendable {
    public var disk: LeaseDisk
    public var geometry: LeaseGeometry
    public var slots: [HostSlot]

    public var name: LeaseName { slots[0].leader.spaceName }
    public var inUse: [HostSlot] { slots.filter(\.isInUse) }
    public var held: [HostSlot] { slots.filter(\.isHeld) }
}

/// A host's dblock and mode block in a resource area.
public struct DblockSlot: Sendable {
    public var hostID: HostID
    public var dblock: PaxosDblock
    public var mode: ModeBlock

    public var isInUse: Bool { dblock != .empty || dblock.checksum != 0 || mode.flags != 0 }
}

/// A resource area, as read at one moment.
public struct ResourceSnapshot: Sendable {
    public var disk: LeaseDisk
    public var geometry: LeaseGeometry
    public var leader: LeaderRecord
    public var request: RequestRecord
    public var dblocks: [DblockSlot]

    /// Held by a host: the leader names an owner and carries a timestamp,
    /// and the owner has not released it behind a commit another host wrote.
    public var isHeld: Bool { !leader.timestamp.isFree && !leader.ownerID.isNone && !releasedBehindCommit }

    /// The owner released the lease, but the leader was written by another
    /// host (which committed the owner's win), so only the owner's dblock
    /// says so: it is marked released at the leader's lver. Acquirers take
    /// such a lease at once, as sanlock's do.
    public var releasedBehindCommit: Bool {
        guard !leader.timestamp.isFree, leader.writeID != leader.ownerID else { return false }
        return dblocks.contains { $0.hostID == leader.ownerID && $0.dblock.isReleased && $0.dblock.lver == leader.lver }
    }
    public var sharedHolders: [DblockSlot] { dblocks.filter { $0.mode.isShared } }
}

extension LeaseAreas {
    /// The smallest area size: leases can start at any multiple of it.
    public static let scanStep = Alignment.oneMiB.bytes

    /// Describes every lease in `offset ..< offset + length` that someone
    /// still holds: joined hosts of a lockspace, the owner or shared holders
    /// of a resource. Empty when overwriting the range cannot take a lease
    /// away from anyone. Used to refuse `init` over live leases.
    public static func occupants(on device: any BlockDevice, at offset: UInt64, length: Int) async throws -> [String] {
        var found: [String] = []
        var at = offset
        let end = min(offset + UInt64(length), device.sizeBytes)
        while at < end {
            let leader = try await readLeader(on: device, at: at)
            let place = "\(device.path):\(at)"
            let kind = leader.validKind
            switch kind {
            case .delta?:
                found += await lockspaceOccupants(on: device, at: at, leader: leader, place: place)
            case .paxos?:
                found += await resourceOccupants(on: device, at: at, leader: leader, place: place)
            case nil:
                break
            }
            let declared = kind == nil ? nil : try? LeaseGeometry.declared(by: leader, at: place)
            at += UInt64(declared?.alignment.bytes ?? scanStep)
        }
        return found
    }

    /// Throws `.leaseInUse`, naming every lease held in the range, before
    /// anything is laid over it: overwriting a live lease breaks mutual
    /// exclusion for whoever holds it. `remedy` says what the caller can do.
    public static func refuseToOverwriteHeld(on device: any BlockDevice, at offset: UInt64, length: Int, remedy: String) async throws {
        let held = try await occupants(on: device, at: offset, length: length)
        guard held.isEmpty else {
            throw TenureError(.leaseInUse, "Refusing to overwrite leases that are in use: \(held.joined(separator: "; ")).", remedy: remedy)
        }
    }

    private static func lockspaceOccupants(on device: any BlockDevice, at offset: UInt64, leader: LeaderRecord, place: String) async -> [String] {
        let held: [HostSlot]
        if let lockspace = try? await readLockspace(on: device, at: offset, name: nil) {
            held = lockspace.held
        } else {
            held = leader.timestamp.isFree ? [] : [HostSlot(hostID: leader.ownerID, leader: leader, bitmap: HostBitmap(), problem: nil)]
        }
        guard !held.isEmpty else { return [] }
        let hosts = held.map { "\($0.hostID)" }.joined(separator: ", ")
        return ["lockspace \"\(leader.spaceName)\" at \(place) has host\(held.count == 1 ? "" : "s") \(hosts) joined"]
    }

    private static func resourceOccupants(on device: any BlockDevice, at offset: UInt64, leader: LeaderRecord, place: String) async -> [String] {
        guard let resource = try? await readResource(on: device, at: offset, lockspace: nil, name: nil) else { return [] }
        var found: [String] = []
        if resource.isHeld {
            found.append("resource \"\(leader.resourceName)\" of lockspace \"\(leader.spaceName)\" at \(place) is held by host \(leader.ownerID) (generation \(leader.ownerGeneration), lver \(leader.lver))")
        }
        let shared = resource.sharedHolders.map { "\($0.hostID)" }
        if !shared.isEmpty {
            found.append("resource \"\(leader.resourceName)\" at \(place) is held shared by host\(shared.count == 1 ? "" : "s") \(shared.joined(separator: ", "))")
        }
        return found
    }
}
