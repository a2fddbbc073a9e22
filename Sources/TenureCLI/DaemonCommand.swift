import ArgumentParser
import Glibc
import Dispatch
import Logging
import TenureClient
import TenureCore
import TenureDaemon
import TenureIO
import TenureLaunch
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
    var config: String = DaemonSettings.defaultConfigPath

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

    @Option(name: .customLong("socket-group"), help: "Group that owns both sockets; its members administer the daemon (join and leave lockspaces, request leases, stop it) and act for registered processes of their own user (docs/operations.md, \"Privileges\").")
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
            // Checked here, before detaching or handing over, so a bad
            // setting is reported to whoever started the daemon.
            let flags = givenFlags
            let (settings, level) = try DaemonSettings.load(flags: flags, configPath: config)
            let daemon = DaemonLauncher.executable(beside: selfExecutable())
            if !foreground { try detach(settings, flags: flags, daemon: daemon); return }
            if let daemon { try DaemonLauncher.handOver(to: daemon, DaemonArguments.render(flags: flags, configPath: config)) }
            // No tenured beside this binary (a copy under another name):
            // the daemon runs in this process, with the CLI's libraries.
            try await DaemonLauncher.serve(settings, logging: level)
        }
    }

    /// The settings given as flags, by config-file key.
    var givenFlags: [String: String] {
        let given: [(String, String?)] = [
            ("run-dir", runDir), ("host-name", hostName), ("io-timeout", ioTimeout.map(String.init)), ("watchdog", watchdog),
            ("watchdog-fire", watchdogFire.map(String.init)), ("kill-grace", killGrace.map(String.init)), ("socket-group", socketGroup),
            ("log-level", logLevel), ("max-connections", maxConnections.map(String.init)), ("max-leases", maxLeases.map(String.init)),
            ("log-file", logFile), ("lock-memory", lockMemory), ("realtime", realtime), ("sanlock-run-dir", sanlockRunDir),
            ("metrics-listen", metricsListen),
        ]
        assert(Set(given.map(\.0)) == Set(DaemonSettings.keys), "every setting is a flag")
        return given.reduce(into: [:]) { flags, pair in if let value = pair.1 { flags[pair.0] = value } }
    }

    /// Starts the daemon in the foreground in a new session (`tenured`, or
    /// this binary's `daemon --foreground` without it), logging to a file,
    /// and returns once its socket answers.
    func detach(_ settings: DaemonConfig, flags: [String: String], daemon: String?) throws {
        var flags = flags
        flags["run-dir"] = settings.runDir
        try DaemonServer.prepareRunDir(settings.runDir)
        if let connection = try? TenureConnection(runDir: settings.runDir), (try? connection.status()) != nil {
            throw TenureError(.alreadyExists, "A Tenure daemon\(Self.pidFileText(settings.runDir).map { " (pid \($0))" } ?? "") already runs on \(settings.runDir).",
                              remedy: "Use it, stop it first (tenure client shutdown), or give another --run-dir.")
        }
        // Detached, the daemon logs to syslog unless a file is named; what it
        // prints before its log is set up goes to RUN_DIR/tenure.out.
        let logPath = settings.logFile ?? DaemonLauncher.syslogDestination
        flags["log-file"] = logPath
        let earlyOutput = logPath == DaemonLauncher.syslogDestination ? settings.runDir + "/tenure.out" : logPath
        let whereToLook = logPath == DaemonLauncher.syslogDestination ? "journalctl -t tenure (and \(earlyOutput))" : logPath
        let out = try DaemonLauncher.openLog(earlyOutput)
        defer { close(out) }
        let arguments = DaemonArguments.render(flags: flags, configPath: config)
        let process = try Subprocess(daemon ?? selfExecutable(), daemon == nil ? ["daemon", "--foreground"] + arguments : arguments,
                                     stdin: .null, stdout: .descriptor(out), stderr: .descriptor(out), newSession: true)
        for _ in 0..<100 {
            // Answered by the daemon just started (its pid file names it), not by another.
            if Self.pidFileText(settings.runDir) == String(process.processIdentifier),
               let connection = try? TenureConnection(runDir: settings.runDir), (try? connection.status()) != nil {
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

    /// The pid the run dir's pid file names, as text; nil when there is none.
    static func pidFileText(_ runDir: String) -> String? {
        guard let file = fopen(runDir + "/tenure.pid", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 32)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let pid = String(text.filter(\.isNumber))
        return pid.isEmpty ? nil : pid
    }
}
