import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import Synchronization
import TenureClient
import TenureCore
import TenureFormat
import TenureIO

/// `tenure bench`: measurements through the running daemon, as a user's
/// process sees them. Speed is measured here, never asserted in tests.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Tenure through a running daemon: acquire + release cycles, joining and renewing, memory.",
        subcommands: [AcquireCycles.self, Memory.self, LockspaceCosts.self]
    )
}

extension Bench {
    struct AcquireCycles: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "acquire",
            abstract: "Acquire + release cycles of free resources: one client, then K clients on distinct resources.",
            discussion: """
            The resources are those `tenure direct format` laid out: NAME R0, R1, … at \
            FIRST_OFFSET, FIRST_OFFSET + align, …, in lockspace --lockspace, which the \
            daemon must have joined. Each client is its own connection (its own \
            registration) and runs --cycles cycles on its own resource. Prints a \
            line per measurement; with --json one object per line with clients, \
            cycles, seconds, cycles_per_second, p50_ms, p99_ms.

            Example:
              tenure direct format --lockspace B --path /dev/loop0 --resources 64 --max-hosts 64
              tenure client add-lockspace -s B:1:/dev/loop0:0
              tenure bench acquire --lockspace B --path /dev/loop0 --first-offset 1M --resources 64 --clients 32 --cycles 200
            """
        )

        @OptionGroup var layout: BenchLayout
        @Option(parsing: .unconditional, help: "How many resources R0… exist (at least --clients).")
        var resources: Int
        @Option(help: "Clients for the concurrent measurement (1...\(Self.maxClients)).")
        var clients = 32
        @Option(help: "Cycles per client (1...\(Self.maxCycles)).")
        var cycles = 100
        @Flag(help: "One JSON object per measurement.")
        var json = false
        @OptionGroup var options: ClientOptions

        static let maxClients = 256
        static let maxCycles = 100_000

        func validate() throws {
            guard (1...Self.maxClients).contains(clients) else { throw ValidationError("--clients is outside 1...\(Self.maxClients).") }
            guard (1...Self.maxCycles).contains(cycles) else { throw ValidationError("--cycles is outside 1...\(Self.maxCycles).") }
            guard resources >= clients else { throw ValidationError("--resources \(resources) is fewer than --clients \(clients): each client needs its own.") }
        }

        struct Measurement: Encodable {
            let clients: Int
            let cycles: Int
            let seconds: Double
            let cyclesPerSecond: Double
            let p50Ms: Double
            let p99Ms: Double
            /// The one-client p50 over the device floor's p50 (nil for several clients).
            var floorRatio: Double?
            /// The lease handles' I/Os per io_submit call, from the daemon's
            /// metrics: how much the requests that ran together shared.
            var iosPerSubmit: Double?
        }

        /// The daemon's per-stage sums and its lease handles' I/O wait, from
        /// its metrics.
        struct StageSample {
            var stages: [String: Double] = [:]
            var ioWaitSeconds = 0.0
            var ios = 0.0
            var polled = 0.0
            var submits = 0.0

            static func take(runDir: String?) throws -> StageSample {
                let text = try TenureConnection(runDir: runDir).metrics()
                var sample = StageSample()
                for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                    let parts = line.split(separator: " ")
                    guard parts.count == 2, let value = Double(parts[1]) else { continue }
                    let key = String(parts[0])
                    // The renewal handles' I/O is not the cycles'.
                    let renewals = key.contains("(renewals of ")
                    if key.hasPrefix("tenure_request_stage_seconds_sum{stage=\""), let stage = key.split(separator: "\"").dropFirst().first {
                        sample.stages[String(stage)] = value
                    } else if key.hasPrefix("tenure_io_wait_seconds_total{"), !renewals {
                        sample.ioWaitSeconds += value
                    } else if key.hasPrefix("tenure_io_total{"), !renewals {
                        sample.ios += value
                    } else if key.hasPrefix("tenure_io_answered_by_caller_total{"), !renewals {
                        sample.polled += value
                    } else if key.hasPrefix("tenure_io_submit_calls_total{"), !renewals {
                        sample.submits += value
                    }
                }
                return sample
            }
        }

        /// Where one client's mean cycle went, from the daemon's own clocks:
        /// each stage of its two requests, the I/O wait within `handle`,
        /// and the rest (the sockets and the client's side).
        struct Breakdown: Encodable {
            let breakdown = true
            let cycleMs: Double
            let readMs: Double
            let toTaskMs: Double
            let handleMs: Double
            let ioWaitMs: Double
            let iosPerCycle: Double
            /// Of those, answered by the caller's own poll (the rest by the reaper's wake-up).
            let polledPerCycle: Double
            let toConnectionMs: Double
            let replyMs: Double
            let outsideMs: Double

            init(cycles: Int, meanMs: Double, before: StageSample, after: StageSample) {
                let n = Double(max(cycles, 1))
                func stage(_ name: String) -> Double { ((after.stages[name] ?? 0) - (before.stages[name] ?? 0)) * 1000 / n }
                cycleMs = meanMs
                readMs = stage("read")
                toTaskMs = stage("to_task")
                handleMs = stage("handle")
                toConnectionMs = stage("to_connection")
                replyMs = stage("reply")
                ioWaitMs = (after.ioWaitSeconds - before.ioWaitSeconds) * 1000 / n
                iosPerCycle = (after.ios - before.ios) / n
                polledPerCycle = (after.polled - before.polled) / n
                outsideMs = meanMs - readMs - toTaskMs - handleMs - toConnectionMs - replyMs
            }

            var text: String {
                let ms = { (value: Double) in Format.fixed(value, 3) }
                return "  where a cycle's \(ms(cycleMs)) ms went (the daemon's clocks, two requests): read \(ms(readMs)), to its task \(ms(toTaskMs)), "
                    + "handle \(ms(handleMs)) (I/O wait \(ms(ioWaitMs)) over \(Format.fixed(iosPerCycle, 1)) I/Os, \(Format.fixed(polledPerCycle, 1)) answered by the caller's poll), "
                    + "back to its connection \(ms(toConnectionMs)), reply \(ms(replyMs)); sockets, the loop's wake-ups and the client \(ms(outsideMs))"
            }
        }

        /// The device's own floor for one cycle: the ten single-sector I/Os
        /// an acquire + release needs, issued back to back.
        struct Floor: Encodable {
            let floor = true
            let cycles: Int
            let p50Ms: Double
            let p99Ms: Double
        }

        func run() async throws {
            try await reportingErrors {
                let resource = try layout.resourceNamer()
                let floor = try await measureFloor()
                if json {
                    print(Terminal.json(floor))
                } else {
                    print("device floor: 10 single-sector I/Os back to back, \(floor.cycles) cycles: p50 \(Format.fixed(floor.p50Ms, 3)) ms, p99 \(Format.fixed(floor.p99Ms, 3)) ms")
                }
                for count in clients == 1 ? [1] : [1, clients] {
                    let before = try? StageSample.take(runDir: options.runDir)
                    var m = try measure(clients: count, resource: resource)
                    if count == 1, floor.p50Ms > 0 { m.floorRatio = m.p50Ms / floor.p50Ms }
                    var breakdown: Breakdown?
                    if let before, let after = try? StageSample.take(runDir: options.runDir) {
                        if after.submits > before.submits { m.iosPerSubmit = (after.ios - before.ios) / (after.submits - before.submits) }
                        if count == 1 {
                            breakdown = Breakdown(cycles: m.cycles, meanMs: m.seconds * 1000 / Double(max(m.cycles, 1)), before: before, after: after)
                        }
                    }
                    if json {
                        print(Terminal.json(m))
                    } else {
                        let ratio = m.floorRatio.map { " (\(Format.fixed($0, 1))× the floor)" } ?? ""
                        let shared = m.iosPerSubmit.map { ", \(Format.fixed($0, 2)) I/Os per io_submit" } ?? ""
                        print("\(Format.padded(String(m.clients), 3)) client\(m.clients == 1 ? " " : "s"): \(Format.padded(String(m.cycles), 6)) cycles in \(Format.fixed(m.seconds, 2)) s = "
                              + "\(Format.padded(Format.fixed(m.cyclesPerSecond, 1), 8)) cycles/s, p50 \(Format.fixed(m.p50Ms, 3)) ms, p99 \(Format.fixed(m.p99Ms, 3)) ms" + ratio + shared)
                    }
                    if let breakdown { print(json ? Terminal.json(breakdown) : breakdown.text) }
                    fflush(nil)
                }
            }
        }

        /// Ten single-sector I/Os a cycle (read and write in turn, as a cycle
        /// issues them: the acquire's read, two ballot phases' write and
        /// read, the commit; the release's read and write of its dblock,
        /// then of the leader), through the same O_DIRECT aio path,
        /// on the last sector of R0's area: no lease uses it in any layout
        /// (the dblocks and the lock value block end before it), and each
        /// write puts back the bytes just read.
        func measureFloor() async throws -> Floor {
            guard let first = LeaseStringSyntax.parseSize(layout.firstOffset), let step = LeaseStringSyntax.parseSize(layout.align) else {
                throw TenureError(.invalidArgument, "--first-offset \(layout.firstOffset) or --align \(layout.align) is not a size.")
            }
            return try await Devices.with(layout.path) { device in
                let sector = device.sectorSize.bytes
                let at = first + step - UInt64(sector)
                let pattern = (0..<10).map { $0 % 2 == 0 }   // read, write, read, …
                var times: [Double] = []
                for _ in 0..<min(cycles * 2, 1000) {
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    var bytes = try await device.read(at: at, length: sector)
                    for read in pattern.dropFirst() {
                        if read { bytes = try await device.read(at: at, length: sector) } else { try await device.write(bytes, at: at) }
                    }
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
                let sorted = times.sorted()
                return Floor(cycles: sorted.count, p50Ms: percentile(sorted, 0.5) ?? 0, p99Ms: percentile(sorted, 0.99) ?? 0)
            }
        }

        /// `count` clients, each on a thread of its own (as many processes
        /// would be), each cycling on its own resource.
        func measure(clients count: Int, resource: @escaping @Sendable (Int) -> String) throws -> Measurement {
            let latencies = Mutex<[Double]>([])
            let failure = Mutex<TenureError?>(nil)
            let runDir = options.runDir
            let cycles = self.cycles
            let connections = try (0..<count).map { _ in try TenureConnection(runDir: runDir) }
            let boxes = connections.map { ConnectionBox($0) }
            let start = DispatchTime.now().uptimeNanoseconds
            // Not concurrentPerform: it runs no more threads than cores, and
            // every client spends its time blocked on the daemon's answer.
            Self.onThreads(count) { i in
                let connection = boxes[i].connection
                var mine: [Double] = []
                mine.reserveCapacity(cycles)
                do {
                    try connection.register()
                    for _ in 0..<cycles {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        let state = try connection.acquire([resource(i)])
                        try connection.release([state.first.map { Self.name(of: $0) } ?? "*"])
                        mine.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                    }
                } catch {
                    let tenureError = (error as? TenureError) ?? TenureError(.ioFailed, "\(error)")
                    failure.withLock { $0 = $0 ?? tenureError }
                }
                latencies.withLock { $0 += mine }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if let error = failure.withLock({ $0 }) { throw error }
            let sorted = latencies.withLock { $0 }.sorted()
            return Measurement(clients: count, cycles: sorted.count, seconds: seconds, cyclesPerSecond: Double(sorted.count) / seconds,
                               p50Ms: percentile(sorted, 0.5) ?? 0, p99Ms: percentile(sorted, 0.99) ?? 0)
        }

        /// Runs `body(0..<count)` on `count` threads at once and waits for all.
        static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
            let done = DispatchGroup()
            for i in 0..<count {
                done.enter()
                do {
                    try DetachedThread.start(name: "tenure-bench", for: "the bench") {
                        body(i)
                        done.leave()
                    }
                } catch {
                    preconditionFailure("\(error)")
                }
            }
            done.wait()
        }

        /// "LS:NAME:PATH:OFFSET:LVER" → NAME.
        static func name(of state: String) -> String {
            (try? LeaseStringSyntax.split(state)).flatMap { $0.count > 1 ? $0[1] : nil } ?? "*"
        }
    }
}

