import TenureCore
import TenureEngine
import TenureFormat
import TenureHost

/// One client request, whichever socket it came through: each codec
/// (``TenureCodec``, ``SanlockCodec``) decodes its bytes into one of these
/// at the edge, the daemon admits it by one rule (``Operation/needs``) and
/// carries it out in one handler (``Daemon/handle(_:from:socket:)``).
///
/// It carries typed values only. A malformed field is refused by the codec
/// with an error naming it, never replaced by a default: a bad pid is not
/// the caller, unknown flag bits are not "exclusive", an io_timeout outside
/// its range is not the default.
enum Request: Sendable, Equatable {
    // MARK: A process and its leases

    /// The caller registers: its connection lasts as long as it does.
    case register
    case acquire(Subject, shared: Bool, resources: [ResourceSpec], options: LeaseOptions = LeaseOptions())
    /// Releases leases of a process by name (`*`: all of them).
    case release(Subject, names: [String])
    /// Releases one exclusive lease, renaming it on disk in the same write
    /// (sanlock's SANLK_REL_RENAME).
    case releaseRenaming(Subject, lockspace: LeaseName, name: LeaseName, to: LeaseName)
    /// Releases orphan leases of a lockspace (names, or `*` for all).
    case releaseOrphans(lockspace: LeaseName, names: [String])
    case inquire(Subject)
    case convert(Subject, name: String, shared: Bool)
    /// The caller's killpath: run (as the caller's user) instead of signals.
    case killpath(program: String, arguments: [String])
    case restrict(RestrictOptions)
    /// Sets the lock value block of a lease held here (acquired with one).
    case setLVB(LeaseReference, bytes: [UInt8])
    /// Reads it: its first `length` bytes, or all of it for 0.
    case getLVB(LeaseReference, length: Int)

    // MARK: Lockspaces

    case addLockspace(LockspaceSpec, hostName: String?, ioTimeout: IOTimeout?, async: Bool)
    /// Leaves a lockspace with no lease held (sanlock's REM_UNUSED);
    /// leaving is quick, so an asynchronous leave is done at once.
    case remLockspace(name: LeaseName)
    /// Whether the lockspace is joined (host id `.none`: with any host id);
    /// with `wait`, a join in progress is waited out.
    case inquireLockspace(name: LeaseName, hostID: HostID, wait: Bool)
    /// Every lockspace joined, or being joined, here.
    case listLockspaces
    /// The hosts of a joined lockspace as this host sees them (every slot
    /// ever used; one host id unless nil).
    case hosts(lockspace: LeaseName, only: HostID?)
    /// A lockspace's recent renewals.
    case renewal(lockspace: LeaseName)
    /// Marks a lockspace used (or unused) by something outside the daemon
    /// (sanlock's set_config).
    case markUsed(lockspace: LeaseName, LockspaceUse)
    /// Makes the connection a listener for the lockspace's host events.
    case listenForEvents(lockspace: LeaseName)
    /// A listener was closed (its connection ends on its own).
    case endEvents(lockspace: LeaseName)
    /// Sends a host event through our delta lease.
    case setEvent(lockspace: LeaseName, HostEventRequest, EventOptions)
    /// Writes a request for another host's lease (force: its holder is killed).
    case request(resource: ResourceSpec, force: Bool)
    /// Looks at the request records of held leases now.
    case examine

    // MARK: The daemon

    case status(StatusView)
    case logDump
    /// The daemon's metrics (Prometheus text).
    case metrics
    case version
    case shutdown(force: Bool)

    // MARK: Lease areas

    /// Lays out a lockspace area, unless hosts are joined to it.
    case writeLockspace(LockspaceArea, maxHosts: Int, ioTimeout: IOTimeout?)
    /// Lays out a resource area, unless it is held.
    case writeResource(ResourceArea, maxHosts: Int, numHosts: Int, clear: Bool)
    /// A lockspace area's name and io_timeout.
    case readLockspace(LeaseDisk)
    /// A resource area's names and lver.
    case readResource(LeaseDisk)
    /// Who holds a resource, read from its area.
    case readResourceOwners(LeaseDisk)
    /// The area size a device's sector size implies.
    case align(path: String)
    /// A resource index's operations.
    case index(IndexRequest)

    /// A lock value block is one sector at most.
    static let maxLVBBytes = 4096
}

/// Whom a lease command is for: the caller itself, or another process
/// (``Daemon/target(_:_:)`` decides whether the caller may act for it).
enum Subject: Sendable, Equatable, CustomStringConvertible {
    case caller
    case process(ProcessID)

    var description: String {
        switch self {
        case .caller: "the caller"
        case .process(let pid): "process \(pid.rawValue)"
        }
    }
}

/// A lease held here, named for an LVB command: one a process holds (Tenure's
/// protocol: a process reads and writes only the blocks of its own leases),
/// or one anyone on this host holds (sanlock's).
enum LeaseReference: Sendable, Equatable {
    case heldBy(Subject, name: String)
    case onThisHost(lockspace: LeaseName, name: LeaseName)
}

/// What a process restricts itself to (sanlock_restrict, tenure_restrict).
struct RestrictOptions: OptionSet, Sendable, Hashable {
    let rawValue: UInt8
    /// The connection makes no further request.
    static let all = RestrictOptions(rawValue: 1 << 0)
    /// Fencing it sends SIGKILL only…
    static let sigkillOnly = RestrictOptions(rawValue: 1 << 1)
    /// …or SIGTERM only (never both: the codecs refuse that).
    static let sigtermOnly = RestrictOptions(rawValue: 1 << 2)
}

