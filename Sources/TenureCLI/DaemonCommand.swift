import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import Logging
import TenureClient
import TenureCore
import TenureDaemon
import TenureIO
import TenureSyscall

/// `tenure daemon`: one per host; holds leases for local processes.
struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the Tenure daemon: join lockspaces, hold leases for local processes, fence them.",
        discussion: """
        One daemon per host. Clients reach it through the Unix socket \
        RUN_DIR/tenure.sock (mode 0660); a pid file stops a second daemon on the \
        same run dir. The daemon renews its lockspaces on I/O handles of their \
        own, kills every holder of a lease in a lockspace it can no longer renew \
        (SIGTERM, SIGKILL after the grace), and answers requests for its leases \
        within a second.

        Settings come from the config file (KEY=VALUE lines, keys as the flags \
        without dashes), overridden by flags.

        Examples:
          tenure daemon --foreground --run-dir /var/tmp/tenure-run --host-name node1 --watchdog none
          tenure daemon                        # detached, settings from /etc/tenure/tenure.conf
        """
    )

    @Flag(help: "Stay attached to the terminal (default: detach).")
    var foreground = false

    @Option(name: .customLong("run-dir"), help: ArgumentHelp("Folder of the socket and pid file (default: $TENURE_RUN_DIR, else /run/tenure).", valueName: "DIR"))
    var runDir: String?

    @Option(help: ArgumentHelp("Config file.", valueName: "FILE"))
    var config: String = "/etc/tenure/tenure.conf"

    @Option(name: .customLong("host-name"), help: "Name written into this host's delta leases (default: the machine's host name).")
    var hostName: String?

    @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: ArgumentHelp("io_timeout of lockspaces this host joins, in seconds.", valueName: "SECONDS"))
    var ioTimeout: Int?

    @Option(help: ArgumentHelp("Watchdog device, or none (test setups only: nothing resets a host that cannot kill its holders).", valueName: "PATH|none"))
    var watchdog: String?

    @Option(name: .customLong("watchdog-fire"), parsing: .unconditional, help: ArgumentHelp("Watchdog fire time W in seconds; every host of a cluster must use the same.", valueName: "SECONDS"))
    var watchdogFire: Int?

    @Option(name: .customLong("kill-grace"), parsing: .unconditional, help: ArgumentHelp("Seconds from SIGTERM to SIGKILL when fencing (default from W: 40, 15 if W < 60, 0 if W < 30).", valueName: "SECONDS"))
    var killGrace: Int?

    @Option(name: .customLong("socket-group"), help: "Group that owns the socket and may act for other processes (libvirt's).")
    var socketGroup: String?

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "LEVEL"))
    var logLevel: String?

    @Option(name: .customLong("max-connections"), parsing: .unconditional, help: "The most clients connected at once (default 1024).")
    var maxConnections: Int?

    @Option(name: .customLong("max-leases"), parsing: .unconditional, help: "The most leases held at once, over all processes (default 4096).")
    var maxLeases: Int?

    @Option(name: .customLong("log-file"), help: ArgumentHelp("Where the daemon logs: a file (reopened on SIGHUP), or syslog (journald reads it). Default: stderr in the foreground, syslog when detached.", valueName: "FILE|syslog"))
    var logFile: String?

    @Option(name: .customLong("lock-memory"), help: ArgumentHelp("Lock the daemon's memory (mlockall) and shield it from the OOM killer, so memory pressure neither delays its renewals nor kills it (default on; off for test setups).", valueName: "on|off"))
    var lockMemory: String?

    @Option(help: ArgumentHelp("Run the renewal thread (and its device's I/O reaper) at real-time priority (SCHED_RR \(Starvation.realtimePriority)), so busy processes never delay a renewal; clients stay at ordinary priority (default on; off for test setups).", valueName: "on|off"))
    var realtime: String?

    @Option(name: .customLong("sanlock-run-dir"), help: ArgumentHelp("Also serve sanlock's client protocol on DIR/sanlock.sock, so python3-sanlock, libvirt's sanlock plugin and lvmlockd use this daemon unchanged (their default DIR is /run/sanlock, or $SANLOCK_RUN_DIR). Refused while a sanlock daemon serves DIR. Default: off.", valueName: "DIR"))
    var sanlockRunDir: String?

    @Option(name: .customLong("metrics-listen"), help: ArgumentHelp("Also serve the metrics (Prometheus text, as `tenure client metrics` prints them) at http://HOST:PORT/metrics, e.g. 127.0.0.1:9464. IPv4; default: off.", valueName: "HOST:PORT"))
    var metricsListen: String?

    func run() async throws {
        try await reportingErrors {
            let (settings, level) = try loadSettings()
            if !foreground { try detach(settings); return }
            try await serve(settings, logging: level)
        }
    }

    /// The config file's keys: every flag of the daemon but --config and
    /// --foreground (`tenure.conf(5)` lists them).
    static let settingKeys = ["run-dir", "host-name", "io-timeout", "watchdog", "watchdog-fire", "kill-grace", "socket-group", "log-level",
                              "max-connections", "max-leases", "log-file", "lock-memory", "realtime", "sanlock-run-dir", "metrics-listen"]

    /// Flags over the config file over defaults, all checked before the
    /// daemon detaches.
    func loadSettings() throws -> (DaemonConfig, Logger.Level) {
        let file = try ConfigFile.load(config, required: false, known: Self.settingKeys)
        let levelName = logLevel ?? file["log-level"] ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw TenureError(.invalidArgument, "--log-level \(levelName) is not a level.", remedy: "Use trace, debug, info, notice, warning, error or critical.")
        }
        let dir = runDir ?? file["run-dir"] ?? Wire.runDir(ProcessInfo.processInfo.environment)
        var c = DaemonConfig(runDir: dir, hostName: hostName ?? file["host-name"] ?? ProcessInfo.processInfo.hostName.prefixBytes(48))
        c.injectedBugs = try injectedBugsFromEnvironment()
        if let v = try ioTimeout ?? file.int("io-timeout") { c.ioTimeout = try validIOTimeout(v) }
        let dog = watchdog ?? file["watchdog"] ?? "/dev/watchdog"
        c.watchdogDevice = dog == "none" ? nil : dog
        if let w = try watchdogFire ?? file.int("watchdog-fire") {
            guard (1...600).contains(w) else { throw TenureError(.invalidArgument, "--watchdog-fire \(w) is outside 1...600 seconds.") }
            c.watchdogFire = .seconds(w)
        }
        if let g = try killGrace ?? file.int("kill-grace") {
            guard (0...600).contains(g) else { throw TenureError(.invalidArgument, "--kill-grace \(g) is outside 0...600 seconds.") }
            c.killGrace = .seconds(g)
        }
        c.socketGroup = socketGroup ?? file["socket-group"]
        if let n = try maxConnections ?? file.int("max-connections") {
            guard (1...65536).contains(n) else { throw TenureError(.invalidArgument, "--max-connections \(n) is outside 1...65536.") }
            c.maxConnections = n
        }
        if let n = try maxLeases ?? file.int("max-leases") {
            guard (1...1_000_000).contains(n) else { throw TenureError(.invalidArgument, "--max-leases \(n) is outside 1...1000000.") }
            c.maxLeases = n
        }
        c.lockMemory = try onOff("lock-memory", lockMemory ?? file["lock-memory"], default: true)
        c.realtime = try onOff("realtime", realtime ?? file["realtime"], default: true)
        c.sanlockRunDir = sanlockRunDir ?? file["sanlock-run-dir"]
        c.logFile = logFile ?? file["log-file"]
        c.metricsListen = metricsListen ?? file["metrics-listen"]
        if let address = c.metricsListen { _ = try TCPSocket.address(address) }
        return (c, level)
    }

    /// "on" or "off" for `--NAME`; nil means `default`.
    func onOff(_ name: String, _ value: String?, default fallback: Bool) throws -> Bool {
        switch value {
        case nil: return fallback
        case "on": return true
        case "off": return false
        case let other?:
            throw TenureError(.invalidArgument, "--\(name) \(other) is neither on nor off.", remedy: "Write --\(name) on or --\(name) off.")
        }
    }

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

    func serve(_ settings: DaemonConfig, logging level: Logger.Level) async throws {
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
        Self.guardAgainstStarvation(settings, log: log)
        if settings.watchdogDevice == nil {
            log.warning("running WITHOUT a watchdog (--watchdog none): if this host cannot kill a holder whose lockspace is lost, nothing resets it. Test setups only.")
        } else {
            log.info("watchdog \(settings.watchdogDevice!) armed with fire time \(settings.watchdogFire)")
        }
        log.info("settings: \(settings.effective)")
        let server = try DaemonServer(config: settings, log: log)
        await server.daemon.start()
        log.info("serving on \(server.socketPath) as \(settings.hostName)")
        // systemd's Type=notify: the socket answers from here on.
        do {
            try UnixSocket.notifyServiceManager("READY=1\nMAINPID=\(getpid())\nSTATUS=serving on \(server.socketPath)", socket: ProcessInfo.processInfo.environment["NOTIFY_SOCKET"])
        } catch {
            log.warning("could not tell the service manager the daemon is ready: \(error)")
        }
        let stop = ShutdownSignals(server: server, log: log, logFile: toSyslog ? nil : settings.logFile)
        try server.serve()
        await stop.wait()
        server.close()
        log.info("stopped")
    }

    /// The `tenure` arguments this daemon was started with, when they are
    /// not the process's own (`sanlock daemon`, translated by SanlockCLI):
    /// the detached daemon is started with these. Set once, before parsing.
    nonisolated(unsafe) static var invocation: [String]?

    /// Starts `tenure daemon --foreground …` in a new session, logging to a file,
    /// and returns once its socket answers.
    func detach(_ settings: DaemonConfig) throws {
        var arguments = (Self.invocation ?? Array(CommandLine.arguments.dropFirst())) + ["--foreground"]
        if runDir == nil { arguments += ["--run-dir", settings.runDir] }
        try DaemonServer.prepareRunDir(settings.runDir)
        // Detached, the daemon logs to syslog unless a file is named; what it
        // prints before its log is set up goes to RUN_DIR/tenure.out.
        let logPath = settings.logFile ?? Self.syslogDestination
        if logFile == nil { arguments += ["--log-file", logPath] }
        let earlyOutput = logPath == Self.syslogDestination ? settings.runDir + "/tenure.out" : logPath
        let whereToLook = logPath == Self.syslogDestination ? "journalctl -t tenure (and \(earlyOutput))" : logPath
        let out = try Self.openLog(earlyOutput)
        defer { close(out) }
        let process = try Subprocess(selfExecutable(), arguments, stdin: .null, stdout: .descriptor(out), stderr: .descriptor(out), newSession: true)
        for _ in 0..<100 {
            if let connection = try? TenureConnection(runDir: settings.runDir), (try? connection.status()) != nil {
                print("tenure daemon started (pid \(process.processIdentifier)), socket \(settings.runDir)/\(Wire.socketName), log \(whereToLook)")
                return
            }
            if !process.isRunning {
                throw TenureError(.daemonUnavailable, "The daemon exited at once (status \(process.terminationStatus)).", remedy: "See \(whereToLook).")
            }
            usleep(100_000)
        }
        throw TenureError(.daemonUnavailable, "The daemon did not answer within 10 s.", remedy: "See \(whereToLook).")
    }
}

