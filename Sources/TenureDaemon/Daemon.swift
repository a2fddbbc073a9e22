import Glibc
import Dispatch
import Logging
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
import TenureHost
import TenureIO
import TenureSanlockWire
import TenureSyscall

/// The daemon's settings; every one is also a `tenure daemon` flag and a
/// key of the config file.
public struct DaemonConfig: Sendable {
    public var runDir: String
    public var hostName: String
    /// The io_timeout written into lockspaces this host joins (unless the
    /// add_lockspace request names another).
    public var ioTimeout = IOTimeout(seconds: 10)
    /// The watchdog device, or nil for none (test setups only).
    public var watchdogDevice: String? = "/dev/watchdog"
    public var watchdogFire: Duration = .seconds(Int64(Timeouts.defaultWatchdogFireSeconds))
    /// SIGTERM (or the killpath) to SIGKILL; default from the watchdog fire time.
    public var killGrace: Duration?
    /// Group that owns the socket (mode 0660) and may act for other pids.
    public var socketGroup: String?
    /// How often the daemon looks for requests aimed at its leases (the
    /// bitmaps of hosts in use; the leases' request records when signalled,
    /// or every 2N) and for holders that exited.
    public var requestPoll: Duration = Timeouts.requestPoll
    /// Known safety bugs to switch on: only to prove a witness can fail
    /// (`TENURE_INJECT_BUG`; see ``InjectedBug``). Empty in every real run.
    public var injectedBugs: Set<InjectedBug> = []
    /// The most clients connected at once.
    public var maxConnections = 1024
    /// The most leases held at once, over all processes.
    public var maxLeases = 4096
    /// mlockall at start, so the renewal path never waits on a page fault
    /// (``Starvation``). Off only for test setups.
    public var lockMemory = true
    /// The renewal path (``RenewalThread`` and each renewal device's
    /// reaper) at SCHED_RR ``Starvation/realtimePriority``, so busy
    /// processes never delay a renewal. Only those threads: clients and
    /// their connections stay ordinary. Off only for test setups.
    public var realtime = true
    /// Where sanlock's client protocol is also served (DIR/sanlock.sock); nil: not served.
    public var sanlockRunDir: String?
    /// Where a detached daemon logs (nil: RUN_DIR/tenure.log); SIGHUP reopens it.
    public var logFile: String?
    /// Where the metrics are served over HTTP (`HOST:PORT`); nil: not served.
    public var metricsListen: String?

    /// The settings as `KEY=VALUE` words, as the config file writes them:
    /// logged once at start, so the log says what the daemon ran with.
    public var effective: String {
        var words = ["run-dir=\(runDir)", "host-name=\(hostName)", "io-timeout=\(ioTimeout.seconds)",
                     "watchdog=\(watchdogDevice ?? "none")", "watchdog-fire=\(watchdogFire.components.seconds)",
                     "kill-grace=\(effectiveKillGrace.components.seconds)", "max-connections=\(maxConnections)", "max-leases=\(maxLeases)",
                     "lock-memory=\(lockMemory ? "on" : "off")", "realtime=\(realtime ? "on" : "off")"]
        if let socketGroup { words.append("socket-group=\(socketGroup)") }
        if let sanlockRunDir { words.append("sanlock-run-dir=\(sanlockRunDir)") }
        if let logFile { words.append("log-file=\(logFile)") }
        if let metricsListen { words.append("metrics-listen=\(metricsListen)") }
        return words.joined(separator: " ")
    }

    public init(runDir: String, hostName: String) {
        self.runDir = runDir
        self.hostName = hostName
    }

    var timeouts: Timeouts { Timeouts(ioTimeout, watchdogFire: watchdogFire) }
    var effectiveKillGrace: Duration { killGrace ?? timeouts.killGrace }
}

/// Who sent a request: from SO_PEERCRED, never from the message.
public struct Peer: Sendable, Hashable {
    /// Which connection: restrict applies to it alone.
    public let connection: UInt64
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32
    /// An administrator: joins and leaves lockspaces, requests leases, stops
    /// the daemon. Root and the daemon's own user on either socket; on
    /// sanlock's socket also the socket group (as sanlock gives everyone
    /// who may open its socket).
    public let isAdmin: Bool
    /// A member of the socket group: acts for other processes of its own user.
    public let inSocketGroup: Bool

