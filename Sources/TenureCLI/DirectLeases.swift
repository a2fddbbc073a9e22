import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureEngine
import TenureFormat
import TenureIO
import TenureLaunch

/// The engine context the direct commands run with: the system clock,
/// events printed on stderr with --verbose.
func directContext(verbose: Bool, watchdogFire: Int) throws -> EngineContext {
    EngineContext(clock: SystemMonotonicClock(), log: { event in
        if verbose { Terminal.standardError("tenure: \(event)\n") }
    }, watchdogFire: .seconds(watchdogFire), injectedBugs: try injectedBugsFromEnvironment())
}

/// Options every daemonless lease command shares.
struct EngineOptions: ParsableArguments {
    @Option(name: .customLong("watchdog-fire"), parsing: .unconditional, help: ArgumentHelp("Watchdog fire time W in seconds assumed for every host (hosts are dead 8N + W after their last renewal).", valueName: "SECONDS"))
    var watchdogFire: Int = Timeouts.defaultWatchdogFireSeconds

    @Flag(name: .shortAndLong, help: "Print each step of the algorithm on stderr.")
    var verbose = false

    func context() throws -> EngineContext {
        guard watchdogFire >= 0, watchdogFire <= 600 else {
            throw TenureError(.invalidArgument, "--watchdog-fire \(watchdogFire) is outside 0...600 seconds.", remedy: "Use the watchdog fire time your hosts use (60 by default).")
        }
        return try directContext(verbose: verbose, watchdogFire: watchdogFire)
    }
}

