import TenureCore
import TenureFormat

/// Where one host's delta lease lives: its sector in a lockspace area.
public struct DeltaLeaseSlot: Sendable {
    public let device: any BlockDevice
    public let areaOffset: UInt64
    public let geometry: LeaseGeometry
    public let lockspace: LeaseName
    public let hostID: HostID

    public init(device: any BlockDevice, areaOffset: UInt64, geometry: LeaseGeometry, lockspace: LeaseName, hostID: HostID) throws {
        try geometry.validate(hostID: hostID)
        self.device = device
        self.areaOffset = areaOffset
        self.geometry = geometry
        self.lockspace = lockspace
        self.hostID = hostID
    }

    public var offset: UInt64 { areaOffset + UInt64(geometry.deltaLeaseOffset(of: hostID)) }
    public var place: String { "\(device.path):\(offset) (host \(hostID) of lockspace \(lockspace))" }
}

/// The state of a host id this host has joined with.
public struct DeltaLeaseHold: Sendable {
    public var host: LocalHost
    /// The record as this host last wrote it.
    public var written: LeaderRecord
    /// The bitmap it last wrote (bits it set to ask other hosts to look at requests).
    public var bitmap: HostBitmap
    /// When the last successful write was *started*. Other hosts cannot have
    /// seen the timestamp it wrote before this instant, so every deadline
    /// measured from it is conservative.
    public var lastRenewalStart: MonotonicInstant
    /// How long the last renewal's read and write took (zero after a join).
    public var lastReadTime: Duration = .zero
    public var lastWriteTime: Duration = .zero

    public init(host: LocalHost, written: LeaderRecord, bitmap: HostBitmap, lastRenewalStart: MonotonicInstant) {
        self.host = host
        self.written = written
        self.bitmap = bitmap
        self.lastRenewalStart = lastRenewalStart
    }
}

/// The delta-lease algorithm (Chockler & Malkhi, "Light-weight leases for
/// storage-centric coordination"), on sanlock's format: how a host takes a
/// host id, keeps it, and gives it back. Every step is one small function.
public enum DeltaLease {
    /// Reads the slot and checks it is a delta lease of the right lockspace.
    public static func read(_ slot: DeltaLeaseSlot) async throws -> (leader: LeaderRecord, bitmap: HostBitmap) {
        let bytes = try await slot.device.read(at: slot.offset, length: slot.geometry.sectorSize.bytes)
        let leader = try LeaderRecord(decoding: bytes).verified(as: .delta, lockspace: slot.lockspace, at: slot.place)
        return (leader, HostBitmap(decoding: bytes))
    }

    /// The valid delta leases of `lockspace` in `bytes`, a read of
    /// consecutive host slots whose first is slot index `first` (host id
    /// `first` + 1): each with its host id and its sector (for the bitmap).
    static func hostSlots(in bytes: [UInt8], from first: Int, sectorSize: SectorSize,
                          lockspace: LeaseName) -> [(id: HostID, record: LeaderRecord, sector: ArraySlice<UInt8>)] {
        let s = sectorSize.bytes
        return (0..<(bytes.count / s)).compactMap { i in
            let sector = bytes[(i * s)..<((i + 1) * s)]
            let record = LeaderRecord(decoding: sector)
            guard record.validKind == .delta, record.spaceName == lockspace else { return nil }
            return (HostID(UInt64(first + i + 1)), record, sector)
        }
    }

    static func write(_ slot: DeltaLeaseSlot, _ leader: LeaderRecord, bitmap: HostBitmap) async throws {
        try await slot.device.write(leader.encodedSector(slot.geometry.sectorSize, bitmap: bitmap), at: slot.offset)
    }

    /// Join: take host id `slot.hostID`.
    ///
    /// 1. Read the slot. If another host's lease is there (timestamp not 0),
    ///    watch it for 8N + W: any change means its owner is alive (fail);
    ///    none means it is dead, or it released meanwhile.
    /// 2. Write our record: generation + 1, timestamp now, our name and io_timeout.
    /// 3. Wait 2N and read again: a host that read the slot free before our
    ///    write landed has written by then; any difference means it did (fail).
    public static func acquire(_ slot: DeltaLeaseSlot, name: LeaseName, ioTimeout: IOTimeout,
                               context: EngineContext) async throws -> DeltaLeaseHold {
        var (current, _) = try await read(slot)
        if !current.timestamp.isFree {
            context.log(EngineEvent(.joinWaiting, "\(slot.place) is held by \"\(current.resourceName)\" (generation \(current.ownerGeneration)); watching it for \(context.timeouts(effectiveIOTimeout(current, ours: ioTimeout)).hostDead)"))
            current = try await waitForOwnerToDie(slot, held: current, ioTimeout: ioTimeout, context: context)
        }
        let hold = try await writeOwnRecord(slot, over: current, name: name, ioTimeout: ioTimeout, context: context)
        try await settleAndVerify(slot, hold: hold, ioTimeout: ioTimeout, context: context)
        context.log(EngineEvent(.joined, "joined as \(hold.host) at \(slot.place)"))
        return hold
    }