/// A connection used from one thread of concurrentPerform.
final class ConnectionBox: @unchecked Sendable {
    let connection: TenureConnection
    init(_ connection: TenureConnection) { self.connection = connection }
}

extension Bench {
    struct Memory: AsyncParsableCommand, BenchReporting {
        static let configuration = CommandConfiguration(
            abstract: "The daemon's resident memory holding many leases, then over a soak of acquire + release cycles.",
            discussion: """
            Holds --resources leases (R0, R1, … as `tenure direct format` laid them \
            out) through one connection and reads the daemon's resident size \
            (status); releases them; then runs --clients clients cycling on their \
            own resources for --soak-seconds, sampling the resident size every \
            --sample-seconds. Prints one line per measurement (--json: one object).

            Example:
              tenure direct format --lockspace B --path /var/tmp/b.leases --create 1100M --resources 1000 --max-hosts 64
              tenure client add-lockspace -s B:1:/var/tmp/b.leases:0
              tenure bench memory --lockspace B --path /var/tmp/b.leases --resources 1000 --soak-seconds 600
            """
        )

        @OptionGroup var layout: BenchLayout
        @Option(parsing: .unconditional, help: "Leases to hold at once (R0 … R(N-1) must exist).")
        var resources: Int
        @Option(help: "Clients cycling during the soak (each on its own resource).")
        var clients = 8
        @Option(name: .customLong("soak-seconds"), help: "Length of the soak (0: none).")
        var soakSeconds = 600
        @Option(name: .customLong("sample-seconds"), help: "Resident size sampled this often during the soak.")
        var sampleSeconds = 30
        @Option(name: .customLong("hold-seconds"), help: "Keep the leases this long before releasing them; on a block device, its traffic meanwhile is reported.")
        var holdSeconds = 0
        @Flag(help: "One JSON object per measurement.")
        var json = false
        @OptionGroup var options: ClientOptions

