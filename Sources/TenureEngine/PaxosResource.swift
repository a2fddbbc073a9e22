import TenureCore
import TenureFormat

/// One resource lease, replicated on 1...4 disks. Each Disk Paxos phase
/// needs a majority of the disks written and read, so the lease survives
/// the loss of a minority.
public struct PaxosResource: Sendable {
    public let spec: ResourceSpec
    /// One device per disk of `spec`, in the same order.
    public let devices: [any BlockDevice]
    public let geometry: LeaseGeometry
    /// Dblocks that exist: host ids 1...numHosts may take part.
    public let numHosts: Int
    /// The stride of ballot numbers (the leader's max_hosts), so every host's
    /// ballots are disjoint: host h only ever uses mbal ≡ h (mod maxHosts).
    public let ballotStride: UInt64
    /// Which hosts can take part in ballots; nil reads every dblock (as
    /// sanlock does, and as daemonless tools must, having no view).
    public var participants: (any BallotParticipantSource)?

    /// Opens the lease: reads each disk's leader, checks names, geometry and
    /// num_hosts agree, and that a majority of disks hold the lease.
    public static func open(_ spec: ResourceSpec, devices: [any BlockDevice]) async throws -> PaxosResource {
        precondition(devices.count == spec.disks.count, "one device per disk")
        var leaders: [LeaderRecord] = []
        var firstError: Error?
        for (i, device) in devices.enumerated() {
            do {
                let leader = try await LeaseAreas.readLeader(on: device, at: spec.disks[i].offset)
                leaders.append(try leader.verified(as: .paxos, lockspace: spec.lockspace, resource: spec.name, at: "\(spec.disks[i])"))
            } catch {
                firstError = firstError ?? error
            }
        }
        guard leaders.count >= majority(of: devices.count), let first = leaders.first else {
            throw firstError ?? TenureError(.ioFailed, "No disk of \(spec) could be read.")
        }
        let geometry = try LeaseGeometry.declared(by: first, at: "\(spec.disks[0])")
        for (i, device) in devices.enumerated() {
            guard geometry.sectorSize.bytes >= device.sectorSize.bytes else {
                throw TenureError(.invalidGeometry, "\(device.path) has \(device.sectorSize)-byte sectors but the lease \(spec.name) uses \(geometry.sectorSize).",
                                  remedy: "Re-initialise the lease with --sector-size \(device.sectorSize).")
            }
            try geometry.validate(areaOffset: spec.disks[i].offset, deviceSize: device.sizeBytes, path: device.path)
        }
        for leader in leaders.dropFirst() where leader.numHosts != first.numHosts || leader.sectorSize != first.sectorSize || leader.flags & 0xF0 != first.flags & 0xF0 {
            throw TenureError(.badRecord, "The disks of \(spec) disagree on the lease layout (num_hosts \(first.numHosts) vs \(leader.numHosts)).",
                              remedy: "Initialise every disk of the lease with the same options.")
        }
        let numHosts = Int(clamping: first.numHosts)
        guard numHosts >= 1, numHosts <= geometry.maxHosts else {
            throw TenureError(.badRecord, "The lease \(spec) declares \(first.numHosts) hosts; a \(geometry) area holds 1...\(geometry.maxHosts).",
                              remedy: "The record is damaged; re-initialise it only if no host uses it.")
        }
        guard first.maxHosts <= UInt64(LeaseGeometry.absoluteMaxHosts) else {
            throw TenureError(.badRecord, "The lease \(spec) declares max_hosts \(first.maxHosts); no lease layout has more than \(LeaseGeometry.absoluteMaxHosts).",
                              remedy: "The record is damaged; re-initialise it only if no host uses it.")
        }
        let stride = first.maxHosts >= UInt64(numHosts) ? first.maxHosts : UInt64(geometry.maxHosts)
        return PaxosResource(spec: spec, devices: devices, geometry: geometry, numHosts: numHosts, ballotStride: stride)
    }

    public var majority: Int { Self.majority(of: devices.count) }
    static func majority(of count: Int) -> Int { count / 2 + 1 }

