import CTenureSys
import Glibc
import Dispatch
import Logging
import Synchronization
import TenureClient
import TenureCore
import TenureHost
import TenureIO
import TenureSyscall

/// The daemon's Unix sockets, served on its event loop (``EventLoop``):
/// the loop accepts, and each connection is a task on the loop that reads
/// its messages and answers each in turn. Malformed, truncated, oversized
/// or unknown messages get an error reply and the connection is closed;
/// the daemon carries on.
public final class DaemonServer: @unchecked Sendable {
    public let daemon: Daemon
    let config: DaemonConfig
    let log: Logger
    let listener: FileDescriptor
    let pidFile: FileDescriptor
    public var socketPath: String { config.runDir + "/" + Wire.socketName }
    let adminGroup: gid_t?
    /// Requests being answered: the daemon exits only once their replies are written.
    let inFlight = Mutex(0)
    /// The listening sockets the loop accepts on.
    let acceptors = Mutex<[Acceptor]>([])
    /// Numbers connections of both sockets.
    static let connectionNumbers = Atomic<UInt64>(0)
    /// sanlock's socket, when served (``DaemonConfig/sanlockRunDir``).
    let sanlock: SanlockServer?
    /// The metrics endpoint, when served (``DaemonConfig/metricsListen``).
    let metrics: MetricsListener?

    /// Creates the run dir, takes the pid file (a second daemon on the same
    /// run dir is refused) and binds the socket (mode 0660).
    public init(config: DaemonConfig, log: Logger) throws {
        self.config = config
        self.log = log
        try Self.prepareRunDir(config.runDir)
        adminGroup = try config.socketGroup.map { name in
            guard let group = getgrnam(name) else {
                throw TenureError(.invalidArgument, "The socket group \(name) does not exist.", remedy: "Create it, or leave --socket-group out.")
            }
            return group.pointee.gr_gid
        }
        let pidPath = config.runDir + "/tenure.pid"
        pidFile = try Self.lockPidFile(pidPath)
        let holders: HolderRecord
        do {
            // Only the daemon that holds the pid file, and before the watchdog
            // is opened (which pets it): an earlier incarnation's holders go first.
            try EarlierIncarnation.fenceHolders(runDir: config.runDir, settings: HostCoreSettings(
                watchdogFire: config.watchdogFire, killGrace: config.effectiveKillGrace, maxLeases: config.maxLeases,
                injectedBugs: config.injectedBugs), log: log)
            holders = try HolderRecord(runDir: config.runDir, capacity: config.maxLeases)
        } catch {
            try? Syscall.close(pidFile, path: pidPath)
            throw error
        }
        // A start that fails leaves nothing behind: no socket, no pid file,
        // no record (nothing is held yet), and no armed watchdog.
        let socketPath = config.runDir + "/" + Wire.socketName
        let lockedPidFile = pidFile
        let abandon = {
            holders.remove()
            try? Syscall.close(lockedPidFile, path: pidPath)
            try? Syscall.removeIfPresent(pidPath)
        }
        do {
            listener = try Self.bind(socketPath, group: adminGroup)
        } catch {
            abandon()
            throw error
        }
        var sanlockServer: SanlockServer?
        do {
            let group = adminGroup
            sanlockServer = try config.sanlockRunDir.map { try SanlockServer(runDir: $0, group: group, log: log) }
            sanlock = sanlockServer
            metrics = try config.metricsListen.map { try MetricsListener(address: $0, log: log) }
            let renewalThread = try RenewalThread(realtimePriority: config.realtime ? Starvation.realtimePriority : nil)
            Self.report(renewalThread, log: log)
            let loop = try EventLoop()
            // The watchdog last: opening it arms it, and a start that failed
            // after that would leave it to reset a host that holds nothing.
            let watchdog = try config.watchdogDevice.map { try WatchdogDevice(path: $0, fire: config.watchdogFire) }
            daemon = Daemon(config: config, log: log, renewalThread: renewalThread, loop: loop, watchdog: watchdog, holders: holders)
        } catch {
            sanlockServer?.close()
            UnixSocket.shutdown(listener, path: socketPath)
            try? Syscall.close(listener, path: socketPath)
            try? Syscall.removeIfPresent(socketPath)
            abandon()
            throw error
        }
    }

