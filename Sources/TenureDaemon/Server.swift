import CTenureSys
import Foundation
import Logging
import Synchronization
import TenureClient
import TenureCore
import TenureIO

/// The daemon's Unix socket: one thread accepts, one thread per connection
/// reads its messages and waits for each answer. Malformed, truncated,
/// oversized or unknown messages get an error reply and the connection is
/// closed; the daemon carries on.
public final class DaemonServer: @unchecked Sendable {
    public let daemon: Daemon
    let config: DaemonConfig
    let log: Logger
    let listener: Int32
    let pidFile: Int32
    public var socketPath: String { config.runDir + "/" + Wire.socketName }
    let adminGroup: gid_t?
    /// Requests being answered: the daemon exits only once their replies are written.
    private let inFlight = Mutex(0)
    /// Numbers connections; only the accept thread touches it.
    private var nextConnection: UInt64 = 0

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
        pidFile = try Self.lockPidFile(config.runDir + "/tenure.pid")
        do {
            listener = try Self.bind(config.runDir + "/" + Wire.socketName, group: adminGroup)
        } catch {
            Glibc.close(pidFile)
            throw error
        }
        do {
            let watchdog = try config.watchdogDevice.map { try WatchdogDevice(path: $0, fire: config.watchdogFire) }
            daemon = Daemon(config: config, log: log, watchdog: watchdog)
        } catch {
            Glibc.close(listener)
            Glibc.close(pidFile)
            throw error
        }
    }

    /// Creates the run dir (0755) if it is missing, and refuses one that
    /// another user could write: whoever can write it can replace the socket
    /// or the pid file and stand in for the daemon.
    public static func prepareRunDir(_ dir: String) throws {
        if access(dir, F_OK) != 0 {
            try? FileManager.default.createDirectory(atPath: (dir as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            guard mkdir(dir, 0o755) == 0 || errno == EEXIST else {
                let e = errno
                throw TenureError(.ioFailed, "Cannot create the run dir \(dir): \(String(cString: strerror(e))).",
                                  remedy: "Free space and inodes on its filesystem (df -h, df -i), or give another --run-dir.", errno: e)
            }
        }
        var info = stat()
        guard lstat(dir, &info) == 0 else {
            throw TenureError(.ioFailed, "Cannot inspect the run dir \(dir): \(String(cString: strerror(errno))).", errno: errno)
        }
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

    static func lockPidFile(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        guard fd >= 0 else {
            throw TenureError(.permissionDenied, "Cannot open the pid file \(path): \(String(cString: strerror(errno))).",
                              remedy: "Run as root, or give a writable --run-dir.", errno: errno)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let other = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            Glibc.close(fd)
            throw TenureError(.alreadyExists, "Another Tenure daemon (pid \(other)) runs on this run dir.",
                              remedy: "Stop it first, or give this one another --run-dir.")
        }
        let text = "\(getpid())\n"
        let written = text.withCString { ftruncate(fd, 0) == 0 ? pwrite(fd, $0, strlen($0), 0) : -1 }
        guard written == text.utf8.count, fsync(fd) == 0 else {
            let e = errno
            Glibc.close(fd)
            unlink(path)
            throw TenureError(.ioFailed, "Cannot write the pid file \(path): \(String(cString: strerror(e))).",
                              remedy: "Free space on the run dir's filesystem (df -h \(path)), or give another --run-dir.", errno: e)
        }
        return fd
    }

    static func bind(_ path: String, group: gid_t?) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TenureError(.ioFailed, "socket(2) failed: \(String(cString: strerror(errno))).", errno: errno) }
        var address = sockaddr_un()
        guard MessageSocket.fill(&address, path: path) else {
            Glibc.close(fd)
            throw TenureError(.invalidArgument, "The socket path \(path) is too long.", remedy: "Use a shorter --run-dir.")
        }
        // We hold the pid file, so a socket left here belongs to a dead daemon.
        unlink(path)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(fd, 128) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw TenureError(.ioFailed, "Cannot listen on \(path): \(String(cString: strerror(e))).", errno: e)
        }
        chmod(path, 0o660)
        if let group { chown(path, uid_t.max, group) }
        return fd
    }

    /// Accepts connections until the daemon shuts down.
    public func serve() {
        Thread.current.name = "tenure-accept"
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if errno == EBADF || errno == EINVAL { return }
                log.error("accept failed: \(String(cString: strerror(errno)))")
                usleep(100_000)
                continue
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            var pid: Int32 = 0, uid: UInt32 = 0, gid: UInt32 = 0
            guard tenure_peer_credentials(fd, &pid, &uid, &gid) == 0 else {
                Glibc.close(fd)
                continue
            }
            nextConnection += 1
            let peer = Peer(connection: nextConnection, pid: pid, uid: uid, gid: gid, isAdmin: uid == 0 || uid == geteuid(),
                            inSocketGroup: Self.inGroup(pid: pid, gid: gid, group: adminGroup))
            // Taken now: it names the process that connected, even if it exits and its pid is reused.
            let pidfd = tenure_peer_pidfd(fd)
            let thread = Thread { [self] in self.converse(fd, peer, pidfd: pidfd) }
            thread.name = "tenure-client-\(pid)"
            thread.start()
        }
    }

    static func inGroup(pid: Int32, gid: UInt32, group: gid_t?) -> Bool {
        guard let group else { return false }
        if gid == group { return true }
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return false }
        return line.split(separator: " ").dropFirst().contains { gid_t($0.trimmingCharacters(in: .whitespaces)) == group }
    }

    /// Runs `body` on the daemon's actor and waits for it, from a plain thread.
    func wait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            box.value = await body()
            done.signal()
        }
        done.wait()
        return box.value!
    }

    /// One connection: its registration lasts as long as it is open. One
    /// that never registers and holds nothing is closed after
    /// ``Timeouts/idleConnection`` without a request.
    func converse(_ fd: Int32, _ peer: Peer, pidfd: Int32) {
        defer { Glibc.close(fd) }
        let daemon = self.daemon
        guard wait({ await daemon.connected(peer, pidfd: pidfd) }) else {
            log.warning("refused a connection of process \(peer.pid) (user \(peer.uid)): too many clients")
            let refusal = Message.reply(to: Message(command: 0, seq: 0, fields: []),
                                        error: TenureError(.limitReached, "Too many clients are connected to the Tenure daemon (its limit is \(config.maxConnections), \(Limits.reservedAdminConnections) of them kept for root).",
                                                           remedy: "Retry later, close idle clients, or raise --max-connections."))
            try? MessageSocket.write(refusal, to: fd)
            return
        }
        defer { wait { await daemon.disconnected(peer) } }
        var mayIdleOut = true
        while true {
            if mayIdleOut && !Self.readable(fd, within: Timeouts.idleConnection) {
                if wait({ await daemon.mayCloseIdle(peer) }) {
                    log.notice("closing the idle connection of process \(peer.pid): no request for \(Timeouts.idleConnection)")
                    return
                }
                mayIdleOut = false
            }
            let request: Message
            do {
                guard let read = try MessageSocket.read(from: fd) else { return }
                request = read
            } catch {
                log.notice("closing the connection of process \(peer.pid): \(error)")
                let reply = Message.reply(to: Message(command: 0, seq: 0, fields: []), error: error)
                try? MessageSocket.write(reply, to: fd)
                return
            }
            inFlight.withLock { $0 += 1 }
            if request.command == Command.register.rawValue || request.command == Command.acquire.rawValue { mayIdleOut = false }
            var reply = wait { await daemon.handle(request, from: peer) }
            let encoded: [UInt8]
            if let bytes = try? reply.encoded() {
                encoded = bytes
            } else {
                // Too large for the protocol: say so instead of closing silently.
                log.error("the reply to command \(request.command) of process \(peer.pid) exceeds the protocol's limits")
                reply = Message.reply(to: request, error: TenureError(.limitReached, "The reply exceeds the protocol's limit of \(Wire.maxPayloadBytes) bytes.",
                                                                       remedy: "Ask for less at once (e.g. inquire one process)."))
                encoded = (try? reply.encoded()) ?? []
            }
            let written: Bool
            do { try MessageSocket.write(encoded: encoded, to: fd); written = !encoded.isEmpty } catch { written = false }
            inFlight.withLock { $0 -= 1 }
            guard written else { return }
            if reply.text(0) == String(ResultCode.unknownCommand.rawValue) { return }
        }
    }

    /// Whether `fd` has something to read (or was closed) within `timeout`.
    static func readable(_ fd: Int32, within timeout: Duration) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while true {
            let rc = poll(&p, 1, ms)
            if rc < 0 && errno == EINTR { continue }
            return rc != 0
        }
    }

    /// Stops accepting (the accept thread returns) and removes the socket,
    /// after the replies being written (the shutdown's own) are out.
    public func close() {
        for _ in 0..<100 where inFlight.withLock({ $0 }) > 0 { usleep(20_000) }
        shutdown(listener, Int32(SHUT_RDWR))
        Glibc.close(listener)
        unlink(socketPath)
        unlink(config.runDir + "/tenure.pid")
        Glibc.close(pidFile)
    }
}

final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
