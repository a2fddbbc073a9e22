import TenureCore
import TenureFormat

/// How the paxos engine learns whether a lease's owner may still use it.
public protocol HostLivenessOracle: Sendable {
    /// Reads host `id`'s delta lease now and returns it with the state the
    /// observer concludes from it and from everything it has seen before.
    func observe(_ id: HostID) async throws -> (record: LeaderRecord, state: HostState)
    /// The largest host id of the lockspace (its max_hosts): an owner named
    /// beyond it is a damaged record, not a host to watch.
    var hostCapacity: Int { get }
}

/// Watches host slots of one lockspace and keeps what it saw. Used by the
/// daemonless commands on their own, and by a joined ``Lockspace`` whose
/// monitoring keeps it warm.
public actor LockspaceObserver: HostLivenessOracle, BallotParticipantSource {
    /// Reads of host slots not yet taken by ``takeRecentReads()``.
    private var recentReads: [SlotsRead] = []
    public let device: any BlockDevice
    public let areaOffset: UInt64
    public nonisolated let geometry: LeaseGeometry
    public nonisolated var hostCapacity: Int { geometry.maxHosts }
    public let name: LeaseName
    /// The io_timeout to assume for a host whose record carries none.
    public let fallbackIOTimeout: IOTimeout
    let context: EngineContext
    public private(set) var table = HostTable()
    /// The last view of which hosts can take part in ballots.
    public private(set) var view: ParticipantView?
    /// Host-slot reads made for views, for status and the bench.
    public private(set) var viewReads = 0

    public init(device: any BlockDevice, areaOffset: UInt64, geometry: LeaseGeometry, name: LeaseName,
                fallbackIOTimeout: IOTimeout, context: EngineContext) {
        self.device = device
        self.areaOffset = areaOffset
        self.geometry = geometry
        self.name = name
        self.fallbackIOTimeout = fallbackIOTimeout
        self.context = context
    }

    /// Opens the lockspace at `disk`: reads its first sector for the layout.
    public static func open(_ spec: LockspaceSpec, device: any BlockDevice, context: EngineContext) async throws -> LockspaceObserver {
        let leader = try await LeaseAreas.readLeader(on: device, at: spec.disk.offset)
            .verified(as: .delta, lockspace: spec.name, at: "\(spec.disk)")
        let geometry = try LeaseGeometry.declared(by: leader, at: "\(spec.disk)")
        try geometry.validate(areaOffset: spec.disk.offset, deviceSize: device.sizeBytes, path: device.path)
        return LockspaceObserver(device: device, areaOffset: spec.disk.offset, geometry: geometry, name: spec.name,
                                 fallbackIOTimeout: leader.ioTimeout.rawValue > 0 ? leader.ioTimeout : .standard, context: context)
    }

    public func slot(_ id: HostID) throws -> DeltaLeaseSlot {
        try DeltaLeaseSlot(device: device, areaOffset: areaOffset, geometry: geometry, lockspace: name, hostID: id)
    }

    public func observe(_ id: HostID) async throws -> (record: LeaderRecord, state: HostState) {
        let (record, _) = try await DeltaLease.read(try slot(id))
        let now = context.clock.now()
        table.record(record, for: id, at: now)
        return (record, table[id]!.state(at: now, context: context, fallback: fallbackIOTimeout))
    }

    /// Reads the slots of hosts 1...upTo in one I/O and records each.
    /// Returns the slots and their bitmaps (for requests aimed at us).
    public func observeRange(upTo last: HostID) async throws -> [(HostID, LeaderRecord, HostBitmap)] {
        let count = Int(min(last.rawValue, UInt64(geometry.maxHosts)))
        guard count > 0 else { return [] }
        return try await observeSlots(0..<count)
    }

    /// Reads the slots at indexes `run` (host id − 1) in one I/O and records
    /// each valid record of this lockspace; returns those with their bitmaps.
    func observeSlots(_ run: Range<Int>) async throws -> [(HostID, LeaderRecord, HostBitmap)] {
        let s = geometry.sectorSize.bytes
        let bytes = try await device.read(at: areaOffset + UInt64(run.lowerBound * s), length: run.count * s)
        let now = context.clock.now()
        let slots = DeltaLease.hostSlots(in: bytes, from: run.lowerBound, sectorSize: geometry.sectorSize, lockspace: name).map { slot in
            table.record(slot.record, for: slot.id, at: now)
            return (slot.id, slot.record, HostBitmap(decoding: slot.sector))
        }
        recentReads.append(SlotsRead(at: now, slots: slots.map { ($0.0, $0.1) }))
        if recentReads.count > Self.recentReadsKept { recentReads.removeFirst() }
        return slots
    }

    /// One read of host slots outside a renewal, for the lockspace's
    /// frozen-clock check (``Lockspace/lookAtPeers(_:)``).
    public struct SlotsRead: Sendable {
        public var at: MonotonicInstant
        public var slots: [(HostID, LeaderRecord)]
    }

    /// The most reads kept until taken (the daemon takes them every second).
    public static let recentReadsKept = 16

    /// The reads of host slots since the last call, oldest first.
    public func takeRecentReads() -> [SlotsRead] {
        defer { recentReads = [] }
        return recentReads
    }

    /// The hosts that can take part in a ballot of a lease with `numHosts`
    /// dblocks: the last view if it covers them and is still fresh, else a
    /// new one from one read of slots 1...numHosts. Every slot that is not
    /// a valid free record of this lockspace counts as a participant. nil
    /// when the new view's own read took so long that it is stale already
    /// (slow storage): the caller then reads every dblock.
    public func participants(numHosts: Int) async throws -> ParticipantView? {
        let now = context.clock.now()
        if let view, view.covers(numHosts: numHosts),
           view.isFresh(at: now) || InjectedBug.staleParticipantView.isOn(in: context.injectedBugs) {
            return view
        }
        let count = min(max(numHosts, view?.covered ?? 0), geometry.maxHosts)
        let s = geometry.sectorSize.bytes
        let bytes = try await device.read(at: areaOffset, length: count * s)
        viewReads += 1
        let read = context.clock.now()
        var hosts: [HostID] = []
        for i in 0..<count {
            let id = HostID(UInt64(i + 1))
            let sector = bytes[(i * s)..<((i + 1) * s)]
            // A slot whose timestamp is not 0 takes part, whatever else it
            // holds; only one that reads free must prove to be a valid free
            // record of this lockspace, never joined (generation 0), to be
            // skipped. A host that joined before and left keeps its dblocks:
            // they may hold the only vote for a version, or the only proof
            // that a late write took the leader back (docs/safety.md).
            if LeaderRecord.timestampIsFree(inSector: sector) {
                let record = LeaderRecord(decoding: sector)
                if record.validKind == .delta, record.spaceName == name, record.ownerGeneration == .zero {
                    table.record(record, for: id, at: read)
                    continue
                }
            }
            hosts.append(id)
        }
        let fresh = ParticipantView(hosts: hosts, covered: count, readIssuedAt: now)
        view = fresh
        return fresh.isFresh(at: context.clock.now()) || InjectedBug.staleParticipantView.isOn(in: context.injectedBugs) ? fresh : nil
    }

    /// Whether any host of the last participant view has host `id`'s bit
    /// set in its bitmap: a requester asking `id` to look at its leases'
    /// request records (sanlock's requesters set it too). Reads only the
    /// slots of hosts in the view (one I/O when their ids are close); the
    /// view is re-read when older than `refreshEvery` or too narrow.
    public func isSignalled(_ id: HostID, hostsUpTo numHosts: Int, refreshEvery: Duration) async throws -> Bool {
        try await !signallers(of: id, hostsUpTo: numHosts, refreshEvery: refreshEvery, firstOnly: true).isEmpty
    }

    /// The hosts of the participant view (as ``isSignalled`` reads them)
    /// whose bitmap has `id`'s bit set, with their records: requests and
    /// host events aimed at `id`. With `firstOnly`, stops at the first.
    public func signallers(of id: HostID, hostsUpTo numHosts: Int, refreshEvery: Duration,
                           firstOnly: Bool = false) async throws -> [(HostID, LeaderRecord)] {
        var current = view
        if current == nil || !current!.covers(numHosts: numHosts) || context.clock.now() >= current!.readIssuedAt + refreshEvery {
            _ = try await participants(numHosts: numHosts)
            current = view
        }
        let others = (current?.hosts ?? []).filter { $0 != id }
        var found: [(HostID, LeaderRecord)] = []
        for run in SectorRuns.coalesce(others.map { Int($0.rawValue) - 1 }) {
            for (other, record, bitmap) in try await observeSlots(run) where !record.timestamp.isFree && bitmap.contains(id) {
                found.append((other, record))
                if firstOnly { return found }
            }
        }
        return found
    }

    /// The state of host `id` from what has been seen, without reading.
    public func state(of id: HostID) -> HostState? {
        table[id]?.state(at: context.clock.now(), context: context, fallback: fallbackIOTimeout)
    }
}