    /// Logs whether the renewal path got its real-time priority.
    static func report(_ renewalThread: RenewalThread, log: Logger) {
        switch renewalThread.realtimeOutcome {
        case .success?:
            log.info("renewals run on a thread of their own at real-time priority (SCHED_RR \(Starvation.realtimePriority)): busy processes cannot delay them")
        case .failure(let error)?:
            log.error("could not give the renewal thread real-time priority: \(error) Busy processes may delay renewals; run as root (CAP_SYS_NICE), or --realtime off to silence this.")
        case nil:
            log.warning("renewals run at ordinary priority (--realtime off): busy processes may delay them. Test setups only.")
        }
    }

    /// Creates the run dir (0755) if it is missing, and refuses one that
    /// another user could write: whoever can write it can replace the socket
    /// or the pid file and stand in for the daemon.
    public static func prepareRunDir(_ dir: String) throws {
        if access(dir, F_OK) != 0 {
            let parent = dir.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            if !parent.isEmpty { Self.makeParents(parent) }
            if let failed = Self.makeDirectory(dir) {
                throw TenureError(.ioFailed, "Cannot create the run dir \(dir): \(failed.message)",
                                  remedy: "Free space and inodes on its filesystem (df -h, df -i), or give another --run-dir.", errno: failed.errno)
            }
        }
        var info = stat()
        try Syscall.run(SyscallContext("lstat", path: dir)) { lstat(dir, &info) }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw TenureError(.invalidArgument, "The run dir \(dir) is not a folder (a link or a file stands there).",
                              remedy: "Remove it, or give another --run-dir.")
        }
        guard info.st_uid == 0 || info.st_uid == geteuid() else {
            throw TenureError(.permissionDenied, "The run dir \(dir) belongs to user \(info.st_uid), neither root nor this daemon's user: that user could replace the socket.",
                              remedy: "chown it to root (or this daemon's user), or give another --run-dir.")
        }
        guard info.st_mode & (S_IWGRP | S_IWOTH) == 0 else {
            throw TenureError(.permissionDenied, "The run dir \(dir) is writable by its group or by every user (mode \(String(info.st_mode & 0o7777, radix: 8))): they could replace the socket or the pid file.",
                              remedy: "chmod go-w \(dir), or give another --run-dir.")
        }
    }

    /// mkdir(dir, 0755); nil when made, or when another made it first.
    /// Creates `path` and its missing parents (0755), as `mkdir -p`; a
    /// failure shows when the run dir itself cannot be made.
    static func makeParents(_ path: String) {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            _ = makeDirectory(prefix)
        }
    }

    static func makeDirectory(_ dir: String) -> TenureError? {
        do {
            try Syscall.run(SyscallContext("mkdir", path: dir)) { mkdir(dir, 0o755) }
            return nil
        } catch {
            return error.errno == EEXIST ? nil : error
        }
    }

    static func lockPidFile(_ path: String) throws -> FileDescriptor {
        let fd: FileDescriptor
        do {
            fd = FileDescriptor(rawValue: try Syscall.run(SyscallContext("open", path: path)) { open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644) })
        } catch {
            throw TenureError(.permissionDenied, "Cannot open the pid file \(path): \(error.message)",
                              remedy: "Run as root, or give a writable --run-dir.", errno: error.errno)
        }
        do {
            try Syscall.run(SyscallContext("flock", path: path)) { flock(fd.rawValue, LOCK_EX | LOCK_NB) }
        } catch {
            let other = ProcFiles.text(path)?.trimmed ?? "?"
            try? Syscall.close(fd, path: path)
            guard error.errno == EWOULDBLOCK else { throw error }
            throw TenureError(.alreadyExists, "Another Tenure daemon (pid \(other)) runs on this run dir.",
                              remedy: "Stop it first, or give this one another --run-dir.")
        }
        let text = Array("\(getpid())\n".utf8)
        do throws(TenureError) {
            try Syscall.run(SyscallContext("ftruncate", path: path)) { ftruncate(fd.rawValue, 0) }
            let written = try Syscall.run(SyscallContext("pwrite", path: path, offset: 0, length: text.count)) {
                text.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress, $0.count, 0) }
            }
            guard written == text.count else { throw TenureError(.shortIO, "pwrite of \(text.count) bytes on \(path) wrote \(written).") }
            try Syscall.run(SyscallContext("fsync", path: path)) { fsync(fd.rawValue) }
        } catch {
            try? Syscall.close(fd, path: path)
            try? Syscall.removeIfPresent(path)
            throw TenureError(.ioFailed, "Cannot write the pid file \(path): \(error.message)",
                              remedy: "Free space on the run dir's filesystem (df -h \(path)), or give another --run-dir.", errno: error.errno)
        }
        return fd
    }

    /// Listens on `path` (mode 0660, group `group` when given). We hold the
    /// pid file, so a socket left there belongs to a dead daemon: replaced.
    static func bind(_ path: String, group: gid_t?) throws -> FileDescriptor {
        let fd = try UnixSocket.listen(at: path, backlog: Limits.listenBacklog)
        do {
            try Syscall.run(SyscallContext("chmod", path: path)) { chmod(path, 0o660) }
            if let group { try Syscall.run(SyscallContext("chown", path: path)) { chown(path, uid_t.max, group) } }
        } catch {
            try? Syscall.close(fd, path: path)
            throw error
        }
        return fd
    }

    /// Accepts connections on Tenure's socket (and on sanlock's when it is
    /// served) on the daemon's event loop, where each connection then runs
    /// as a task; the metrics endpoint keeps a thread of its own. Returns
    /// at once.
    public func serve() throws {
        let ownSocket = try Acceptor(listener: listener, path: socketPath, server: self) { socket, peer, pidfd in
            await self.converse(socket, peer, pidfd: pidfd, codec: TenureCodec(daemon: self.daemon, log: self.log))
        }
        acceptors.withLock { $0.append(ownSocket) }
        if let sanlock {
            let sanlockSocket = try Acceptor(listener: sanlock.listener, path: sanlock.socketPath, server: self) { socket, peer, pidfd in
                await self.converse(socket, peer, pidfd: pidfd, codec: SanlockCodec(daemon: self.daemon))
            }
            acceptors.withLock { $0.append(sanlockSocket) }
        }
        if let metrics {
            try DetachedThread.start(name: MetricsListener.threadName, for: metrics.address) { [self] in metrics.serve(self) }
        }
    }

    /// Who is at the other end of a new connection, from the kernel; nil
    /// (the connection closed) when its credentials cannot be read.
    func identify(_ fd: FileDescriptor, path socketPath: String) -> (Peer, pidfd: Int32)? {
        var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
        do {
            try Syscall.run(SyscallContext("getsockopt(SO_PEERCRED)", path: socketPath)) { tenure_peer_credentials(fd.rawValue, &pid, &uid, &gid) }
        } catch {
            log.error("a connection's credentials could not be read; closing it: \(error)")
            try? Syscall.close(fd, path: socketPath)
            return nil
        }
        // An administrator (``Privilege``): root, the daemon's user, or the socket group — on either socket.
        let inGroup = Self.inGroup(pid: pid, gid: gid, group: adminGroup)
        let peer = Peer(connection: Self.connectionNumbers.add(1, ordering: .relaxed).newValue, pid: pid, uid: uid, gid: gid,
                        isAdmin: Peer.isAdministrator(uid: uid, inSocketGroup: inGroup), inSocketGroup: inGroup)
        // Taken now: it names the process that connected, even if it exits and its pid is reused.
        return (peer, Self.peerPidfd(fd.rawValue, path: socketPath, log: log))
    }

    /// The connecting process's pidfd (SO_PEERPIDFD, Linux 6.5+), or -1
    /// where the kernel lacks it (ENOPROTOOPT): the daemon then opens one
    /// by pid (``Daemon/connected(_:pidfd:)``). Any other failure is logged.
    static func peerPidfd(_ fd: Int32, path: String, log: Logger) -> Int32 {
        do {
            return try Syscall.run(SyscallContext("getsockopt(SO_PEERPIDFD)", path: path)) { tenure_peer_pidfd(fd) }
        } catch {
            if error.errno != ENOPROTOOPT { log.warning("a connection's pidfd could not be taken; its process is named by pid: \(error)") }
            return -1
        }
    }

    static func inGroup(pid: Int32, gid: UInt32, group: gid_t?) -> Bool {
        guard let group else { return false }
        if gid == group { return true }
        guard let status = ProcFiles.text("/proc/\(pid)/status"),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return false }
        // "Groups:\t10 20 \n": the first group follows a tab, the rest spaces.
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().contains { gid_t($0) == group }
    }

    /// Runs `body` on the daemon's actor and waits for it, from a plain
    /// thread (the metrics endpoint's); never from the loop, which it would deadlock.
    func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        ThreadRole.checkMayBlock("waiting for the daemon's actor")
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            box.value = await body()
            done.signal()
        }
        done.wait()
        return box.value!
    }

    /// One message of Tenure's protocol, whole by `deadline`; nil when the
    /// peer closed cleanly between messages.
    static func readMessage(from socket: LoopSocket, deadline: MonotonicInstant) async throws(TenureError) -> Message? {
        guard let headerBytes = try await socket.receiveExactly(Wire.headerBytes, eofAllowed: true, deadline: deadline) else { return nil }
        let header = try Message.decodeHeader(headerBytes)
        let payload = header.length == 0 ? [] : try await socket.receiveExactly(header.length, deadline: deadline)!
        return Message(command: header.command, seq: header.seq, fields: try Message.decodeFields(payload))
    }

    /// Stops accepting and removes the socket, after the replies being
    /// written (the shutdown's own) are out.
    public func close() async {
        let clock = SystemMonotonicClock.shared
        let deadline = clock.now() + Timeouts.shutdownReplyDrain
        while inFlight.withLock({ $0 }) > 0, clock.now() < deadline {
            try? await clock.sleep(for: Timeouts.shutdownReplyPoll)
        }
        for acceptor in acceptors.withLock({ $0 }) { acceptor.stop() }
        UnixSocket.shutdown(listener, path: socketPath)
        try? Syscall.close(listener, path: socketPath)
        try? Syscall.removeIfPresent(socketPath)
        try? Syscall.removeIfPresent(config.runDir + "/tenure.pid")
        await daemon.closeHolderRecord()
        sanlock?.close()
        metrics?.close()
        try? Syscall.close(pidFile, path: config.runDir + "/tenure.pid")
    }
}

