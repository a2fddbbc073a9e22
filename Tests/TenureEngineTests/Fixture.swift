import Synchronization
import Testing
import TenureCore
import TenureEngine
import TenureFormat
import TenureTestKit

/// Shared storage with a lockspace at 0 and resources at 1M, 2M, … laid
/// out by the engine's own init, plus one device handle per host.
struct Cluster {
    static let lockspace: LeaseName = "LS"
    static let mib: UInt64 = 1 << 20

    let storage: MemoryStorage
    let clock: ManualClock
    let ioTimeout = IOTimeout(seconds: 1)
    let numHosts: Int
    let events = EventLog()

    init(resources: Int = 2, numHosts: Int = 8, autoAdvance: Bool = true, sizeMiB: UInt64 = 8) async throws {
        storage = MemoryStorage(sectorSize: .bytes512, sizeBytes: sizeMiB * Self.mib)
        clock = ManualClock(autoAdvance: autoAdvance)
        self.numHosts = numHosts
        let setup = MemoryDevice(storage: storage, path: "disk", clock: clock)
        try await LeaseAreas.initialiseLockspace(on: setup, at: 0, name: Self.lockspace, geometry: .standard512, ioTimeout: ioTimeout)
        for i in 0..<resources {
            try await LeaseAreas.initialiseResource(on: setup, at: UInt64(i + 1) * Self.mib, lockspace: Self.lockspace,
                                                    name: try LeaseName("R\(i)"), geometry: .standard512, numHosts: numHosts)
        }
    }

    /// Deterministic context: back-off draws from a fixed sequence, W = 2 s.
    var context: EngineContext {
        let events = self.events
        return EngineContext(clock: clock, random: { bound in (bound / 3) % max(bound, 1) }, log: { events.append($0) },
                             watchdogFire: .seconds(2))
    }

    var timeouts: Timeouts { context.timeouts(ioTimeout) }

    func device(_ name: String = "host") -> MemoryDevice {
        MemoryDevice(storage: storage, path: name, clock: clock, ioTimeout: .seconds(1))
    }

    func slot(_ id: UInt64, device: MemoryDevice? = nil) throws -> DeltaLeaseSlot {
        try DeltaLeaseSlot(device: device ?? self.device("h\(id)"), areaOffset: 0, geometry: .standard512,
                           lockspace: Self.lockspace, hostID: HostID(id))
    }

    func observer(_ device: MemoryDevice? = nil) -> LockspaceObserver {
        LockspaceObserver(device: device ?? self.device("observer"), areaOffset: 0, geometry: .standard512,
                          name: Self.lockspace, fallbackIOTimeout: ioTimeout, context: context)
    }

    func resourceSpec(_ i: Int) throws -> ResourceSpec {
        ResourceSpec(lockspace: Self.lockspace, name: try LeaseName("R\(i)"),
                     disks: [try LeaseDisk(path: "disk", offset: UInt64(i + 1) * Self.mib)])
    }

    func resource(_ i: Int, device: MemoryDevice? = nil) async throws -> PaxosResource {
        try await PaxosResource.open(try resourceSpec(i), devices: [device ?? self.device("r\(i)")])
    }

    /// Joins host `id` (the clock must auto-advance or be driven).
    func join(_ id: UInt64, name: String? = nil) async throws -> DeltaLeaseHold {
        try await DeltaLease.acquire(try slot(id), name: try LeaseName(name ?? "host\(id)"), ioTimeout: ioTimeout, context: context)
    }

    func leader(_ i: Int) -> LeaderRecord {
        LeaderRecord(decoding: storage.snapshot(UInt64(i + 1) * Self.mib..<(UInt64(i + 1) * Self.mib + 512)))
    }
}

/// Collects engine events for assertions.
final class EventLog: Sendable {
    private let items = Mutex<[EngineEvent]>([])
    func append(_ e: EngineEvent) { items.withLock { $0.append(e) } }
    var all: [EngineEvent] { items.withLock { $0 } }
    func count(_ kind: EngineEvent.Kind) -> Int { all.filter { $0.kind == kind }.count }
}

/// Runs `body` expecting a TenureError with `code`; returns it.
@discardableResult
func expectTenureError(_ code: TenureError.Code, sourceLocation: SourceLocation = #_sourceLocation,
                       _ body: () async throws -> Void) async -> TenureError? {
    do {
        try await body()
        Issue.record("expected a \(code) error, got success", sourceLocation: sourceLocation)
        return nil
    } catch let e as TenureError {
        #expect(e.code == code, "expected \(code), got \(e.code): \(e.message)", sourceLocation: sourceLocation)
        return e
    } catch {
        Issue.record("expected a \(code) error, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