    /// Checks that `host` has a dblock in this lease.
    public func validate(host: HostID) throws {
        guard host.rawValue >= 1, host.rawValue <= UInt64(numHosts) else {
            throw TenureError(.invalidArgument, "Host id \(host) has no dblock in \(spec.name), which has \(numHosts) host slots.",
                              remedy: "Use a host id from 1 to \(numHosts), or re-initialise the lease with a larger --max-hosts.")
        }
    }

    // MARK: I/O on a majority of disks

    /// Runs `body` on every disk at once and returns the successes, failing
    /// unless a majority succeed.
    func onMajority<T: Sendable>(_ what: String, _ body: @escaping @Sendable (Int, any BlockDevice, UInt64) async throws -> T) async throws -> [(disk: Int, value: T)] {
        let devices = self.devices
        let offsets = spec.disks.map(\.offset)
        if devices.count == 1 {
            // One disk is its own majority: no child task, no hop between threads.
            return [(0, try await body(0, devices[0], offsets[0]))]
        }
        var results: [(disk: Int, value: T)] = []
        var errors: [Error] = []
        await withTaskGroup(of: (Int, Result<T, Error>).self) { group in
            for i in devices.indices {
                group.addTask {
                    do { return (i, .success(try await body(i, devices[i], offsets[i]))) } catch { return (i, .failure(error)) }
                }
            }
            for await (i, result) in group {
                switch result {
                case .success(let v): results.append((i, v))
                case .failure(let e): errors.append(e)
                }
            }
        }
        guard results.count >= majority else {
            if devices.count == 1, let only = errors.first { throw only }
            throw TenureError(.ioFailed, "Could not \(what) on a majority of the \(devices.count) disks of \(spec.name): \(errors.map { "\($0)" }.joined(separator: "; ")).",
                              remedy: "Check the storage paths of the lease.")
        }
        return results.sorted { $0.disk < $1.disk }
    }

    /// The current leader: of the leaders read from a majority of disks, the
    /// newest (highest lver; at equal lver a released one, as release follows commit).
    public func readLeader() async throws -> LeaderRecord {
        let spec = self.spec
        let leaders = try await onMajority("read the leader") { i, device, offset in
            try await LeaseAreas.readLeader(on: device, at: offset)
                .verified(as: .paxos, lockspace: spec.lockspace, resource: spec.name, at: "\(spec.disks[i])")
        }
        return Self.newest(leaders.map(\.value))
    }

    public static func newest(_ leaders: [LeaderRecord]) -> LeaderRecord {
        leaders.max { a, b in
            a.lver != b.lver ? a.lver < b.lver : (!a.timestamp.isFree && b.timestamp.isFree)
        }!
    }

    /// The leader, the request record and the dblocks of every host that
    /// can take part (all of them without a view): what an acquire reads first.
    public func readAreas(including own: HostID? = nil) async throws -> [DiskArea] {
        let spec = self.spec
        let hosts = try await hostsToRead(including: own)
        let sectors = [0, geometry.requestOffset / geometry.sectorSize.bytes] + hosts.map(dblockSector)
        return try await readSectors("read the lease", sectors) { i, sector in
            let leader = try LeaderRecord(decoding: sector(0))
                .verified(as: .paxos, lockspace: spec.lockspace, resource: spec.name, at: "\(spec.disks[i])")
            return DiskArea(disk: i, leader: leader, request: RequestRecord(decoding: sector(1)),
                            dblocks: self.decodeDblocks(hosts, sector))
        }
    }

    /// The dblocks of every host that can take part (a ballot phase's read).
    func readDblocks(including own: HostID? = nil) async throws -> [[DblockSlot]] {
        let hosts = try await hostsToRead(including: own)
        return try await readSectors("read the dblocks", hosts.map(dblockSector)) { _, sector in
            self.decodeDblocks(hosts, sector)
        }
    }

    /// One host's own dblock sector on each disk (what a release rewrites).
    func readOwnDblock(_ host: HostID) async throws -> [[DblockSlot]] {
        try await readSectors("read the dblock of host \(host)", [dblockSector(host)]) { _, sector in
            self.decodeDblocks([host], sector)
        }
    }