extension Direct {
    struct AcquireID: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "acquire-id",
            abstract: "Take a host id in a lockspace by the delta-lease algorithm, then exit.",
            discussion: """
            Waits 2 × io_timeout after writing (8 × io_timeout + W more if the slot \
            is held by another host). The id stays held without renewal: other \
            hosts see it dead 8 × io_timeout + W later. For tools and tests; hosts \
            normally join through the daemon.

            Example:
              tenure direct acquire-id -s LS:1:/var/lib/tenure/leases:0 --host-name node1
            """
        )
        @Option(name: .customShort("s"), help: ArgumentHelp("Lockspace, NAME:HOST_ID:PATH:OFFSET.", valueName: "LOCKSPACE"))
        var lockspace: String
        @Option(name: .customLong("host-name"), help: "Name written into the delta lease (default: this machine's host name).")
        var hostName: String?
        @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: "io_timeout to record and use, in seconds.")
        var ioTimeout: Int = 10
        @Option(parsing: .unconditional, help: ArgumentHelp("After joining, keep renewing for this many seconds, then release (a live host for tests and drills).", valueName: "SECONDS"))
        var hold: Int?
        @OptionGroup var engine: EngineOptions

        /// The longest --hold accepted (a day; a real host runs the daemon).
        static let maxHoldSeconds = 86_400

        func run() async throws {
            try await reportingErrors {
                let spec = try LockspaceSpec(parsing: lockspace)
                let name = try LeaseName(hostName ?? ProcessInfo.processInfo.hostName.prefixBytes(LeaseName.maxBytes), what: "host name")
                let io = try validIOTimeout(ioTimeout)
                if let hold, hold < 0 || hold > Self.maxHoldSeconds {
                    throw TenureError(.invalidArgument, "--hold \(hold) is outside 0...\(Self.maxHoldSeconds) seconds.", remedy: "Run the daemon for a host that stays.")
                }
                let context = try engine.context()
                // Renewals get a device handle (and I/O context) of their own.
                try await Devices.with(spec.disk.path) { device in try await Devices.with(spec.disk.path) { renewalDevice in
                    let observer = try await LockspaceObserver.open(spec, device: device, context: context)
                    let lockspace = try Lockspace(spec: spec, renewalDevice: renewalDevice, observer: observer, ioTimeout: io, context: context)
                    let host = try await lockspace.join(name: name)
                    let written = await lockspace.hold?.written.timestamp ?? .free
                    print("Joined lockspace \(spec.name) as host \(spec.hostID), generation \(host.generation), timestamp \(written).")
                    guard let hold else { return }
                    try await holdAndRelease(lockspace, devices: [device, renewalDevice], seconds: hold, context: context)
                } }
            }
        }

        /// Renews for `seconds`, then leaves; fails if the lockspace is lost meanwhile.
        private func holdAndRelease(_ lockspace: Lockspace, devices: [any BlockDevice], seconds: Int, context: EngineContext) async throws {
            let renewals = Task(executorPreference: BlockingExecutor.shared) { await lockspace.runRenewals() }
            try await context.clock.sleep(for: .seconds(seconds))
            renewals.cancel()
            _ = await renewals.value
            if let lost = await lockspace.checkExpiry() { throw lost }
            let renewed = await lockspace.renewals
            switch try await lockspace.leave(afterWritesThrough: devices) {
            case .freed:
                print("Released host id \(lockspace.spec.hostID) after \(seconds)s (\(renewed) renewals).")
            case .leftToExpire(let path):
                print("Left host id \(lockspace.spec.hostID) after \(seconds)s (\(renewed) renewals) without freeing it: a write through \(path) may still land, so the id ages out like a crashed host's.")
            case .nothingWritten:
                print("Host id \(lockspace.spec.hostID) was not held; nothing written.")
            }
        }
    }

    struct ReleaseID: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "release-id",
            abstract: "Release a host id (write timestamp 0) if it is held.",
            discussion: "Example:\n  tenure direct release-id -s LS:1:/var/lib/tenure/leases:0"
        )
        @Option(name: .customShort("s"), help: ArgumentHelp("Lockspace, NAME:HOST_ID:PATH:OFFSET.", valueName: "LOCKSPACE"))
        var lockspace: String
        @OptionGroup var engine: EngineOptions

        func run() async throws {
            try await reportingErrors {
                let spec = try LockspaceSpec(parsing: lockspace)
                let context = try engine.context()
                try await Devices.with(spec.disk.path) { device in
                    guard let (slot, current, hold) = try await heldHostID(spec, device, context) else {
                        print("Host id \(spec.hostID) of lockspace \(spec.name) is already free.")
                        return
                    }
                    try await DeltaLease.release(slot, hold: hold, context: context)
                    print("Released host id \(spec.hostID) of lockspace \(spec.name) (generation \(current.ownerGeneration)).")
                }
            }
        }
    }

    /// The slot of `spec`'s host id and a hold made from what it holds now
    /// (its owner, generation and name); nil when the host id is free.
    static func heldHostID(_ spec: LockspaceSpec, _ device: any BlockDevice, _ context: EngineContext) async throws
        -> (DeltaLeaseSlot, LeaderRecord, DeltaLeaseHold)? {
        let slot = try await LockspaceObserver.open(spec, device: device, context: context).slot(spec.hostID)
        let (current, bitmap) = try await DeltaLease.read(slot)
        guard !current.timestamp.isFree else { return nil }
        let hold = DeltaLeaseHold(host: LocalHost(id: spec.hostID, generation: current.ownerGeneration, name: current.resourceName),
                                  written: current, bitmap: bitmap, lastRenewalStart: context.clock.now())
        return (slot, current, hold)
    }

    struct RenewID: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "renew-id",
            abstract: "Renew a held host id once (write a newer timestamp), then exit.",
            discussion: """
            For drills and for sanlock's `direct renew_id`: the record is renewed \
            only if it is held, and written with the owner, generation and name \
            it has. A daemon holding the host id keeps renewing it as before.

            Example:
              tenure direct renew-id -s LS:1:/var/lib/tenure/leases:0
            """
        )
        @Option(name: .customShort("s"), help: ArgumentHelp("Lockspace, NAME:HOST_ID:PATH:OFFSET.", valueName: "LOCKSPACE"))
        var lockspace: String
        @OptionGroup var engine: EngineOptions

        func run() async throws {
            try await reportingErrors {
                let spec = try LockspaceSpec(parsing: lockspace)
                let context = try engine.context()
                try await Devices.with(spec.disk.path) { device in
                    guard let (slot, _, hold) = try await heldHostID(spec, device, context) else {
                        throw TenureError(.notOwner, "Host id \(spec.hostID) of lockspace \(spec.name) is free: there is nothing to renew.",
                                          remedy: "Take it first: `tenure direct acquire-id -s \(lockspace)`.")
                    }
                    let renewed = try await DeltaLease.renew(slot, hold: hold, context: context)
                    print("Renewed host id \(spec.hostID) of lockspace \(spec.name): timestamp \(renewed.written.timestamp.rawValue).")
                }
            }
        }
    }

    struct Acquire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Acquire a resource lease by Disk Paxos, without a daemon.",
            discussion: """
            Prints the lver committed: the holder's fencing token. With -s, the \
            host's generation is read from its delta lease and a held lease's owner \
            is judged by its delta lease (live: fail; dead: take over). Without -s \
            a lease held by another host cannot be judged and the acquire fails.

            Examples:
              tenure direct acquire -r LS:vm1:/var/lib/tenure/leases:1M --host-id 1 -s LS:1:/var/lib/tenure/leases:0
              tenure direct acquire -r LS:vm1:/var/lib/tenure/leases:1M --host-id 2 --shared
            """
        )
        @Option(name: .customShort("r"), help: ArgumentHelp("Resource, LOCKSPACE:NAME:PATH:OFFSET[:PATH:OFFSET…][:LVER].", valueName: "RESOURCE"))
        var resource: String
        @Option(name: .customLong("host-id"), parsing: .unconditional, help: "This host's id.")
        var hostID: UInt64
        @Option(name: .customLong("generation"), parsing: .unconditional, help: "This host's generation (default: from its delta lease with -s, else 0).")
        var generation: UInt64?
        @Option(name: .customShort("s"), help: ArgumentHelp("The lockspace, to judge owners and read our generation.", valueName: "LOCKSPACE"))
        var lockspace: String?
        @Flag(help: "Acquire a shared lease.")
        var shared = false
        @Flag(name: .customLong("no-wait"), help: "Fail at once while the owner's liveness is unknown.")
        var noWait = false
        @Flag(help: "Print the result as JSON.")
        var json = false
        @OptionGroup var engine: EngineOptions

        func run() async throws {
            try await reportingErrors {
                let spec = try ResourceSpec(parsing: resource)
                let context = try engine.context()
                try await withLease(spec, lockspace: lockspace, hostID: hostID, generation: generation, ballots: true, context: context) { res, host, oracle in
                    let held = try await PaxosLease.acquire(res, host: host, oracle: oracle,
                                                            options: AcquireOptions(shared: shared || spec.shared, requiredLver: spec.lver, noWait: noWait),
                                                            context: context)
                    if json {
                        print(Terminal.json(LeaseResult(resource: held.stateString, lver: held.lver.rawValue, shared: held.shared, hostId: host.id.rawValue, generation: host.generation.rawValue)))
                    } else {
                        print("Acquired \(spec.name)\(held.shared ? " shared" : "") as \(host): lver \(held.lver).")
                    }
                }
            }
        }
    }

    struct Release: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Release a resource lease this host id holds, without a daemon.",
            discussion: "Example:\n  tenure direct release -r LS:vm1:/var/lib/tenure/leases:1M --host-id 1 -s LS:1:/var/lib/tenure/leases:0"
        )
        @Option(name: .customShort("r"), help: ArgumentHelp("Resource, LOCKSPACE:NAME:PATH:OFFSET.", valueName: "RESOURCE"))
        var resource: String
        @Option(name: .customLong("host-id"), parsing: .unconditional, help: "The holder's host id.")
        var hostID: UInt64
        @Option(name: .customLong("generation"), parsing: .unconditional, help: "The holder's generation (default: the lease's owner generation).")
        var generation: UInt64?
        @Option(name: .customShort("s"), help: ArgumentHelp("The lockspace, to read the holder's generation.", valueName: "LOCKSPACE"))
        var lockspace: String?
        @OptionGroup var engine: EngineOptions

        func run() async throws {
            try await reportingErrors {
                let spec = try ResourceSpec(parsing: resource)
                let context = try engine.context()
                try await withLease(spec, lockspace: lockspace, hostID: hostID, generation: generation, context: context) { res, host, _ in
                    let held = try await currentHold(res, host: host, explicitGeneration: generation != nil || lockspace != nil)
                    try await PaxosLease.release(res, held: held, context: context)
                    print("Released \(spec.name)\(held.shared ? " (shared)" : "") held by host \(held.host.id) at lver \(held.lver).")
                }
            }
        }
    }

    struct Request: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask the holder of a resource lease to give it up.",
            discussion: """
            Writes the lease's request record. LVER is the version the requester \
            wants (default: the current lver + 1); the holder acts on a request for \
            a later version than it holds: --force kills its holder, --graceful \
            asks it to stop (killpath or SIGTERM). --clear removes a request.

            Example:
              tenure direct request -r LS:vm1:/var/lib/tenure/leases:1M --force
            """
        )
        @Option(name: .customShort("r"), help: ArgumentHelp("Resource, LOCKSPACE:NAME:PATH:OFFSET[:LVER].", valueName: "RESOURCE"))
        var resource: String
        @Flag(help: "Kill the holder (SIGKILL).")
        var force = false
        @Flag(help: "Ask the holder to stop (killpath or SIGTERM).")
        var graceful = false
        @Flag(help: "Clear the request record.")
        var clear = false
        @OptionGroup var engine: EngineOptions

        func validate() throws {
            guard [force, graceful, clear].filter({ $0 }).count == 1 else {
                throw ValidationError("Give exactly one of --force, --graceful or --clear.")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let spec = try ResourceSpec(parsing: resource)
                let context = try engine.context()
                try await withDevices(spec) { devices in
                    let res = try await PaxosResource.open(spec, devices: devices)
                    let mode: RequestRecord.ForceMode = force ? .force : (graceful ? .graceful : .none)
                    let (leader, wanted) = try await PaxosLease.request(res, lver: spec.lver, mode: mode, context: context)
                    if mode == .none {
                        print("Cleared the request record of \(spec.name).")
                    } else {
                        print("Requested \(spec.name) at lver \(wanted) (\(mode)); it is at lver \(leader.lver), \(leader.timestamp.isFree ? "free" : "held by host \(leader.ownerID)").")
                    }
                }
            }
        }
    }
}