    /// The owner's io_timeout when its record carries one, else ours.
    static func effectiveIOTimeout(_ record: LeaderRecord, ours: IOTimeout) -> IOTimeout {
        record.ioTimeout.rawValue > 0 ? record.ioTimeout : ours
    }

    /// Step 1 for a held slot: returns the record to overwrite once its owner
    /// is known dead (unchanged for 8N + W) or has released it.
    static func waitForOwnerToDie(_ slot: DeltaLeaseSlot, held: LeaderRecord, ioTimeout: IOTimeout,
                                  context: EngineContext) async throws -> LeaderRecord {
        let ownerTimeouts = context.timeouts(effectiveIOTimeout(held, ours: ioTimeout))
        let deadline = context.clock.now() + ownerTimeouts.hostDead
        let poll = ownerTimeouts.livenessPoll
        while true {
            try await context.clock.sleep(until: min(context.clock.now() + poll, deadline))
            let (now, _) = try await read(slot)
            if now.timestamp.isFree { return now }
            guard sameHolder(now, held) else {
                throw TenureError(
                    .hostIDBusy,
                    "Host id \(slot.hostID) of lockspace \(slot.lockspace) is in use by \"\(now.resourceName)\": its delta lease at \(slot.place) changed while we watched.",
                    remedy: "Another host is alive with this host id. Give this host a host id of its own.")
            }
            if context.clock.now() >= deadline { return now }
        }
    }

    /// Two reads of a slot show the same holder, not renewed in between.
    static func sameHolder(_ a: LeaderRecord, _ b: LeaderRecord) -> Bool {
        a.ownerID == b.ownerID && a.ownerGeneration == b.ownerGeneration && a.timestamp == b.timestamp
            && a.resourceName == b.resourceName && a.joinIncarnation == b.joinIncarnation
    }

    /// Step 2: write our record over `previous`.
    static func writeOwnRecord(_ slot: DeltaLeaseSlot, over previous: LeaderRecord, name: LeaseName, ioTimeout: IOTimeout,
                               context: EngineContext) async throws -> DeltaLeaseHold {
        var record = previous
        record.ownerID = slot.hostID
        record.ownerGeneration = try previous.ownerGeneration.next()
        record.resourceName = name
        record.ioTimeout = ioTimeout
        record.timestamp = context.diskTimestamp()
        record.writeID = .none
        record.writeGeneration = .zero
        record.writeTimestamp = .free
        record.joinIncarnation = newIncarnation(context)
        let started = context.clock.now()
        let bitmap = HostBitmap()
        try await write(slot, record, bitmap: bitmap)
        return DeltaLeaseHold(host: LocalHost(id: slot.hostID, generation: record.ownerGeneration, name: name),
                              written: record.sealed, bitmap: bitmap, lastRenewalStart: started)
    }

    /// A join's incarnation: random and never 0 (0 is what sanlock writes).
    static func newIncarnation(_ context: EngineContext) -> UInt64 {
        context.random(UInt64.max - 1) + 1
    }

    /// Step 3: wait 2N, then the slot must still hold exactly what we wrote.
    /// The wait is never shorter than ``ParticipantView/minimumJoinWait``:
    /// other hosts' ballots skip the dblocks of hosts their view saw free,
    /// which is safe only because a joining host stays out of ballots this long.
    static func settleAndVerify(_ slot: DeltaLeaseSlot, hold: DeltaLeaseHold, ioTimeout: IOTimeout, context: EngineContext) async throws {
        try await context.clock.sleep(for: max(context.timeouts(ioTimeout).joinSettle, ParticipantView.minimumJoinWait))
        let (now, _) = try await read(slot)
        guard now == hold.written else {
            throw TenureError(
                .hostIDBusy,
                "Host id \(slot.hostID) of lockspace \(slot.lockspace) was taken by \"\(now.resourceName)\" (generation \(now.ownerGeneration)) while we were joining.",
                remedy: "Two hosts tried the same host id; give each host a host id of its own.")
        }
    }

    /// Renewal: check the slot is still ours, then write a new timestamp.
    /// Throws `.lockspaceLost` when another host has written the slot: from
    /// then on this host must behave as if its lockspace were lost.
    public static func renew(_ slot: DeltaLeaseSlot, hold: DeltaLeaseHold, context: EngineContext) async throws -> DeltaLeaseHold {
        let read = try await renewalRead(slot, hold: hold, othersUpTo: nil, context: context)
        return try await renewalWrite(slot, hold: hold, after: read, context: context)
    }

