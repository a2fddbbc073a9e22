import Dispatch
import Glibc
import Logging
import TenureClient
import TenureCore
import TenureDaemon
import TenureIO
import TenureSyscall

/// Starting the daemon: where its binary is, serving with the settings,
/// its log, its signals. No ArgumentParser and no Foundation here: this is
/// what the daemon's own binary, `tenured`, links (docs/architecture.md).
public enum DaemonLauncher {
    /// The daemon's binary is the `tenure` binary's path with this appended
    /// (/usr/sbin/tenure, /usr/sbin/tenured): the same build, and a copy
    /// under another name (a test's faulty build) finds none and serves in
    /// its own process.
    public static let executableSuffix = "d"

    /// The daemon's own binary beside `tenure` (see ``executableSuffix``),
    /// when it is there and executable.
    public static func executable(beside tenure: String) -> String? {
        let path = tenure + executableSuffix
        return access(path, X_OK) == 0 ? path : nil
    }

    /// Replaces this process with `tenured` and `arguments` (same pid, so
    /// systemd's MAINPID and a supervisor's child stay right); returns only
    /// by throwing.
    public static func handOver(to daemon: String, _ arguments: [String]) throws -> Never {
        let argv = ([daemon] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        fflush(nil)
        execv(daemon, argv)
        let e = errno
        throw TenureError(.ioFailed, "Cannot start the daemon's binary \(daemon): \(String(cString: strerror(e))).",
                          remedy: "Reinstall Tenure, or remove \(daemon) to run the daemon in this process.", errno: e)
    }

    /// The `log-file` value that sends the log to syslog.
    public static let syslogDestination = "syslog"

    /// mlockall and real-time scheduling, as configured. A refusal (no
    /// CAP_IPC_LOCK or CAP_SYS_NICE, say) is logged loudly and the daemon
    /// runs on, as sanlock does.
    static func guardAgainstStarvation(_ settings: DaemonConfig, log: Logger) {
        if settings.lockMemory {
            do {
                try Starvation.lockMemory()
                log.info("memory locked (mlockall): renewals never wait on a page fault")
            } catch {
                log.error("could not lock memory: \(error) Under memory pressure a renewal may wait on page faults; run as root, or --lock-memory off to silence this.")
            }
            do {
                try Starvation.shieldFromOOMKiller()
                log.info("shielded from the OOM killer (oom_score_adj -1000)")
            } catch {
                log.error("could not shield the daemon from the OOM killer: \(error) Under memory pressure it may be killed and its holders go unfenced until the watchdog resets the host; run as root.")
            }
        } else {
            log.warning("memory not locked (--lock-memory off): under memory pressure renewals may be delayed. Test setups only.")
        }
        // The renewal thread's real-time priority is reported as the server starts it.
    }

    /// Serves until a shutdown: the log, starvation guards, the server,
    /// readiness to systemd, the signals.
    public static func serve(_ settings: DaemonConfig, logging level: Logger.Level) async throws {
        // A log file, when one is set, takes the output (reopened on SIGHUP);
        // "syslog" sends the log there (journald reads it); without either the
        // output stays where it was started (the journal under systemd).
        let toSyslog = settings.logFile == Self.syslogDestination
        if let path = settings.logFile, !toSyslog { try Self.redirectOutput(to: path) }
        // The log at its level; every line, debug too, into the ring log_dump shows.
        let log = Logger(label: "tenure") { label in
            var primary: any LogHandler = toSyslog ? SyslogLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            primary.logLevel = level
            return MultiplexLogHandler([primary, RingLogHandler(label: label)])
        }
        guardAgainstStarvation(settings, log: log)
        if settings.watchdogDevice == nil {
            log.warning("running WITHOUT a watchdog (--watchdog none): if this host cannot kill a holder whose lockspace is lost, nothing resets it. Test setups only.")
        } else {
            log.info("watchdog \(settings.watchdogDevice!) armed with fire time \(settings.watchdogFire)")
        }
        log.info("settings: \(settings.effective)")
        // Built on a thread that may block: it may wait for an earlier
        // incarnation's lease holders to exit (EarlierIncarnation).
        let server = try await Task(executorPreference: BlockingExecutor.shared) {
            try DaemonServer(config: settings, log: log)
        }.value
        await server.daemon.start()
        log.info("serving on \(server.socketPath) as \(settings.hostName)")
        // systemd's Type=notify: the socket answers from here on.
        do {
            try UnixSocket.notifyServiceManager("READY=1\nMAINPID=\(getpid())\nSTATUS=serving on \(server.socketPath)", socket: ProcessEnvironment.value("NOTIFY_SOCKET"))
        } catch {
            log.warning("could not tell the service manager the daemon is ready: \(error)")
        }
        let stop = ShutdownSignals(server: server, log: log, logFile: toSyslog ? nil : settings.logFile)
        try server.serve()
        await stop.wait()
        await server.close()
        log.info("stopped")
    }

    /// Points stdout and stderr at `path` (appending; created 0640).
    public static func redirectOutput(to path: String) throws {
        let context = SyscallContext("open", path: path)
        let fd = try Syscall.run(context) { open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640) }
        defer { close(fd) }
        fflush(nil)
        for target in [STDOUT_FILENO, STDERR_FILENO] {
            _ = try Syscall.run(SyscallContext("dup2", path: path)) { dup2(fd, target) }
        }
    }

    /// Opens the detached daemon's log for appending and writes its first
    /// line, so a full or read-only filesystem stops the start with the cause
    /// instead of losing every later line in silence.
    public static func openLog(_ path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640)
        let line = "tenure daemon starting (pid of the launcher \(getpid()))\n"
        let written = fd < 0 ? -1 : line.withCString { write(fd, $0, strlen($0)) }
        guard written == line.utf8.count else {
            let e = errno
            if fd >= 0 { close(fd) }
            throw TenureError(.ioFailed, "Cannot write the log file \(path): \(String(cString: strerror(e))).",
                              remedy: "Free space and inodes on its filesystem (df -h, df -i), or give another --log-file.", errno: e)
        }
        return fd
    }
}

/// SIGTERM / SIGINT: a graceful shutdown, refused while leases are held
/// (logged; send SIGQUIT or `tenure client shutdown --force` to force it).
final class ShutdownSignals: @unchecked Sendable {
    let server: DaemonServer
    let log: Logger
    private var sources: [DispatchSourceSignal] = []
    private let stream: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    init(server: DaemonServer, log: Logger, logFile: String?) {
        self.server = server
        self.log = log
        (stream, continuation) = AsyncStream.makeStream()
        if let path = logFile {
            // SIGHUP: reopen the log file (after logrotate moved it away).
            Glibc.signal(SIGHUP, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            source.setEventHandler {
                do {
                    try DaemonLauncher.redirectOutput(to: path)
                    log.info("reopened the log file \(path)")
                } catch {
                    log.error("could not reopen the log file \(path): \(error)")
                }
            }
            source.resume()
            sources.append(source)
        }
        for (signal, force) in [(SIGTERM, false), (SIGINT, false), (SIGQUIT, true)] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { [self] in
                Task {
                    do {
                        try await server.daemon.shutdown(force: force)
                        continuation.yield()
                    } catch {
                        log.warning("shutdown refused: \(error)")
                    }
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// Returns once a shutdown went through (by signal or by a client).
    func wait() async {
        let daemon = server.daemon
        let poll = Task {
            while !Task.isCancelled {
                if await daemon.shuttingDown { continuation.yield(); return }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
        for await _ in stream { break }
        poll.cancel()
    }
}

