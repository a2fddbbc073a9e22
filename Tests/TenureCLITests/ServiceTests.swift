import Foundation
import Testing
import TenureTestSupport
import TenureClient
#if canImport(Glibc)
import Glibc
#endif

/// Running Tenure as a system service: a strict config file, systemd's
/// readiness notification, the log file reopened on SIGHUP, and metrics
/// that move with the work done.
@Suite("The daemon as a system service", .ownThreads, .serialized)
struct ServiceTests {
    /// A misspelled key stops the daemon before it starts, naming the key it meant.
    @Test func aMisspelledConfigKeyIsRefusedWithTheNearestKeyNamed() throws {
        let scratch = try Scratch()
        let config = scratch.path + "/tenure.conf"
        try "# a comment\nio_timout=3\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try Harness.tenure(["daemon", "--foreground", "--config", config, "--run-dir", scratch.path + "/run", "--watchdog", "none"])
        #expect(refused.status != 0, "the daemon started with a misspelled key: \(refused)")
        #expect(refused.stderr.contains("io_timout is not a setting") && refused.stderr.contains("Did you mean io-timeout?"), "\(refused)")
        // Every key the config file takes is also a flag of the daemon.
        let help = try Harness.tenureOK(["daemon", "--help"]).stdout
        for key in ["run-dir", "host-name", "io-timeout", "watchdog", "watchdog-fire", "kill-grace", "socket-group", "log-level",
                    "max-connections", "max-leases", "log-file", "lock-memory", "realtime", "sanlock-run-dir", "metrics-listen"] {
            #expect(help.contains("--\(key)"), "--\(key) is a config key but not a flag")
        }
    }

    /// A key given twice is refused, naming both lines (it was last-wins, silently).
    @Test func aConfigKeyGivenTwiceIsRefused() throws {
        let scratch = try Scratch()
        let config = scratch.path + "/tenure.conf"
        try "io-timeout=3\n# later\nio_timeout = 5\n".write(toFile: config, atomically: true, encoding: .utf8)
        let refused = try Harness.tenure(["daemon", "--foreground", "--config", config, "--run-dir", scratch.path + "/run", "--watchdog", "none"])
        #expect(refused.status != 0, "the daemon started with a key given twice: \(refused)")
        #expect(refused.stderr.contains("\(config):3: io-timeout is set again; line 1 set it already"), "\(refused)")
    }

    /// A host name too long for a delta lease stops the start (it stopped only the first join).
    @Test func aHostNameTooLongIsRefusedAtStart() throws {
        let scratch = try Scratch()
        let name = String(repeating: "h", count: 49)
        let refused = try Harness.tenure(["daemon", "--foreground", "--config", "/dev/null", "--host-name", name, "--run-dir", scratch.path + "/run", "--watchdog", "none"])
        #expect(refused.status != 0, "the daemon started with a 49-byte host name: \(refused)")
        #expect(refused.stderr.contains("is 49 bytes; a host name is 1...48 bytes"), "\(refused)")
    }