    /// Hosts 1...numHosts, or those of a fresh participant view (plus `own`).
    func hostsToRead(including own: HostID?) async throws -> [HostID] {
        let all = (1...numHosts).map { HostID(UInt64($0)) }
        guard let participants, let view = try await participants.participants(numHosts: numHosts) else { return all }
        var hosts = view.hosts.filter { $0.rawValue <= UInt64(numHosts) }
        if let own, !hosts.contains(own) { hosts.append(own) }
        return hosts
    }

    /// The sector index, within the area, of host `id`'s dblock.
    func dblockSector(_ id: HostID) -> Int { geometry.dblockOffset(of: id) / geometry.sectorSize.bytes }

    /// Reads `sectors` of the area on a majority of disks, in as few I/Os as
    /// their runs allow, and hands `decode` a lookup of each sector by index.
    /// A disk's runs are all issued at once: a participant view is only
    /// good for reads issued within its freshness, so none may wait behind
    /// a slow one.
    func readSectors<T: Sendable>(_ what: String, _ sectors: [Int],
                                  _ decode: @escaping @Sendable (Int, (Int) -> ArraySlice<UInt8>) throws -> T) async throws -> [T] {
        let runs = SectorRuns.coalesce(sectors)
        let s = geometry.sectorSize.bytes
        return try await onMajority(what) { i, device, offset in
            let read: [(Range<Int>, [UInt8])]
            if runs.count == 1 {
                read = [(runs[0], try await device.read(at: offset + UInt64(runs[0].lowerBound * s), length: runs[0].count * s))]
            } else {
                read = try await withThrowingTaskGroup(of: (Range<Int>, [UInt8]).self) { group in
                    for run in runs {
                        group.addTask { (run, try await device.read(at: offset + UInt64(run.lowerBound * s), length: run.count * s)) }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
            }
            return try decode(i) { index in
                let (run, bytes) = read.first { $0.0.contains(index) }!
                let at = (index - run.lowerBound) * s
                return bytes[at..<(at + s)]
            }
        }.map(\.value)
    }

    /// Decodes the dblock sectors of `hosts`.
    func decodeDblocks(_ hosts: [HostID], _ sector: (Int) -> ArraySlice<UInt8>) -> [DblockSlot] {
        hosts.map { id in
            let bytes = sector(dblockSector(id))
            let start = bytes.startIndex
            return DblockSlot(hostID: id, dblock: PaxosDblock(decoding: bytes),
                              mode: ModeBlock(decoding: bytes[(start + ModeBlock.offsetInSector)...]))
        }
    }

    /// Writes host `host`'s dblock sector (dblock and mode block) on a majority.
    func writeDblock(_ dblock: PaxosDblock, mode: ModeBlock, of host: HostID) async throws {
        let sector = dblock.encodedSector(geometry.sectorSize, mode: mode)
        let at = UInt64(geometry.dblockOffset(of: host))
        _ = try await onMajority("write the dblock of host \(host)") { _, device, offset in
            try await device.write(sector, at: offset + at)
        }
    }

    /// Writes the leader on a majority.
    func writeLeader(_ leader: LeaderRecord) async throws {
        let sector = leader.encodedSector(geometry.sectorSize)
        _ = try await onMajority("write the leader") { _, device, offset in
            try await device.write(sector, at: offset)
        }
    }

    /// The request records alone: one sector per disk. What a holder polls
    /// to notice a request for its lease without reading every dblock.
    public func readRequests() async throws -> [RequestRecord] {
        let geometry = self.geometry
        let at = UInt64(geometry.requestOffset)
        return try await onMajority("read the request record") { _, device, offset in
            RequestRecord(decoding: try await device.read(at: offset + at, length: geometry.sectorSize.bytes))
        }.map(\.value)
    }

    /// Writes the request record on a majority.
    func writeRequest(_ request: RequestRecord) async throws {
        let sector = request.encodedSector(geometry.sectorSize)
        let at = UInt64(geometry.requestOffset)
        _ = try await onMajority("write the request record") { _, device, offset in
            try await device.write(sector, at: offset + at)
        }
    }
}

/// What one read of one disk's lease area returned.
public struct DiskArea: Sendable {
    public var disk: Int
    public var leader: LeaderRecord
    public var request: RequestRecord
    public var dblocks: [DblockSlot]
}