        func validate() throws {
            guard resources >= 1 else { throw ValidationError("--resources must be at least 1.") }
            guard (1...AcquireCycles.maxClients).contains(clients), clients <= resources else {
                throw ValidationError("--clients must be 1...\(AcquireCycles.maxClients) and at most --resources.")
            }
            guard soakSeconds >= 0, sampleSeconds >= 1 else { throw ValidationError("--soak-seconds must be ≥ 0 and --sample-seconds ≥ 1.") }
        }

        struct Held: Encodable { let measure = "held_leases"; let leases: Int; let residentKibBefore: Int; let residentKib: Int }
        struct Traffic: Encodable {
            let measure = "idle_traffic_holding"; let leases: Int; let seconds: Int
            let readsPerSecond: Double; let bytesReadPerSecond: Double; let writesPerSecond: Double; let bytesWrittenPerSecond: Double
        }
        struct Soak: Encodable {
            let measure = "soak"; let seconds: Double; let clients: Int; let cycles: Int
            let residentKibStart: Int; let residentKibEnd: Int; let residentKibMax: Int; let samplesKib: [Int]
        }

        func run() async throws {
            try await reportingErrors {
                let resource = try layout.resourceNamer()
                let runDir = options.runDir
                let before = try Self.resident(runDir)
                let holder = try TenureConnection(runDir: runDir)
                try holder.register()
                var names: [String] = []
                for start in stride(from: 0, to: resources, by: Wire.maxResourcesPerRequest) {
                    let batch = (start..<min(start + Wire.maxResourcesPerRequest, resources)).map(resource)
                    _ = try holder.acquire(batch)
                    names += (start..<min(start + Wire.maxResourcesPerRequest, resources)).map { "R\($0)" }
                }
                let held = Held(leases: resources, residentKibBefore: before, residentKib: try Self.resident(runDir))
                if holdSeconds > 0 { try measureHolding() }
                for start in stride(from: 0, to: names.count, by: Wire.maxResourcesPerRequest) {
                    try holder.release(Array(names[start..<min(start + Wire.maxResourcesPerRequest, names.count)]))
                }
                report(held, text: "holding \(resources) leases: resident \(held.residentKib) KiB (\(before) KiB before)")
                guard soakSeconds > 0 else { return }
                try soak(resource: resource, runDir: runDir)
            }
        }

