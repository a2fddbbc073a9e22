import TenureCore
import TenureIO

/// What the daemon counts for `metrics`: work done since it started.
struct DaemonCounters: Sendable {
    var acquires: UInt64 = 0
    var acquireRefusals: UInt64 = 0
    var releases: UInt64 = 0
    var requestsSent: UInt64 = 0
    var requestsSeen: UInt64 = 0
    var fencingStarted: UInt64 = 0
    /// From the first signal (or killpath) to the process's exit.
    var fencingDuration = LatencyHistogram()
    /// Processes being stopped, and since when.
    var stopping: [Int32: MonotonicInstant] = [:]
}

/// Prometheus's text exposition format, version 0.0.4: a HELP and a TYPE
/// line per metric, then its samples.
struct MetricsText {
    private(set) var lines: [String] = []

    mutating func metric(_ name: String, _ type: String, _ help: String, _ samples: [String]) {
        lines.append("# HELP \(name) \(help)")
        lines.append("# TYPE \(name) \(type)")
        lines += samples
    }

    /// A label value with `\`, `"` and newlines escaped.
    static func label(_ value: String) -> String {
        value.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"").replacing("\n", with: "\\n")
    }

    var text: String { lines.joined(separator: "\n") + "\n" }
}

extension Daemon {
    /// Every metric, as Prometheus reads it (`tenure client metrics`, and
    /// the `--metrics-listen` endpoint).
    func metricsText() async -> String {
        await onRenewalThread { await metricsTextHere() }
    }