    /// A renewal's read, checked that our slot still holds what we wrote:
    /// our slot alone, or with `othersUpTo` the slots of hosts 1...that
    /// (and at least up to ours) in one I/O, whose records are then for
    /// ``FrozenClockCheck``.
    public struct RenewalRead: Sendable {
        public var started: MonotonicInstant
        public var done: MonotonicInstant
        public var others: [(HostID, LeaderRecord)]
    }

    public static func renewalRead(_ slot: DeltaLeaseSlot, hold: DeltaLeaseHold, othersUpTo count: Int?,
                                   context: EngineContext) async throws -> RenewalRead {
        let started = context.clock.now()
        let ownIndex = Int(slot.hostID.rawValue) - 1
        let indexes = count.map { 0..<max($0, ownIndex + 1) } ?? ownIndex..<(ownIndex + 1)
        let s = slot.geometry.sectorSize.bytes
        let bytes = try await slot.device.read(at: slot.offset - UInt64((ownIndex - indexes.lowerBound) * s), length: indexes.count * s)
        let done = context.clock.now()
        func sector(_ index: Int) -> ArraySlice<UInt8> { bytes[((index - indexes.lowerBound) * s)..<((index - indexes.lowerBound + 1) * s)] }
        let current = try LeaderRecord(decoding: sector(ownIndex)).verified(as: .delta, lockspace: slot.lockspace, at: slot.place)
        try checkStillOurs(slot, current: current, hold: hold)
        let others = hostSlots(in: bytes, from: indexes.lowerBound, sectorSize: slot.geometry.sectorSize, lockspace: slot.lockspace)
            .filter { $0.id != slot.hostID }.map { ($0.id, $0.record) }
        return RenewalRead(started: started, done: done, others: others)
    }

    /// A renewal's write: a newer timestamp, after ``renewalRead``.
    public static func renewalWrite(_ slot: DeltaLeaseSlot, hold: DeltaLeaseHold, after read: RenewalRead,
                                    context: EngineContext) async throws -> DeltaLeaseHold {
        var record = hold.written
        let now = context.diskTimestamp()
        record.timestamp = now > hold.written.timestamp ? now : DiskTimestamp(hold.written.timestamp.rawValue &+ 1)
        try await write(slot, record, bitmap: hold.bitmap)
        var renewed = hold
        renewed.written = record.sealed
        renewed.lastRenewalStart = read.started
        renewed.lastReadTime = read.done - read.started
        renewed.lastWriteTime = context.clock.now() - read.done
        return renewed
    }

    /// Whether `current` is what this host wrote: the record of its last
    /// successful write, or one of its writes that timed out and landed
    /// since (same owner, generation, name and join incarnation, a timestamp
    /// no earlier: only this host writes its timestamps, and they only
    /// grow; an event write keeps the timestamp and changes only the event
    /// words). Another join of the same host id — a cloned host, a second
    /// daemon — has another incarnation, so its record is never taken for ours.
    static func isOurs(_ current: LeaderRecord, hold: DeltaLeaseHold) -> Bool {
        if current == hold.written { return true }
        let w = hold.written
        return current.ownerID == w.ownerID && current.ownerGeneration == w.ownerGeneration
            && current.resourceName == w.resourceName && current.spaceName == w.spaceName
            && current.ioTimeout == w.ioTimeout && current.joinIncarnation == w.joinIncarnation && current.timestamp >= w.timestamp
    }

    static func checkStillOurs(_ slot: DeltaLeaseSlot, current: LeaderRecord, hold: DeltaLeaseHold) throws {
        guard isOurs(current, hold: hold) else {
            throw TenureError(
                .lockspaceLost,
                "The delta lease of host \(slot.hostID) at \(slot.place) no longer holds what this host wrote (found owner \(current.ownerID) generation \(current.ownerGeneration) name \"\(current.resourceName)\").",
                remedy: "Another host is using the same host id; this host gives up the lockspace. Check the host id configuration of every host.")
        }
    }

    /// Writes our record with a new bitmap (to set or clear request bits)
    /// without changing anything else; the next renewal carries it too.
    public static func updateBitmap(_ slot: DeltaLeaseSlot, hold: DeltaLeaseHold, bitmap: HostBitmap) async throws -> DeltaLeaseHold {
        try await write(slot, hold.written, bitmap: bitmap)
        var updated = hold
        updated.bitmap = bitmap
        return updated
    }

    /// Release: write timestamp 0, if the slot is still ours. A slot taken
    /// over by another host is left alone.
    public static func release(_ slot: DeltaLeaseSlot, hold: DeltaLeaseHold, context: EngineContext) async throws {
        let (current, _) = try await read(slot)
        try checkStillOurs(slot, current: current, hold: hold)
        var record = hold.written
        record.timestamp = .free
        try await write(slot, record, bitmap: HostBitmap())
        context.log(EngineEvent(.released, "released host id \(slot.hostID) of lockspace \(slot.lockspace)"))
    }
}