        /// K clients cycle until the soak ends; the resident size is sampled meanwhile.
        func soak(resource: @escaping @Sendable (Int) -> String, runDir: String?) throws {
            let cycles = Atomic<Int>(0), stop = Atomic<Bool>(false)
            let failure = Mutex<TenureError?>(nil)
            let connections = try (0..<clients).map { _ in ConnectionBox(try TenureConnection(runDir: runDir)) }
            var samples = [try Self.resident(runDir)]
            let start = DispatchTime.now().uptimeNanoseconds
            let finished = DispatchSemaphore(value: 0)
            let clients = self.clients
            try DetachedThread.start(name: "tenure-soak", for: "the soak") {
                AcquireCycles.onThreads(clients) { i in
                    let connection = connections[i].connection
                    do {
                        try connection.register()
                        while !stop.load(ordering: .relaxed) {
                            _ = try connection.acquire([resource(i)])
                            try connection.release(["R\(i)"])
                            cycles.add(1, ordering: .relaxed)
                        }
                    } catch {
                        failure.withLock { $0 = $0 ?? ((error as? TenureError) ?? TenureError(.ioFailed, "\(error)")) }
                        stop.store(true, ordering: .relaxed)
                    }
                }
                finished.signal()
            }
            let end = DispatchTime.now() + .seconds(soakSeconds)
            while DispatchTime.now() < end, !stop.load(ordering: .relaxed) {
                sleep(UInt32(min(sampleSeconds, soakSeconds)))
                samples.append(try Self.resident(runDir))
                if !json { print("  \(Int(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)) s: \(cycles.load(ordering: .relaxed)) cycles, resident \(samples.last!) KiB") }
                fflush(nil)
            }
            stop.store(true, ordering: .relaxed)
            finished.wait()
            if let error = failure.withLock({ $0 }) { throw error }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            let result = Soak(seconds: seconds, clients: clients, cycles: cycles.load(ordering: .relaxed), residentKibStart: samples.first!,
                              residentKibEnd: samples.last!, residentKibMax: samples.max()!, samplesKib: samples)
            report(result, text: "soak: \(result.cycles) cycles by \(clients) clients in \(Int(seconds)) s; resident \(result.residentKibStart) → \(result.residentKibEnd) KiB (max \(result.residentKibMax))")
        }