/// How a host event is sent (sanlock's SANLK_SETEV_*).
struct EventOptions: OptionSet, Sendable, Hashable {
    let rawValue: UInt8
    /// To every other host, not only the one named.
    static let allHosts = EventOptions(rawValue: 1 << 0)
    /// Generation 0 means the target's current generation.
    static let currentGeneration = EventOptions(rawValue: 1 << 1)
    /// Replace an event set less than 6N ago (else the send is refused as busy).
    static let replace = EventOptions(rawValue: 1 << 2)
    /// Clear our bit for the host named.
    static let clearHost = EventOptions(rawValue: 1 << 3)
    /// Clear the event we carry.
    static let clearEvent = EventOptions(rawValue: 1 << 4)
}

/// One host event to send.
struct HostEventRequest: Sendable, Equatable {
    /// The host it is for (with ``EventOptions/allHosts``, ignored).
    var to: HostID
    var generation: Generation
    var event: UInt64
    var data: UInt64
}

/// sanlock's set_config commands.
enum LockspaceUse: Sendable, Equatable {
    case used, unused, usedByOrphans, unusedByOrphans
}

/// What a status request shows: Tenure's summary (JSON), or sanlock's
/// records down to one kind (nil: every kind).
enum StatusView: Sendable, Equatable {
    case summary
    case records(depth: StatusDepth?)

    /// The last kind of record a sanlock status shows (SANLK_STATE_*).
    enum StatusDepth: Sendable, Equatable {
        case daemon, clients, lockspaces
    }
}

/// The sector size and alignment asked for a lease area (nil: the device's).
struct AreaLayout: Sendable, Equatable {
    var sectorSize: SectorSize? = nil
    var alignment: Alignment? = nil
}

/// A lockspace area to lay out.
struct LockspaceArea: Sendable, Equatable {
    var name: LeaseName
    var disk: LeaseDisk
    var layout: AreaLayout
}

/// A resource area to lay out.
struct ResourceArea: Sendable, Equatable {
    var lockspace: LeaseName
    var name: LeaseName
    var disks: [LeaseDisk]
    var layout: AreaLayout
}

/// One operation on a resource index (sanlock's *_rindex, create_resource
/// and delete_resource). Without `useLockspace` (SANLK_RX_NO_LOCKSPACE)
/// the index lease is not taken and the lockspace need not be joined.
enum IndexRequest: Sendable, Equatable {
    /// Lays out the index and the lease that guards it.
    case format(IndexSpec, layout: AreaLayout, maxResources: Int)
    /// Writes the index again from the leases found after it.
    case rebuild(IndexSpec, useLockspace: Bool)
    /// Finds an entry by name, by offset, both, or neither (the first free one).
    case lookup(IndexSpec, name: LeaseName, offset: UInt64, useLockspace: Bool)
    /// Lists `name` at `offset` (the area itself is not touched).
    case add(IndexSpec, name: LeaseName, offset: UInt64, useLockspace: Bool)
    /// Unlists the entry at `offset`.
    case remove(IndexSpec, offset: UInt64, useLockspace: Bool)
    /// Lays out a new lease in the first free area and lists it (num_hosts 0: all).
    case create(IndexSpec, name: LeaseName, numHosts: Int)
    /// Unlists a lease and clears its area.
    case delete(IndexSpec, name: LeaseName, offset: UInt64)
}

/// What the handler answers, in no protocol's vocabulary: each codec
/// encodes it in its own.
enum Reply: Sendable {
    case done
    /// Text fields, for what only Tenure's protocol shows (a join's host,
    /// an acquire's states, the summary status, metrics).
    case fields([String])
    /// The join goes on in the background.
    case joining
    case lockspaceState(LockspaceState)
    case lockspaces([LockspaceListing])
    case hosts([HostView])
    case renewals([RenewalRecord])
    /// The leases of one process.
    case held([HeldLease])
    case log(String)
    /// sanlock's status records.
    case records([StatusRecord])
    case lockspaceArea(name: LeaseName, ioTimeout: IOTimeout)
    case resourceArea(lockspace: LeaseName, name: LeaseName, lver: LeaseVersion)
    case owners(lver: LeaseVersion, shared: Bool, [LeaseOwner])
    case alignment(Alignment)
    case lvb([UInt8])
    /// An index entry; `exact` false when a lookup by name and offset found
    /// another name there.
    case indexEntry(name: LeaseName, offset: UInt64, exact: Bool)
    case version
}

/// inq_lockspace's three answers.
enum LockspaceState: Sendable, Equatable {
    case joined, joining, absent
}

/// A lockspace joined (or being joined) here.
struct LockspaceListing: Sendable, Equatable {
    let spec: LockspaceSpec
    let joining: Bool
}

/// One host of a lockspace as this host sees it.
struct HostView: Sendable {
    let id: HostID
    let record: LeaderRecord
    /// nil: not judged yet.
    let state: HostState?
    let isSelf: Bool
}

/// A holder of a resource lease, read from its area.
struct LeaseOwner: Sendable, Equatable {
    let hostID: HostID
    let generation: Generation
    /// nil for a sharer (its mode block carries none).
    let timestamp: UInt64?
}

/// One record of sanlock's status: the daemon, a client, a lockspace, a lease.
enum StatusRecord: Sendable {
    case daemon(DaemonFacts)
    case client(pid: Int32)
    case lockspace(LockspaceListing)
    case orphan(HeldLease)
    case lease(HeldLease, pid: ProcessID)
}