final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

/// A listening socket the daemon's loop accepts on: each connection it
/// takes becomes a ``LoopSocket`` and a task on the loop running `converse`.
final class Acceptor: @unchecked Sendable {
    typealias Converse = @Sendable (LoopSocket, Peer, Int32) async -> Void

    let listener: FileDescriptor
    let path: String
    unowned let server: DaemonServer
    let converse: Converse
    let loop: EventLoop
    /// Guarded by the loop: only its thread and ``stop()`` touch it.
    private let watch = Mutex<(id: EventLoop.WatchID?, stopped: Bool)>((nil, false))

    init(listener: FileDescriptor, path: String, server: DaemonServer, converse: @escaping Converse) throws {
        self.listener = listener
        self.path = path
        self.server = server
        self.converse = converse
        loop = server.daemon.loop
        try UnixSocket.setNonBlocking(listener, path: path)
        try startWatching()
    }

    private func startWatching() throws(TenureError) {
        let id = try loop.watch(listener, events: EventLoop.readable, path: path) { [self] _ in acceptWaiting() }
        let stopped = watch.withLock { state -> Bool in
            state.id = id
            return state.stopped
        }
        if stopped { loop.unwatch(id) }
    }

    /// No more connections (before the listener is closed).
    func stop() {
        let id = watch.withLock { state -> EventLoop.WatchID? in
            state.stopped = true
            defer { state.id = nil }
            return state.id
        }
        if let id { loop.unwatch(id) }
    }