    /// A taken --metrics-listen port is named as such (it came with storage
    /// advice), and the failed start leaves nothing in the run dir.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"), "needs /usr/bin/python3 to hold a port"))
    func aTakenMetricsPortIsNamedAndLeavesNothingBehind() throws {
        let scratch = try Scratch()
        let holder = try Background(executable: "/usr/bin/python3", ["-c", "import socket, time\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\nprint(s.getsockname()[1], flush=True)\ntime.sleep(120)"])
        defer { kill(holder.process.processIdentifier, SIGKILL) }
        #expect(eventually(30) { Int(holder.output.stdout.filter(\.isNumber)) != nil }, "\(holder.output)")
        let port = holder.output.stdout.filter(\.isNumber)
        let runDir = scratch.path + "/run"
        let refused = try Harness.tenure(["daemon", "--foreground", "--config", "/dev/null", "--run-dir", runDir, "--watchdog", "none",
                                          "--metrics-listen", "127.0.0.1:\(port)"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("cannot listen there: another program listens on it") && !refused.stderr.contains("dmesg"), "\(refused)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []
        #expect(left.isEmpty, "a failed start left \(left) in the run dir")
    }

    /// A detached start on a run dir another daemon serves is refused; it
    /// said "started (pid N)" for a pid that had died.
    @Test func aDetachedStartOnABusyRunDirIsRefused() throws {
        let scratch = try Scratch()
        let daemon = try RunningDaemon(scratch: scratch)
        let second = try Harness.tenure(["daemon", "--config", "/dev/null", "--run-dir", daemon.runDir, "--watchdog", "none"])
        #expect(second.status != 0 && second.stderr.contains("already runs on \(daemon.runDir)"), "\(second)")
        #expect(!second.stdout.contains("started"), "\(second)")
        #expect(daemon.process.process.isRunning)
    }

    /// Type=notify: once its socket answers, the daemon sends READY=1 to
    /// $NOTIFY_SOCKET, and it logs the settings it runs with.
    @Test func theDaemonTellsTheServiceManagerWhenItIsReady() throws {
        let scratch = try Scratch()
        let notify = scratch.path + "/notify.sock"
        let fd = try Self.datagramSocket(at: notify)
        defer { close(fd) }
        let log = scratch.path + "/daemon.log"
        let daemon = try Background(shell: ["export NOTIFY_SOCKET=\(notify)"],
                                    ["daemon", "--foreground", "--run-dir", scratch.path + "/run", "--watchdog", "none", "--lock-memory", "off",
                                     "--realtime", "off", "--log-file", log, "--io-timeout", "3"])
        defer { kill(daemon.process.processIdentifier, SIGKILL) }
        var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pollFD, 1, 20_000) == 1, "no notification within 20 s")
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        let message = n > 0 ? String(decoding: buffer[..<n], as: UTF8.self) : ""
        #expect(message.contains("READY=1") && message.contains("MAINPID=\(daemon.process.processIdentifier)"), "\(message)")
        #expect((try? TenureConnection(runDir: scratch.path + "/run").status()) != nil, "READY=1 came before the socket answered")
        // The log file took the output, with the settings once at start.
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("settings: run-dir=\(scratch.path)/run") && text.contains("io-timeout=3") && text.contains("watchdog=none"), "\(text)")
        // SIGHUP reopens it: moved away, a new file gets the next lines.
        try FileManager.default.moveItem(atPath: log, toPath: log + ".1")
        kill(daemon.process.processIdentifier, SIGHUP)
        #expect(eventually(10) { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("reopened the log file") },
                "SIGHUP did not reopen the log file")
    }

    /// Detached with no log file, the daemon logs to syslog: a datagram
    /// socket at /dev/log (this test's own, where no syslog daemon runs)
    /// receives its lines, tagged tenure[PID] at facility daemon.
    @Test(.enabled(if: Harness.isRoot && !FileManager.default.fileExists(atPath: "/dev/log"),
                   "needs root and no syslog daemon on /dev/log (the test stands in for one)"))
    func aDetachedDaemonLogsToSyslog() throws {
        let scratch = try Scratch()
        let fd = try Self.datagramSocket(at: "/dev/log")
        defer { close(fd); unlink("/dev/log") }
        let runDir = scratch.path + "/run"
        let started = try Harness.tenure(["daemon", "--run-dir", runDir, "--watchdog", "none", "--lock-memory", "off", "--realtime", "off"])
        #expect(started.status == 0 && started.stdout.contains("journalctl -t tenure"), "\(started)")
        defer { _ = try? Harness.tenure(["client", "shutdown", "--run-dir", runDir]) }
        var lines: [String] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while !lines.contains(where: { $0.contains("serving on") }), poll(&pollFD, 1, 10_000) == 1 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { lines.append(String(decoding: buffer[..<n], as: UTF8.self)) }
        }
        let serving = lines.first { $0.contains("serving on") } ?? ""
        // <30> is facility daemon (3 × 8) at priority info (6).
        #expect(serving.hasPrefix("<30>") && serving.contains("tenure["), "syslog got: \(lines)")
    }

    /// Metrics in Prometheus's text format, from the client and over HTTP,
    /// moving with the work: an acquire, a release, renewals.
    @Test func metricsParseAsPrometheusTextAndMoveWithTheWork() throws {
        let scratch = try Scratch()
        let port = 20_000 + Int(getpid() % 20_000)
        let (daemon, file) = try DaemonTests().setUp(scratch, extra: ["--metrics-listen", "127.0.0.1:\(port)"])
        func metrics() throws -> [String: Double] {
            try Self.parse(try daemon.clientOK(["metrics"]).stdout)
        }
        #expect(eventually(8) { ((try? metrics())?["tenure_renewals_total{lockspace=\"D\"}"] ?? 0) >= 1 }, "no renewal counted")
        let before = try metrics()
        try daemon.clientOK(["hold", "-r", "D:R0:\(file):1048576", "--seconds", "0"])
        let refused = try daemon.client(["hold", "-r", "D:NOPE:\(file):1048576", "--seconds", "0"])
        #expect(refused.status != 0)
        let after = try metrics()
        #expect(after["tenure_acquires_total"] == (before["tenure_acquires_total"] ?? -1) + 1, "\(after)")
        #expect(after["tenure_releases_total"] == (before["tenure_releases_total"] ?? -1) + 1, "\(after)")
        #expect(after["tenure_acquire_refusals_total"] == (before["tenure_acquire_refusals_total"] ?? -1) + 1, "\(after)")
        #expect(after["tenure_leases_held"] == 0)
        #expect((after["tenure_renewal_duration_seconds_count{lockspace=\"D\"}"] ?? 0) >= 1)
        #expect(after["tenure_lockspace_valid{lockspace=\"D\"}"] == 1)
        #expect((after["tenure_resident_memory_bytes"] ?? 0) > 1_000_000)
        // A forced request: sent and seen here, the holder fenced, and how long that took.
        let holder = try Background(["client", "hold", "-r", "D:R1:\(file):2097152", "--run-dir", daemon.runDir])
        defer { kill(holder.process.processIdentifier, SIGKILL) }
        #expect(eventually { (try? daemon.leases())?.count == 1 })
        try daemon.clientOK(["request", "-r", "D:R1:\(file):2097152", "--force"])
        #expect(eventually(10) { (try? metrics())?["tenure_fencing_duration_seconds_count"] == (after["tenure_fencing_duration_seconds_count"] ?? -1) + 1 },
                "the fencing was not timed: \((try? metrics()) ?? [:])")
        let fenced = try metrics()
        #expect(fenced["tenure_fencing_total"] == (after["tenure_fencing_total"] ?? -1) + 1)
        #expect(fenced["tenure_requests_sent_total"] == (after["tenure_requests_sent_total"] ?? -1) + 1)
        #expect(fenced["tenure_requests_seen_total"] == (after["tenure_requests_seen_total"] ?? -1) + 1)
        #expect(fenced["tenure_processes_being_fenced"] == 0)
        // The same over HTTP; anything but /metrics is not found.
        let http = try Harness.run("/usr/bin/env", ["python3", "-c", """
            import urllib.request, sys
            print(urllib.request.urlopen("http://127.0.0.1:\(port)/metrics", timeout=10).read().decode())
            try:
                urllib.request.urlopen("http://127.0.0.1:\(port)/other", timeout=10)
            except urllib.error.HTTPError as e:
                print("status", e.code)
            """])
        #expect(http.status == 0, "\(http)")
        let scraped = try Self.parse(http.stdout.components(separatedBy: "status ").first ?? "")
        #expect((scraped["tenure_acquires_total"] ?? 0) >= 1 && http.stdout.contains("status 404"), "\(http)")
        // A peer trickling its request a byte at a time does not hold the
        // endpoint: a scrape beside it is served while it still trickles.
        let trickle = try Harness.run("/usr/bin/env", ["python3", "-c", """
            import socket, threading, time, urllib.request
            s = socket.create_connection(("127.0.0.1", \(port)))
            def trickle():
                for _ in range(40):
                    try:
                        s.send(b"G")
                    except OSError:
                        return
                    time.sleep(0.5)
            t = threading.Thread(target=trickle, daemon=True)
            t.start()
            time.sleep(0.3)
            urllib.request.urlopen("http://127.0.0.1:\(port)/metrics", timeout=60).read()
            print("served while trickling" if t.is_alive() else "served after the trickle")
            """])
        #expect(trickle.stdout.contains("served while trickling"), "\(trickle)")
    }

    /// What an operator needs after trouble: renewal ages and latencies,
    /// fencing, how long leases have been held; tables by default, JSON on ask.
    @Test func statusDetailHostStatusAndRenewalsForTheOperator() throws {
        let scratch = try Scratch()
        let (daemon, file) = try DaemonTests().setUp(scratch)
        #expect(eventually(8) { (try? daemon.client(["renewal", "D"]))?.stdout.contains("read_ms=") == true })
        let holder = try Background(["client", "hold", "-r", "D:R0:\(file):1048576", "--run-dir", daemon.runDir])
        defer { kill(holder.process.processIdentifier, SIGKILL) }
        #expect(eventually { (try? daemon.leases())?.count == 1 })
        var detail = ""
        _ = eventually { detail = (try? daemon.clientOK(["status", "--detail"]).stdout) ?? ""; return detail.contains("held for") && detail.contains("D:R0:") }
        #expect(detail.contains("lockspace D: last renewal ") && detail.contains(" ago, last attempt "), "\(detail)")
        #expect(detail.contains("timestamp") && detail.contains("read") && detail.contains("write"), "\(detail)")
        #expect(detail.contains("no process being fenced") && detail.contains("held for") && detail.contains("D:R0:"), "\(detail)")
        let json = try Harness.json(try daemon.clientOK(["status", "--json"]).stdout)
        let space = (json["lockspaces"] as? [[String: Any]])?.first ?? [:]
        #expect((space["last_renewal_age_ms"] as? Int ?? -1) >= 0 && !(space["recent_renewals"] as? [Any] ?? []).isEmpty, "\(space)")
        let lease = (json["leases"] as? [[String: Any]])?.first ?? [:]
        #expect((lease["held_ms"] as? Int ?? -1) >= 200, "\(lease)")
        let hosts = try daemon.clientOK(["host-status", "D"]).stdout
        #expect(hosts.contains("host id") && hosts.contains("self"), "\(hosts)")
        #expect(try Harness.json(try daemon.clientOK(["host-status", "D", "--json"]).stdout)["lockspace"] as? String == "D")
        let renewals = try daemon.clientOK(["renewal", "D", "--json"]).stdout
        let records = try JSONSerialization.jsonObject(with: Data(renewals.utf8)) as? [[String: Int]] ?? []
        #expect(!records.isEmpty && records.allSatisfy { $0["read_ms"] != nil && $0["timestamp"] != nil }, "\(renewals)")
    }

    /// A Unix datagram socket bound at `path`: what systemd's notify socket
    /// and syslog's /dev/log are.
    static func datagramSocket(at path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw HarnessError("bind \(path): errno \(errno)")
        }
        return fd
    }

    /// Parses Prometheus's text format strictly: every line a comment
    /// (HELP or TYPE) or `NAME{LABELS} VALUE`; each sample's metric has a
    /// TYPE line first. Returns the samples by `NAME{LABELS}`.
    static func parse(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        var typed: Set<String> = []
        let name = "[a-zA-Z_:][a-zA-Z0-9_:]*"
        let sample = try Regex("^(\(name))(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})? (-?[0-9.e+-]+|\\+Inf|NaN)$")
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") { continue }
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                    throw HarnessError("bad TYPE line: \(line)")
                }
                typed.insert(String(parts[2]))
                continue
            }
            let whole = String(line)
            guard let match = try sample.wholeMatch(in: whole) else { throw HarnessError("not Prometheus text: \(line)") }
            let metric = String(whole[match.output[1].range!])
            let family = ["_bucket", "_sum", "_count"].reduce(metric) { $0.hasSuffix($1) && typed.contains(String($0.dropLast($1.count))) ? String($0.dropLast($1.count)) : $0 }
            guard typed.contains(family) else { throw HarnessError("\(metric) has no TYPE line before it") }
            let space = line.lastIndex(of: " ")!
            let value = line[line.index(after: space)...]
            samples[String(line[..<space])] = Double(value) ?? (value == "+Inf" ? .infinity : .nan)
        }
        return samples
    }
}