    public init(connection: UInt64, pid: Int32, uid: UInt32, gid: UInt32, isAdmin: Bool, inSocketGroup: Bool) {
        self.connection = connection
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.isAdmin = isAdmin
        self.inSocketGroup = inSocketGroup
    }

    /// An administrator, from its credentials alone — whichever socket it
    /// came through: root, the daemon's user, or the socket group.
    static func isAdministrator(uid: UInt32, inSocketGroup: Bool) -> Bool {
        uid == 0 || uid == daemonUID || inSocketGroup
    }

    /// Root, or the daemon's own user — whichever socket it came through.
    /// Only it acts for a process that has no connection of its own, and
    /// adopts another user's orphan.
    public var isRoot: Bool { uid == 0 || uid == Self.daemonUID }
    static let daemonUID = geteuid()
}

/// One lockspace this host has joined: its delta lease, renewed on its own
/// device handle, the observer and the device handle client operations use.
final class JoinedLockspace: @unchecked Sendable {
    let spec: LockspaceSpec
    let lockspace: Lockspace
    let renewalDevice: any BlockDevice
    let clientDevice: any BlockDevice
    var tasks: [Task<Void, Never>] = []

    init(spec: LockspaceSpec, lockspace: Lockspace, renewalDevice: any BlockDevice, clientDevice: any BlockDevice) {
        self.spec = spec
        self.lockspace = lockspace
        self.renewalDevice = renewalDevice
        self.clientDevice = clientDevice
    }
}

/// A client-side device handle and how many users hold it.
struct OpenDevice {
    let device: any BlockDevice
    var users: Int
}

/// The daemon's named limits.
public enum Limits {
    /// Connection places kept for administrators (root): clients that
    /// fill every other place never lock root out of status and shutdown.
    public static let reservedAdminConnections = 4
    /// The most lease files and devices the daemon keeps open at once
    /// (each has a descriptor, an io_context and a reaper thread).
    public static let maxOpenDevices = 256
    /// Listeners for one lockspace's host events.
    public static let maxEventListeners = 32
    /// Connections the kernel queues for the loop to accept.
    public static let listenBacklog: Int32 = 128
    /// The most connections the loop accepts before it turns to other work.
    public static let acceptsPerWake = 32
}