extension DaemonCommand {
    /// Opens the detached daemon's log for appending and writes its first
    /// line, so a full or read-only filesystem stops the start with the cause
    /// instead of losing every later line in silence.
    /// The `log-file` value that sends the log to syslog.
    static let syslogDestination = "syslog"

    /// Points stdout and stderr at `path` (appending; created 0640).
    static func redirectOutput(to path: String) throws {
        let context = SyscallContext("open", path: path)
        let fd = try Syscall.run(context) { open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o640) }
        defer { close(fd) }
        fflush(nil)
        for target in [STDOUT_FILENO, STDERR_FILENO] {
            _ = try Syscall.run(SyscallContext("dup2", path: path)) { dup2(fd, target) }
        }
    }

    static func openLog(_ path: String) throws -> Int32 {
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
                    try DaemonCommand.redirectOutput(to: path)
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

/// KEY=VALUE lines; # starts a comment.
struct ConfigFile {
    var values: [String: String] = [:]
    var path = ""

    /// Reads `path`; with `known`, a key that is not one of them is refused
    /// at once, naming the nearest (a misspelled key would otherwise do
    /// nothing, silently: `io_timout=3`).
    static func load(_ path: String, required: Bool, known: [String]? = nil) throws -> ConfigFile {
        guard FileManager.default.fileExists(atPath: path) else {
            if required { throw TenureError(.notFound, "The config file \(path) does not exist.") }
            return ConfigFile(path: path)
        }
        // Read with read(2): String(contentsOfFile:) refuses /dev/null and pipes.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TenureError(.permissionDenied, "The config file \(path) cannot be opened for reading.",
                              remedy: "Check its permissions, or name another file with --config.")
        }
        defer { close(fd) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[..<n]
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw TenureError(.invalidArgument, "The config file \(path) could not be read as UTF-8 text.",
                              remedy: "Write it as KEY=VALUE lines of text, or name another file with --config.")
        }
        var file = ConfigFile(path: path)
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.trimmed
            guard !trimmed.isEmpty else { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map(\.trimmed)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw TenureError(.invalidArgument, "\(path):\(n + 1): \"\(trimmed)\" is not KEY=VALUE.", remedy: "Write one setting per line, e.g. io-timeout=10.")
            }
            let key = parts[0].replacing("_", with: "-")
            if let known, !known.contains(key) {
                let nearest = Spelling.nearest(key, in: known).map { "Did you mean \($0)? " } ?? ""
                throw TenureError(.invalidArgument, "\(path):\(n + 1): \(parts[0]) is not a setting.",
                                  remedy: "\(nearest)The settings are: \(known.joined(separator: ", ")).")
            }
            file.values[key] = parts[1]
        }
        return file
    }

    subscript(key: String) -> String? { values[key] }

    func int(_ key: String) throws -> Int? {
        guard let text = values[key] else { return nil }
        guard let v = Int(text) else { throw TenureError(.invalidArgument, "\(path): \(key)=\(text) is not a number.") }
        return v
    }
}