        /// Waits --hold-seconds with the leases held; on a block device,
        /// reports what the device saw meanwhile (every host's I/O to it).
        func measureHolding() throws {
            let before = BlockDeviceStatistics.read(path: layout.path)
            sleep(UInt32(holdSeconds))
            guard let before, let after = BlockDeviceStatistics.read(path: layout.path) else { return }
            let s = Double(holdSeconds)
            let t = Traffic(leases: resources, seconds: holdSeconds, readsPerSecond: Double(after.reads - before.reads) / s,
                            bytesReadPerSecond: Double(after.bytesRead - before.bytesRead) / s,
                            writesPerSecond: Double(after.writes - before.writes) / s,
                            bytesWrittenPerSecond: Double(after.bytesWritten - before.bytesWritten) / s)
            report(t, text: "holding \(resources) leases for \(holdSeconds) s, the device saw \(Format.fixed(t.readsPerSecond, 1)) reads/s (\(Format.fixed(t.bytesReadPerSecond, 0)) B/s), "
                   + "\(Format.fixed(t.writesPerSecond, 1)) writes/s (\(Format.fixed(t.bytesWrittenPerSecond, 0)) B/s)")
        }

        /// The daemon's resident size, from its status.
        static func resident(_ runDir: String?) throws -> Int {
            guard let kib = try daemonStatus(try TenureConnection(runDir: runDir))["resident_kib"] as? Int, kib > 0 else {
                throw TenureError(.protocolError, "The daemon's status carries no resident size.", remedy: "Use a daemon of the same Tenure version.")
            }
            return kib
        }
    }
}