/// The daemon's state and every operation on it, on the daemon's event
/// loop (its executor). Lockspace renewal runs in tasks of its own, on the
/// renewal thread and device handles of its own, so client work never
/// delays it; everything else goes through this actor.
public actor Daemon {
    let config: DaemonConfig
    let log: Logger
    let context: EngineContext
    var lockspaces: [LeaseName: JoinedLockspace] = [:]
    /// Every decision about local processes and their leases (TenureHost);
    /// this actor is its shell: it decodes, does the I/O and carries out
    /// the core's directives.
    var core: HostCore {
        // Every change of who holds leases reaches the record before any reply.
        didSet { holders?.match(core.leases) }
    }
    /// The holders, as the next incarnation will find them (``HolderRecord``).
    var holders: HolderRecord?
    /// Open connections per pid: a pid with none and no longer alive loses its leases.
    var connections: [Int32: Int] = [:]
    /// Client-side device handles, counted by their users (``retainDevice(_:)``).
    var devices: [String: OpenDevice] = [:]
    /// Connections listening for a lockspace's host events (sanlock's
    /// reg_event), active once their registration's reply is out.
    var eventListeners: [LeaseName: [EventListener]] = [:]
    /// The last event delivered from each host, so each is delivered once.
    var deliveredEvents: [LeaseName: [HostID: DeliveredEvent]] = [:]
    /// The event this host last set in each lockspace, and when.
    var eventSet: [LeaseName: (event: HostEvent, at: MonotonicInstant)] = [:]
    /// Lock value blocks of resources held here, by ``lvbKey(_:)``.
    var lvbs: [String: LockValueBlock] = [:]
    /// Handles closed while a write through them could still land (a close
    /// gives up on I/O the kernel never returns): until it lands, no leave
    /// frees its host id (``Lockspace/leave(afterWritesThrough:)``).
    var closedWithWritesInFlight: [any BlockDevice] = []
    /// Connections that restricted themselves: no further requests.
    var restricted: Set<UInt64> = []
    /// The local processes the daemon deals with (connected, or holding
    /// leases), each named by a pidfd: the core's process seam.
    let processes = PidfdProcesses(killPidVariable: Wire.killPidEnvironment)
    /// Where requests' time goes, stage by stage (filled by the server).
    nonisolated let requestStages = RequestStages()
    /// Connections that sent `register`: they are never closed for idling.
    var registered: Set<UInt64> = []
    /// Lockspaces whose loss the core has been told of (``fenceLost(_:_:)``).
    var fencedLockspaces: Set<LeaseName> = []
    func finishedJoining(_ name: LeaseName) { core.joinEnded(name) }

    /// When each lockspace's held leases' request records are next read
    /// whether or not anyone signalled.
    var nextFullRequestPoll: [LeaseName: MonotonicInstant] = [:]
    /// When this host last set bits to signal a request, by lockspace.
    var signalledAt: [LeaseName: MonotonicInstant] = [:]
    var resources: [String: PaxosResource] = [:]
    /// Lockspaces whose resource index this daemon is changing: one change
    /// at a time per lockspace, as sanlock allows (others get EBUSY).
    var indexWork: Set<LeaseName> = []
    /// Work done since start, for `metrics`.
    var counters = DaemonCounters()
    /// When each process's lease was handed to it ("PID:LS:NAME"), for status.
    var heldSince: [String: MonotonicInstant] = [:]
    public internal(set) var shuttingDown = false
    var background: [Task<Void, Never>] = []

    /// nil with `--watchdog none`.
    let watchdog: (any Watchdog)?
    /// Where every lockspace's renewals run (its clock wakes their sleeps).
    let renewalThread: RenewalThread
    /// The thread everything else runs on: this actor, the requests'
    /// tasks, the sockets, and the completions of the client handles.
    public nonisolated let loop: EventLoop

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    /// Pets that failed (logged each time), for status.
    var petFailures = 0

    init(config: DaemonConfig, log: Logger, renewalThread: RenewalThread, loop: EventLoop, watchdog: (any Watchdog)? = nil, holders: HolderRecord? = nil) {
        self.config = config
        self.holders = holders
        self.loop = loop
        self.log = log
        self.watchdog = watchdog
        self.renewalThread = renewalThread
        let logger = log
        context = EngineContext(clock: SystemMonotonicClock.shared, log: { event in
            logger.debug("\(event)")
        }, watchdogFire: config.watchdogFire, injectedBugs: config.injectedBugs)
        core = HostCore(settings: HostCoreSettings(watchdogFire: config.watchdogFire, killGrace: config.effectiveKillGrace,
                                                   maxLeases: config.maxLeases, injectedBugs: config.injectedBugs))
    }

    /// Starts the background loops: request polling, fencing and exits,
    /// and the watchdog's pets.
    public func start() {
        background.append(Task { await self.pollLoop() })
        background.append(Task { await self.fenceLoop() })
        if watchdog != nil { background.append(Task { await self.petLoop() }) }
    }

    /// Pets the watchdog whenever the core says it may and is due; on a loop
    /// of its own, so that no release's I/O delays it.
    func petLoop() async {
        while !Task.isCancelled {
            observeLockspaces()
            await carryOut(core.petIfDue(at: context.clock.now()))
            try? await context.clock.sleep(for: core.settings.petInterval / 4)
        }
    }

    /// A clean stop holds nothing: the record goes. A stop that leaves a
    /// holder running (one that survived a forced shutdown's SIGKILL) keeps
    /// it, so that the next incarnation fences that holder first.
    func closeHolderRecord() {
        if core.leases.isEmpty { holders?.remove() } else { holders?.close() }
        holders = nil
    }

    /// One pet; a failure is logged and counted, never ignored.
    func pet() {
        guard let watchdog else { return }
        do {
            try watchdog.pet()
        } catch {
            petFailures += 1
            log.error("petting the watchdog failed (\(petFailures) so far): \(error)")
        }
    }

    // MARK: Requests from clients

    /// Marks `spec` as being joined (``HostCore/beginJoin(_:)``; the core
    /// knows every lockspace the shell runs: ``lockspaces`` and the core's
    /// facts are set and cleared together).
    func reserveJoin(_ spec: LockspaceSpec) throws {
        try core.beginJoin(spec)
    }

    /// The process a request acts for: the caller (pid 0 or its own), or
    /// another live process — for root (or the daemon's user) any process;
    /// for a socket-group member only a process of its own user that has a
    /// connection of its own to the daemon (it registered, as sanlock
    /// requires). Otherwise anyone
    /// let in could have any root process killed: acquire a lease for it,
    /// then force a request for that lease. The same rule on both sockets.
    func target(_ pid: Int32, _ peer: Peer) throws -> Int32 {
        if pid == 0 || pid == peer.pid { return peer.pid }
        if peer.isRoot {
            _ = try process(pid, for: peer)
            return pid
        }
        guard peer.isAdmin || peer.inSocketGroup else {
            throw TenureError(.permissionDenied, "Process \(peer.pid) may not act for process \(pid).",
                              remedy: "Only root, or a member of the daemon's socket group for its own user's processes, acts for another process.")
        }
        guard (connections[pid] ?? 0) > 0 else {
            throw TenureError(.permissionDenied, "Process \(pid) has no connection of its own to the daemon; only root acts for a process that has not registered.",
                              remedy: "Have process \(pid) register first (tenure_register, sanlock_register), or run the command as root.")
        }
        let tracked = try process(pid, for: peer)
        guard tracked.uid == peer.uid else {
            throw TenureError(.permissionDenied, "Process \(pid) belongs to user \(tracked.uid); process \(peer.pid) (user \(peer.uid)) may not act for it.",
                              remedy: "Run the command as root, or as the user that owns process \(pid).")
        }
        return pid
    }

    /// The tracked process `pid`, named by a pidfd opened now if it is not
    /// tracked yet (or the pid was reused since).
    func process(_ pid: Int32, for peer: Peer) throws -> LocalProcess {
        if let known = processes.live(pid) { return known }
        let credentials = pid == peer.pid ? (peer.uid, peer.gid) : (processCredentials(pid) ?? (UInt32.max, UInt32.max))
        let opened = try LocalProcess.open(pid: pid, uid: credentials.0, gid: credentials.1)
        processes.track(opened)
        core.trackNew(ProcessID(pid))
        return opened
    }

    // MARK: Connections

    /// Closes a connection's pidfd the daemon does not keep (-1: none was taken).
    func closePidfd(_ pidfd: Int32) {
        guard pidfd >= 0 else { return }
        try? Syscall.close(FileDescriptor(rawValue: pidfd), path: "a pidfd")
    }

    /// Whether a new connection may stay: the last ``Limits/reservedAdminConnections``
    /// places are kept for administrators, so idle clients never lock root
    /// out of status and shutdown. `pidfd` names the connecting process.
    public func connected(_ peer: Peer, pidfd: Int32) -> Bool {
        let total = connections.values.reduce(0, +)
        let limit = peer.isAdmin ? config.maxConnections : config.maxConnections - min(Limits.reservedAdminConnections, config.maxConnections / 2)
        guard total < limit else {
            closePidfd(pidfd)
            return false
        }
        connections[peer.pid, default: 0] += 1
        if processes.live(peer.pid) != nil {
            closePidfd(pidfd)
        } else {
            // A record left by an earlier process with this pid is replaced:
            // its killpath and restrictions were that process's.
            if let named = pidfd >= 0 ? LocalProcess(pid: peer.pid, pidfd: pidfd, uid: peer.uid, gid: peer.gid)
                                      : try? LocalProcess.open(pid: peer.pid, uid: peer.uid, gid: peer.gid) {
                processes.track(named)
            } else {
                processes.forget(peer.pid)
            }
            core.trackNew(ProcessID(peer.pid))
        }
        return true
    }

    /// Whether a connection may be closed for idling: it never registered
    /// and its process holds no leases.
    public func mayCloseIdle(_ peer: Peer) -> Bool {
        !registered.contains(peer.connection) && core.leases[ProcessID(peer.pid)] == nil
    }

    /// The connection of `pid` closed: when it was its last, the process is
    /// gone or no longer registered, and its leases are released.
    public func disconnected(_ peer: Peer) async {
        connections[peer.pid, default: 1] -= 1
        if connections[peer.pid] == 0 { connections[peer.pid] = nil }
        restricted.remove(peer.connection)
        registered.remove(peer.connection)
        for name in eventListeners.keys { eventListeners[name]!.removeAll { $0.connection == peer.connection } }
        guard connections[peer.pid] == nil else { return }
        let pid = ProcessID(peer.pid)
        observeLockspaces()
        let running = isRunning(peer.pid)
        await carryOut(core.disconnected(pid, stillRunning: running, at: context.clock.now()))
        if !running { fencedProcessExited(peer.pid) }
        if !core.isTracked(pid) { processes.forget(peer.pid) }
    }
}

extension HostLogLevel {
    /// The swift-log level of a core log line.
    var logging: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .notice: .notice
        case .warning: .warning
        case .error: .error
        case .critical: .critical
        }
    }
}
