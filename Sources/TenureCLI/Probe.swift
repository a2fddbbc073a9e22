import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureFormat
import TenureIO

// MARK: - probe

extension Direct {
    /// Checks that a device suits leases: it opens O_DIRECT, reports its
    /// sector size and size, and times single-sector reads against a
    /// deadline. It only reads, so it is safe on a device in use.
    struct Probe: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a device for leases: O_DIRECT, sector size, size, and read latency against a deadline (reads only).",
            discussion: """
            Opens PATH as every lease command does (O_RDWR | O_DIRECT | O_SYNC), then \
            reads one sector at --reads offsets spread over the device, one at a \
            time, each with the deadline --deadline-ms. Reports the latency (median, \
            99th percentile, worst) and how many reads missed the deadline. Exits 1 \
            if any did: leases on this storage would fail their renewals at that \
            io_timeout. Writes nothing, so it is safe on a device in use.

            Examples:
              tenure direct probe /dev/mapper/leases
              tenure direct probe /var/tmp/demo.leases --reads 1000 --deadline-ms 100 --json
            """
        )

        @Argument(help: ArgumentHelp("The lease file or block device.", valueName: "PATH"))
        var path: String

        @Option(help: ArgumentHelp("How many single-sector reads to time (1...\(Self.maxReads)).", valueName: "N"))
        var reads = 100

        @Option(name: .customLong("deadline-ms"), help: ArgumentHelp("Deadline of each read in milliseconds (1...\(Self.maxDeadlineMilliseconds)); the io_timeout you plan to use, or less.", valueName: "MS"))
        var deadlineMilliseconds = 10_000

        @Option(help: ArgumentHelp("I/O engine: aio (libaio, a deadline per I/O) or sync (pread, no deadline).", valueName: "ENGINE"))
        var engine: String = IOEngine.aio.rawValue

        @Flag(help: "Print the report as JSON.")
        var json = false

        /// The most reads one probe issues.
        static let maxReads = 100_000
        /// The longest deadline accepted: sanlock's largest sane io_timeout.
        static let maxDeadlineMilliseconds = 300_000

        func run() async throws {
            try await reportingErrors { try await probe() }
        }

        private func probe() async throws {
            guard (1...Self.maxReads).contains(reads) else {
                throw TenureError(.invalidArgument, "--reads \(reads) is outside 1...\(Self.maxReads).", remedy: "Give a number of reads such as 100.")
            }
            guard (1...Self.maxDeadlineMilliseconds).contains(deadlineMilliseconds) else {
                throw TenureError(.invalidArgument, "--deadline-ms \(deadlineMilliseconds) is outside 1...\(Self.maxDeadlineMilliseconds).",
                                  remedy: "Give the io_timeout you plan to use, in milliseconds (10000 for sanlock's default of 10 s).")
            }
            guard let engine = IOEngine(rawValue: engine) else {
                throw TenureError(.invalidArgument, "--engine \(engine) is not an I/O engine.", remedy: "Use aio or sync.")
            }
            let device = try openBlockDevice(path: path, engine: engine, ioTimeout: .milliseconds(deadlineMilliseconds), access: .readOnly)
            let clock = SystemMonotonicClock()
            var latencies: [Duration] = []
            var firstFailure: TenureError?
            var timeouts = 0
            for offset in Self.offsets(count: reads, sizeBytes: device.sizeBytes, sector: device.sectorSize) {
                let start = clock.now()
                do {
                    _ = try await device.read(at: offset, length: device.sectorSize.bytes)
                    latencies.append(clock.now() - start)
                } catch let error as TenureError {
                    if error.code == .ioTimeout { timeouts += 1 }
                    firstFailure = firstFailure ?? error
                }
            }
            // close() waits for the kernel to return abandoned reads; what it
            // still owns after that is reported.
            await device.close()
            let statistics = device.statistics
            let report = ProbeReport(path: path, engine: engine.rawValue, sectorSize: device.sectorSize.bytes, sizeBytes: device.sizeBytes,
                                     deadlineMs: deadlineMilliseconds, reads: reads, completed: latencies.count, timeouts: timeouts,
                                     failures: reads - latencies.count - timeouts, latencies: latencies,
                                     abandonedInFlight: statistics.abandonedInFlight)
            print(json ? Terminal.json(report) : report.text)
            if let firstFailure { throw firstFailure }
        }

        /// `count` sector-aligned offsets spread evenly from 0 to the last sector.
        static func offsets(count: Int, sizeBytes: UInt64, sector: SectorSize) -> [UInt64] {
            let sectorBytes = UInt64(sector.bytes)
            let sectors = sizeBytes / sectorBytes
            guard sectors > 0 else { return [] }
            return (0..<UInt64(count)).map { i in (i * sectors / UInt64(count)) * sectorBytes }
        }
    }
}

/// What `probe` reports.
struct ProbeReport: Encodable {
    let path: String
    let engine: String
    let sectorSize: Int
    let sizeBytes: UInt64
    let deadlineMs: Int
    let reads: Int
    let completed: Int
    let timeouts: Int
    let failures: Int
    let p50Ms: Double?
    let p99Ms: Double?
    let maxMs: Double?
    /// Timed-out reads the kernel had still not returned once close() stopped waiting for them.
    let abandonedInFlight: UInt64

    init(path: String, engine: String, sectorSize: Int, sizeBytes: UInt64, deadlineMs: Int, reads: Int, completed: Int,
         timeouts: Int, failures: Int, latencies: [Duration], abandonedInFlight: UInt64) {
        self.path = path
        self.engine = engine
        self.sectorSize = sectorSize
        self.sizeBytes = sizeBytes
        self.deadlineMs = deadlineMs
        self.reads = reads
        self.completed = completed
        self.timeouts = timeouts
        self.failures = failures
        let sorted = latencies.map { Double($0.nanosecondsClamped) / 1e6 }.sorted()
        p50Ms = percentile(sorted, 0.5)
        p99Ms = percentile(sorted, 0.99)
        maxMs = sorted.last
        self.abandonedInFlight = abandonedInFlight
    }

    var text: String {
        func ms(_ v: Double?) -> String { v.map { Format.fixed($0, 3) + " ms" } ?? "-" }
        return """
        \(path): \(sectorSize)-byte sectors, \(sizeBytes) bytes, O_DIRECT through \(engine)
        \(completed) of \(reads) single-sector reads within \(deadlineMs) ms; \(timeouts) timed out, \(failures) failed
        latency: median \(ms(p50Ms)), p99 \(ms(p99Ms)), worst \(ms(maxMs))
        """
    }
}