/// A bench command's output: one line per measurement, or one JSON object with --json.
protocol BenchReporting {
    var json: Bool { get }
}

extension BenchReporting {
    func report<T: Encodable>(_ value: T, text: String) {
        print(json ? Terminal.json(value) : text)
        fflush(nil)
    }
}

/// The daemon's status (JSON) as an object.
func daemonStatus(_ connection: TenureConnection) throws -> [String: Any] {
    let text = try connection.status()
    guard let object = (try? JSON.value(text)) as? [String: Any] else {
        throw TenureError(.protocolError, "The daemon's status is not a JSON object.", remedy: "Use a daemon of the same Tenure version.")
    }
    return object
}

/// Where the bench's resources are: `tenure direct format`'s layout, R0, R1, …
/// from --first-offset, one --align apart, in --lockspace on --path.
struct BenchLayout: ParsableArguments {
    @Option(help: "The lockspace the daemon has joined.")
    var lockspace: String
    @Option(help: "The lease file or device.")
    var path: String
    @Option(name: .customLong("first-offset"), help: ArgumentHelp("Offset of R0 (default 1M).", valueName: "OFFSET"))
    var firstOffset = "1M"
    @Option(help: ArgumentHelp("Area size of the layout (default 1M).", valueName: "SIZE"))
    var align = "1M"

    /// Resource i's string, LOCKSPACE:Ri:PATH:OFFSET.
    func resourceNamer() throws -> @Sendable (Int) -> String {
        guard let first = LeaseStringSyntax.parseSize(firstOffset), let step = LeaseStringSyntax.parseSize(align), step > 0 else {
            throw TenureError(.invalidArgument, "--first-offset \(firstOffset) or --align \(align) is not a size.", remedy: "Write bytes, e.g. 1M.")
        }
        let path = LeaseStringSyntax.escape(self.path), lockspace = self.lockspace
        return { i in "\(lockspace):R\(i):\(path):\(first + UInt64(i) * step)" }
    }
}

/// A block device's counters from /sys/dev/block/MAJOR:MINOR/stat (all I/O
/// to it, by every process), or nil for a path that is not a block device.
struct BlockDeviceStatistics {
    var reads: Int, bytesRead: Int, writes: Int, bytesWritten: Int

    static func read(path: String) -> BlockDeviceStatistics? {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFBLK else { return nil }
        let major = (st.st_rdev >> 8) & 0xfff | ((st.st_rdev >> 32) & ~0xfff)
        let minor = (st.st_rdev & 0xff) | ((st.st_rdev >> 12) & ~0xff)
        guard let text = try? String(contentsOfFile: "/sys/dev/block/\(major):\(minor)/stat", encoding: .utf8) else { return nil }
        let v = text.split(separator: " ").compactMap { Int($0) }
        guard v.count >= 7 else { return nil }
        return BlockDeviceStatistics(reads: v[0], bytesRead: v[2] * 512, writes: v[4], bytesWritten: v[6] * 512)
    }
}

extension Bench {
    struct LockspaceCosts: AsyncParsableCommand, BenchReporting {
        static let configuration = CommandConfiguration(
            commandName: "lockspace",
            abstract: "The time to join a lockspace, then the I/O of each renewal while idle.",
            discussion: """
            Joins -s LOCKSPACE through the daemon (timed: the delta-lease \
            algorithm waits 2 × io_timeout after its write), watches it renew \
            for --idle-seconds, and reports the bytes and I/Os per renewal by the \
            daemon's own counters of its renewal handle and, on a block device, \
            by the device's statistics (everything any process did to it). \
            Leaves the lockspace at the end unless --stay.

            Example:
              tenure bench lockspace -s B:1:/dev/loop0:0 --idle-seconds 60
            """
        )

        @Option(name: .customShort("s"), help: ArgumentHelp("The lockspace to join, NAME:HOST_ID:PATH:OFFSET.", valueName: "LOCKSPACE"))
        var lockspace: String
        @Option(name: .customLong("idle-seconds"), help: "How long to watch the renewals (0: join only).")
        var idleSeconds = 60
        @Flag(help: "Stay joined at the end.")
        var stay = false
        @Flag(help: "One JSON object per measurement.")
        var json = false
        @OptionGroup var options: ClientOptions

