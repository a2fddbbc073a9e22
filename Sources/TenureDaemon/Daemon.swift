import Foundation
import Logging
import TenureClient
import TenureCore
import TenureEngine
import TenureFormat
import TenureIO

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
    public var requestPoll: Duration = .seconds(1)
    /// Known safety bugs to switch on: only to prove a witness can fail
    /// (`TENURE_INJECT_BUG`; see ``InjectedBug``). Empty in every real run.
    public var injectedBugs: Set<InjectedBug> = []
    /// The most clients connected at once.
    public var maxConnections = 1024
    /// The most leases held at once, over all processes.
    public var maxLeases = 4096

    public init(runDir: String, hostName: String) {
        self.runDir = runDir
        self.hostName = hostName
    }

    var timeouts: Timeouts { Timeouts(ioTimeout: .seconds(Int64(ioTimeout.seconds)), watchdogFire: watchdogFire) }
    var effectiveKillGrace: Duration { killGrace ?? timeouts.killGrace }
}

/// Who sent a request: from SO_PEERCRED, never from the message.
public struct Peer: Sendable, Hashable {
    /// Which connection: restrict applies to it alone.
    public let connection: UInt64
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32
    /// Root, or a member of the socket group: may act for other pids.
    public let privileged: Bool
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

/// How the daemon may stop a process (killpath, restrict).
struct ProcessControl: Sendable {
    var killpath: [String]?
    var sigkillOnly = false
    var sigtermOnly = false
}

/// A lease a process holds through the daemon.
struct ProcessLease: Sendable {
    let lockspace: LeaseName
    let resource: PaxosResource
    var lease: HeldLease
    var name: String { lease.resource.name.description }
}

/// The daemon's state and every operation on it. Lockspace renewal runs in
/// tasks of its own, on device handles of its own, so client work never
/// delays it; everything else goes through this actor.
public actor Daemon {
    let config: DaemonConfig
    let log: Logger
    let context: EngineContext
    var lockspaces: [LeaseName: JoinedLockspace] = [:]
    /// pid → resource name → lease.
    var holders: [Int32: [String: ProcessLease]] = [:]
    /// Open connections per pid: a pid with none and no longer alive loses its leases.
    var connections: [Int32: Int] = [:]
    var devices: [String: any BlockDevice] = [:]
    /// Connections that restricted themselves: no further requests.
    var restricted: Set<UInt64> = []
    var controls: [Int32: ProcessControl] = [:]
    /// Lockspaces an asynchronous add is joining.
    var joining: Set<LeaseName> = []

    func finishedJoining(_ name: LeaseName) { joining.remove(name) }

    /// Leases ("LOCKSPACE:NAME") an acquire is under way for.
    var acquiring: Set<String> = []
    /// When each lockspace's held leases' request records are next read
    /// whether or not anyone signalled.
    var nextFullRequestPoll: [LeaseName: MonotonicInstant] = [:]
    /// When this host last set bits to signal a request, by lockspace.
    var signalledAt: [LeaseName: MonotonicInstant] = [:]
    var resources: [String: PaxosResource] = [:]
    public internal(set) var shuttingDown = false
    var background: [Task<Void, Never>] = []

    /// nil with `--watchdog none`.
    let watchdog: WatchdogDevice?
    var petting = true

    public init(config: DaemonConfig, log: Logger, watchdog: WatchdogDevice? = nil) {
        self.config = config
        self.log = log
        self.watchdog = watchdog
        let logger = log
        context = EngineContext(clock: SystemMonotonicClock.shared, log: { event in
            logger.debug("\(event)")
        }, watchdogFire: config.watchdogFire, injectedBugs: config.injectedBugs)
    }

    /// Starts the background loops: request polling and dead-pid reaping.
    public func start() {
        background.append(Task { await self.pollLoop() })
        if watchdog != nil { background.append(Task { await self.petLoop() }) }
    }

    /// How often the watchdog is petted while it may be: well inside W.
    var petInterval: Duration { min(.seconds(1), config.watchdogFire / 4) }

    /// Whether every lockspace with lease holders is still valid: only then
    /// may the watchdog be petted. A lockspace lost with holders still alive
    /// lets the watchdog reset the host within W of the expiry, before any
    /// other host may take those leases (8N + W after the last renewal).
    func mayPet(at now: MonotonicInstant) -> Bool {
        for (name, joined) in lockspaces where holders.values.contains(where: { $0.values.contains { $0.lockspace == name } }) {
            guard let expiry = joined.lockspace.publishedExpiry, now < expiry else { return false }
        }
        return true
    }

    func petLoop() async {
        while !Task.isCancelled {
            let now = context.clock.now()
            if mayPet(at: now) {
                watchdog?.pet()
                if !petting { log.notice("watchdog petting resumed") }
                petting = true
            } else if petting {
                petting = false
                log.critical("a lockspace with lease holders has expired: the watchdog is no longer petted and resets this host within \(config.watchdogFire) unless every holder is gone")
            }
            try? await context.clock.sleep(for: petInterval)
        }
    }

    // MARK: Requests from clients

    /// Answers one request. Never throws: failures become error replies.
    public func handle(_ request: Message, from peer: Peer) async -> Message {
        guard let command = Command(rawValue: request.command) else {
            return .reply(to: request, .unknownCommand, ["protocol-error", "Unknown command \(request.command).", "Use a client of the same Tenure release."])
        }
        if restricted.contains(peer.connection) {
            return .reply(to: request, error: TenureError(.permissionDenied, "This connection restricted itself: it may make no further requests.",
                                                          remedy: "A privileged client (root or the socket group) acts for this process instead."))
        }
        if shuttingDown && command != .status && command != .release && command != .inquire {
            return .reply(to: request, error: TenureError(.shuttingDown, "The daemon is shutting down.", remedy: "Retry once it has restarted."))
        }
        do {
            switch command {
            case .register:
                return .reply(to: request, .ok, [])
            case .addLockspace:
                let text = try field(request, 0, "lockspace"), hostName = request.text(1) ?? ""
                let io = Int(request.text(2) ?? "0") ?? 0
                if request.text(3) == "async" {
                    let spec = try LockspaceSpec(parsing: text)
                    guard lockspaces[spec.name] == nil, !joining.contains(spec.name) else {
                        throw TenureError(.alreadyExists, "Lockspace \(spec.name) is joined or being joined already.")
                    }
                    joining.insert(spec.name)
                    background.append(Task {
                        do { _ = try await self.addLockspace(text, hostName: hostName, ioTimeout: io) } catch {
                            self.log.error("joining \(text) failed: \(error)")
                        }
                        self.finishedJoining(spec.name)
                    })
                    return .reply(to: request, .ok, ["joining"])
                }
                return .reply(to: request, .ok, [try await addLockspace(text, hostName: hostName, ioTimeout: io)])
            case .remLockspace:
                try await removeLockspace(try field(request, 0, "lockspace name"))
                return .reply(to: request, .ok, [])
            case .acquire:
                let pid = try targetPid(request, peer)
                let flags = UInt32(request.text(1) ?? "0") ?? 0
                let names = (2..<request.fields.count).compactMap { request.text($0) }
                return .reply(to: request, .ok, try await acquire(names, for: pid, shared: flags & Wire.acquireShared != 0))
            case .release:
                let pid = try targetPid(request, peer)
                try await release((1..<request.fields.count).compactMap { request.text($0) }, of: pid)
                return .reply(to: request, .ok, [])
            case .inquire:
                return .reply(to: request, .ok, [inquire(try targetPid(request, peer))])
            case .status:
                return .reply(to: request, .ok, [await status()])
            case .request:
                try await requestLease(try field(request, 0, "resource"), force: request.text(1) == "1")
                return .reply(to: request, .ok, [])
            case .killpath:
                let program = try field(request, 0, "killpath program")
                guard program.hasPrefix("/"), FileManager.default.isExecutableFile(atPath: program) else {
                    throw TenureError(.invalidArgument, "The killpath \(program) is not an executable file given by its absolute path.")
                }
                controls[peer.pid, default: ProcessControl()].killpath = [program] + (1..<request.fields.count).compactMap { request.text($0) }
                log.info("process \(peer.pid) set its killpath: \(controls[peer.pid]!.killpath!.joined(separator: " "))")
                return .reply(to: request, .ok, [])
            case .restrict:
                guard let flags = UInt32(request.text(0) ?? "") else { throw TenureError(.invalidArgument, "Restrict takes a number of flags.") }
                if flags & Wire.restrictSigkill != 0 { controls[peer.pid, default: ProcessControl()].sigkillOnly = true }
                if flags & Wire.restrictSigterm != 0 { controls[peer.pid, default: ProcessControl()].sigtermOnly = true }
                if flags & Wire.restrictAll != 0 { restricted.insert(peer.connection) }
                return .reply(to: request, .ok, [])
            case .convert:
                let pid = try targetPid(request, peer)
                let name = try field(request, 1, "resource name")
                return .reply(to: request, .ok, [try await convert(name, of: pid, shared: request.text(2) == "shared")])
            case .hostStatus:
                return .reply(to: request, .ok, [try await hostStatus(try field(request, 0, "lockspace name"))])
            case .shutdown:
                guard peer.privileged else { throw TenureError(.permissionDenied, "Only root or the socket group may stop the daemon.") }
                try await shutdown(force: request.text(0) == "1")
                return .reply(to: request, .ok, [])
            }
        } catch let error as TenureError {
            return .reply(to: request, error: error)
        } catch {
            return .reply(to: request, error: TenureError(.cancelled, "The request was cancelled: \(error)."))
        }
    }

    func field(_ m: Message, _ i: Int, _ what: String) throws -> String {
        guard let text = m.text(i), !text.isEmpty else {
            throw TenureError(.invalidArgument, "The request lacks its \(what).", remedy: "Use a client of the same Tenure release.")
        }
        return text
    }

    /// The pid a request acts for: the caller (0 or its own pid), or, for a
    /// privileged caller, another live process.
    func targetPid(_ m: Message, _ peer: Peer) throws -> Int32 {
        guard let text = m.text(0), let pid = Int32(text), pid >= 0 else {
            throw TenureError(.invalidArgument, "The request's pid \"\(m.text(0) ?? "")\" is not a process id.")
        }
        if pid == 0 || pid == peer.pid { return peer.pid }
        guard peer.privileged else {
            throw TenureError(.permissionDenied, "Process \(peer.pid) may not act for process \(pid).",
                              remedy: "Only root or members of the daemon's socket group act for other processes.")
        }
        guard Glibc.kill(pid, 0) == 0 || errno == EPERM else {
            throw TenureError(.invalidArgument, "Process \(pid) does not exist.")
        }
        return pid
    }

    // MARK: Connections

    public func connected(_ peer: Peer) -> Bool {
        let total = connections.values.reduce(0, +)
        guard total < config.maxConnections else { return false }
        connections[peer.pid, default: 0] += 1
        return true
    }

    /// The connection of `pid` closed: when it was its last, the process is
    /// gone or no longer registered, and its leases are released.
    public func disconnected(_ peer: Peer) async {
        connections[peer.pid, default: 1] -= 1
        if connections[peer.pid] == 0 { connections[peer.pid] = nil }
        restricted.remove(peer.connection)
        if connections[peer.pid] == nil && holders[peer.pid] == nil { controls[peer.pid] = nil }
        guard connections[peer.pid] == nil, holders[peer.pid] != nil else { return }
        log.info("process \(peer.pid) closed its last connection; releasing its leases")
        await releaseAll(of: peer.pid)
    }
}