struct LeaseResult: Encodable {
    let resource: String
    let lver: UInt64
    let shared: Bool
    let hostId: UInt64
    let generation: UInt64
}

/// Opens one device per disk of `spec`, runs `body`, closes them.
func withDevices<T>(_ spec: ResourceSpec, _ body: ([any BlockDevice]) async throws -> T) async throws -> T {
    var devices: [any BlockDevice] = []
    do {
        for disk in spec.disks { devices.append(try Devices.open(disk.path)) }
        let result = try await body(devices)
        for d in devices { await d.close() }
        return result
    } catch {
        for d in devices { await d.close() }
        throw error
    }
}

/// Opens the resource (and the lockspace when given) and works out who this host is.
///
/// `ballots`: the command runs Disk Paxos ballots. Daemons read only the
/// dblocks of hosts whose delta lease is held (docs/timeouts.md), so a
/// ballot from a host id that is not held could go unseen by them: with a
/// lockspace, the host id must be held; without one, a warning says so.
func withLease<T>(_ spec: ResourceSpec, lockspace: String?, hostID: UInt64, generation: UInt64?, ballots: Bool = false,
                  context: EngineContext,
                  _ body: (PaxosResource, LocalHost, (any HostLivenessOracle)?) async throws -> T) async throws -> T {
    try await withDevices(spec) { devices in
        let res = try await PaxosResource.open(spec, devices: devices)
        let id = HostID(hostID)
        try res.validate(host: id)
        guard let lockspace else {
            if ballots {
                let warning = "tenure: warning: no lockspace given (-s): daemons joined to lockspace \(spec.lockspace) read only the "
                    + "dblocks of hosts holding a host id and would not see this ballot; use this only on leases no daemon uses.\n"
                Terminal.standardError(warning)
            }
            return try await body(res, LocalHost(id: id, generation: Generation(generation ?? 0)), nil)
        }
        var ls = try LockspaceSpec(parsing: lockspace)
        guard ls.name == spec.lockspace else {
            throw TenureError(.nameMismatch, "The resource belongs to lockspace \(spec.lockspace), but -s names \(ls.name).", remedy: "Name the resource's own lockspace.")
        }
        if ls.hostID.isNone { ls.hostID = id }
        let lsSpec = ls
        return try await Devices.with(ls.disk.path) { lsDevice in
            let observer = try await LockspaceObserver.open(lsSpec, device: lsDevice, context: context)
            let (own, _) = try await DeltaLease.read(try await observer.slot(id))
            if ballots, own.timestamp.isFree || own.ownerID != id {
                throw TenureError(.noLockspace,
                                  "Host id \(id) does not hold its delta lease in lockspace \(lsSpec.name): daemons skip the dblocks of hosts whose host id is free, so its ballot could go unseen.",
                                  remedy: "Take the host id first: `tenure direct acquire-id -s \(lsSpec.name):\(id):\(lsSpec.disk.path):\(lsSpec.disk.offset)`.")
            }
            return try await body(res, LocalHost(id: id, generation: generation.map { Generation($0) } ?? own.ownerGeneration), observer)
        }
    }
}

/// What `host` holds of `res` now: the exclusive lease if the leader names
/// it, else a shared one if its mode block says so.
func currentHold(_ res: PaxosResource, host: LocalHost, explicitGeneration: Bool) async throws -> HeldLease {
    let areas = try await res.readAreas()
    let leader = PaxosResource.newest(areas.map(\.leader))
    if leader.ownerID == host.id, !leader.timestamp.isFree, !explicitGeneration || leader.ownerGeneration == host.generation {
        return HeldLease(resource: res.spec, lver: leader.lver, leader: leader, shared: false,
                         host: LocalHost(id: host.id, generation: leader.ownerGeneration))
    }
    if let own = areas.compactMap({ $0.dblocks.first { $0.hostID == host.id } }).first(where: { $0.mode.isShared }) {
        return HeldLease(resource: res.spec, lver: leader.lver, leader: leader, shared: true,
                         host: LocalHost(id: host.id, generation: own.mode.generation))
    }
    throw TenureError(.notOwner, "Host \(host.id) does not hold \(res.spec.name): it is \(leader.timestamp.isFree ? "free" : "held by host \(leader.ownerID)") at lver \(leader.lver).",
                      remedy: "Check the host id.")
}