        struct Join: Encodable { let measure = "join"; let seconds: Double }
        struct Renewal: Encodable {
            let measure = "idle_renewal"; let seconds: Int; let renewals: Int
            let engineBytesReadPerRenewal: Double; let engineBytesWrittenPerRenewal: Double; let engineIosPerRenewal: Double
            let deviceBytesReadPerRenewal: Double?; let deviceBytesWrittenPerRenewal: Double?; let deviceIosPerRenewal: Double?
        }

        func run() async throws {
            try await reportingErrors {
                let spec = try LockspaceSpec(parsing: lockspace)
                let connection = try options.connect()
                let start = DispatchTime.now().uptimeNanoseconds
                _ = try connection.addLockspace(lockspace)
                let join = Join(seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                report(join, text: "joined \(spec.name) in \(Format.fixed(join.seconds, 3)) s")
                if idleSeconds > 0 {
                    // Each sample on a connection of its own: the daemon closes one
                    // that sat idle longer than Timeouts.idleConnection.
                    let (renewals0, io0) = try counters(try options.connect(), spec.name.description)
                    let device0 = BlockDeviceStatistics.read(path: spec.disk.path)
                    try await Task.sleep(for: .seconds(idleSeconds))
                    let (renewals1, io1) = try counters(try options.connect(), spec.name.description)
                    let device1 = BlockDeviceStatistics.read(path: spec.disk.path)
                    let n = Double(max(renewals1 - renewals0, 1))
                    let engine = (io1.0 - io0.0, io1.1 - io0.1, io1.2 - io0.2 + io1.3 - io0.3)
                    let device = device0.flatMap { d0 in device1.map { d1 in (d1.bytesRead - d0.bytesRead, d1.bytesWritten - d0.bytesWritten, d1.reads - d0.reads + d1.writes - d0.writes) } }
                    let r = Renewal(seconds: idleSeconds, renewals: renewals1 - renewals0,
                                    engineBytesReadPerRenewal: Double(engine.0) / n, engineBytesWrittenPerRenewal: Double(engine.1) / n,
                                    engineIosPerRenewal: Double(engine.2) / n,
                                    deviceBytesReadPerRenewal: device.map { Double($0.0) / n }, deviceBytesWrittenPerRenewal: device.map { Double($0.1) / n },
                                    deviceIosPerRenewal: device.map { Double($0.2) / n })
                    report(r, text: "\(r.renewals) renewals in \(idleSeconds) s: \(Format.fixed(r.engineBytesReadPerRenewal, 0)) B read, "
                           + "\(Format.fixed(r.engineBytesWrittenPerRenewal, 0)) B written, \(Format.fixed(r.engineIosPerRenewal, 1)) I/Os per renewal (daemon's counters)"
                           + (device.map { _ in "; the device saw \(Format.fixed(r.deviceBytesReadPerRenewal!, 0)) B read, "
                               + "\(Format.fixed(r.deviceBytesWrittenPerRenewal!, 0)) B written, \(Format.fixed(r.deviceIosPerRenewal!, 1)) I/Os per renewal" } ?? ""))
                }
                if !stay { try options.connect().removeLockspace(spec.name.description) }
            }
        }

        /// Renewals and the renewal handle's (bytes read, bytes written, reads, writes), from status.
        func counters(_ connection: TenureConnection, _ name: String) throws -> (Int, (Int, Int, Int, Int)) {
            guard let space = (try daemonStatus(connection)["lockspaces"] as? [[String: Any]])?.first(where: { $0["name"] as? String == name }),
                  let renewals = space["renewals"] as? Int, let io = space["renewal_io"] as? [String: Int] else {
                throw TenureError(.protocolError, "The daemon's status does not show lockspace \(name) with its renewal counters.",
                                  remedy: "Use a daemon of the same Tenure version.")
            }
            return (renewals, (io["bytes_read"] ?? 0, io["bytes_written"] ?? 0, io["reads"] ?? 0, io["writes"] ?? 0))
        }

    }
}