    /// Takes the connections waiting, at most ``Limits/acceptsPerWake``
    /// (the listener is level-triggered: the rest wake the loop again).
    private func acceptWaiting() {
        for _ in 0 ..< Limits.acceptsPerWake {
            let fd: FileDescriptor
            do {
                switch try UnixSocket.accept(listener, path: path) {
                case .connection(let accepted): fd = accepted
                case .peerGone: continue
                case .listenerClosed, .noneWaiting: return
                }
            } catch {
                // Out of descriptors or memory: say so, and stop listening
                // for a while rather than spin on a listener that stays ready.
                server.log.error("accepting a connection failed: \(error)")
                pause()
                return
            }
            guard let (peer, pidfd) = server.identify(fd, path: path) else { continue }
            let socket: LoopSocket
            do {
                socket = try LoopSocket(fd, path: path, loop: loop)
            } catch {
                server.log.error("a connection of process \(peer.pid) could not be watched; closing it: \(error)")
                try? Syscall.close(fd, path: path)
                if pidfd >= 0 { try? Syscall.close(FileDescriptor(rawValue: pidfd), path: path) }
                continue
            }
            let converse = self.converse
            Task(executorPreference: loop) { await converse(socket, peer, pidfd) }
        }
    }

    /// Stops watching for ``Limits/acceptRetry``, then watches again.
    private func pause() {
        let id = watch.withLock { state -> EventLoop.WatchID? in
            defer { state.id = nil }
            return state.id
        }
        if let id { loop.unwatch(id) }
        loop.schedule(at: SystemMonotonicClock.shared.now() + Timeouts.acceptRetry) { [self] in
            guard !watch.withLock({ $0.stopped }) else { return }
            do { try startWatching() } catch { server.log.error("listening on \(path) again failed: \(error)") }
        }
    }
}