    private func metricsTextHere() async -> String {
        var m = MetricsText()
        var renewals: [String] = [], failed: [String] = [], latency: [String] = [], age: [String] = [], valid: [String] = []
        let now = context.clock.now()
        for (name, joined) in lockspaces.sorted(by: { $0.key.description < $1.key.description }) {
            let l = "lockspace=\"\(MetricsText.label(name.description))\""
            renewals.append("tenure_renewals_total{\(l)} \(await joined.lockspace.renewals)")
            failed.append("tenure_renewal_failures_total{\(l)} \(await joined.lockspace.failedRenewals)")
            latency += await joined.lockspace.renewalLatency.lines("tenure_renewal_duration_seconds", labels: l)
            if let last = await joined.lockspace.hold?.lastRenewalStart {
                age.append("tenure_renewal_age_seconds{\(l)} \(Double((now - last).nanosecondsClamped) / 1e9)")
            }
            valid.append("tenure_lockspace_valid{\(l)} \(await joined.lockspace.isValid(at: now) ? 1 : 0)")
        }
        m.metric("tenure_renewals_total", "counter", "Successful delta-lease renewals.", renewals)
        m.metric("tenure_renewal_failures_total", "counter", "Delta-lease renewals that failed.", failed)
        m.metric("tenure_renewal_duration_seconds", "histogram", "Time of each successful renewal: its read and its write.", latency)
        m.metric("tenure_renewal_age_seconds", "gauge", "Time since the last successful renewal started.", age)
        m.metric("tenure_lockspace_valid", "gauge", "1 while the lockspace's leases may be used.", valid)
        m.metric("tenure_acquires_total", "counter", "Leases acquired for processes.", ["tenure_acquires_total \(counters.acquires)"])
        m.metric("tenure_acquire_refusals_total", "counter", "Acquire requests refused.", ["tenure_acquire_refusals_total \(counters.acquireRefusals)"])
        m.metric("tenure_releases_total", "counter", "Releases written.", ["tenure_releases_total \(counters.releases)"])
        m.metric("tenure_requests_sent_total", "counter", "Requests written for other holders' leases.", ["tenure_requests_sent_total \(counters.requestsSent)"])
        m.metric("tenure_requests_seen_total", "counter", "Requests found for leases held here.", ["tenure_requests_seen_total \(counters.requestsSeen)"])
        m.metric("tenure_fencing_total", "counter", "Processes this daemon started to stop (lost lockspace, request, shutdown).",
                 ["tenure_fencing_total \(counters.fencingStarted)"])
        m.metric("tenure_fencing_duration_seconds", "histogram", "From the first signal to a stopped process's exit.",
                 counters.fencingDuration.lines("tenure_fencing_duration_seconds"))
        m.metric("tenure_processes_being_fenced", "gauge", "Processes being stopped now.", ["tenure_processes_being_fenced \(core.fencedProcesses.count)"])
        m.metric("tenure_leases_held", "gauge", "Leases held for processes, and orphans.", ["tenure_leases_held \(core.leaseCount + core.orphans.count)"])
        m.metric("tenure_request_stage_seconds", "summary", "Time of requests on Tenure's socket in each stage: read (off the socket and decoded), handle (the daemon's work, I/O included), reply (encode and write); to_task and to_connection were thread hand-offs, none since the event loop.",
                 requestStages.lines("tenure_request_stage_seconds"))
        var timeouts: [String] = [], failures: [String] = [], waits: [String] = [], answered: [String] = [], polled: [String] = [], submits: [String] = []
        for (path, device) in measuredDevices() {
            let stats = device.statistics
            let l = "device=\"\(MetricsText.label(path))\""
            timeouts.append("tenure_io_timeouts_total{\(l)} \(stats.timeouts)")
            failures.append("tenure_io_failures_total{\(l)} \(stats.failures)")
            waits.append("tenure_io_wait_seconds_total{\(l)} \(Double(stats.waitNanoseconds) / 1e9)")
            answered.append("tenure_io_total{\(l)} \(stats.reads + stats.writes + stats.failures + stats.timeouts)")
            polled.append("tenure_io_answered_by_caller_total{\(l)} \(stats.answeredByCaller)")
            submits.append("tenure_io_submit_calls_total{\(l)} \(stats.batches)")
        }
        m.metric("tenure_io_timeouts_total", "counter", "I/Os whose deadline passed, per open device handle.", timeouts)
        m.metric("tenure_io_failures_total", "counter", "I/Os that failed, per open device handle.", failures)
        m.metric("tenure_io_total", "counter", "I/Os answered, per open device handle.", answered)
        m.metric("tenure_io_answered_by_caller_total", "counter", "I/Os found by polling, by their caller or by the event loop at the end of a round (the rest woke it through the reaper), per open device handle.", polled)
        m.metric("tenure_io_submit_calls_total", "counter", "io_submit calls, per open device handle: I/Os issued together share one.", submits)
        m.metric("tenure_io_wait_seconds_total", "counter", "Time callers waited for their I/O (queue, kernel, device, wake-up), per open device handle.", waits)
        m.metric("tenure_resident_memory_bytes", "gauge", "The daemon's resident memory.", ["tenure_resident_memory_bytes \((Self.residentKiB() ?? 0) * 1024)"])
        return m.text
    }

    /// Every open handle that counts its I/O, by a name per handle: the
    /// lease handles by path, each lockspace's renewal handle as
    /// "PATH (renewals of LS)".
    func measuredDevices() -> [(String, any MeasuredBlockDevice)] {
        var out: [(String, any MeasuredBlockDevice)] = []
        for (path, open) in devices.sorted(by: { $0.key < $1.key }) {
            if let measured = open.device as? any MeasuredBlockDevice { out.append((path, measured)) }
        }
        for (name, joined) in lockspaces.sorted(by: { $0.key.description < $1.key.description }) {
            if let measured = joined.renewalDevice as? any MeasuredBlockDevice {
                out.append(("\(joined.spec.disk.path) (renewals of \(name))", measured))
            }
        }
        return out
    }

    /// A stop's first signal: counted, and timed until the process exits.
    func fencingSignalled(_ pid: Int32) {
        guard counters.stopping[pid] == nil else { return }
        counters.stopping[pid] = context.clock.now()
        counters.fencingStarted += 1
    }

    /// A process exited: if it was being stopped, the stop took this long.
    func fencedProcessExited(_ pid: Int32) {
        guard let started = counters.stopping.removeValue(forKey: pid) else { return }
        counters.fencingDuration.observe(context.clock.now() - started)
    }
}
