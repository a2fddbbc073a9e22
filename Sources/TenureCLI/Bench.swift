import ArgumentParser
import Foundation
import Synchronization
import TenureClient
import TenureCore
import TenureFormat

/// `tenure bench`: measurements through the running daemon, as a user's
/// process sees them. Speed is measured here, never asserted in tests.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Tenure through a running daemon (acquire + release cycles).",
        subcommands: [AcquireCycles.self]
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

        @Option(help: "The lockspace the daemon has joined.")
        var lockspace: String
        @Option(help: "The lease file or device.")
        var path: String
        @Option(name: .customLong("first-offset"), help: ArgumentHelp("Offset of R0 (default 1M).", valueName: "OFFSET"))
        var firstOffset = "1M"
        @Option(help: ArgumentHelp("Area size of the layout (default 1M).", valueName: "SIZE"))
        var align = "1M"
        @Option(help: "How many resources R0… exist (at least --clients).")
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
        }

        func run() async throws {
            try await reportingErrors {
                guard let first = LeaseStringSyntax.parseSize(firstOffset), let step = LeaseStringSyntax.parseSize(align), step > 0 else {
                    throw TenureError(.invalidArgument, "--first-offset \(firstOffset) or --align \(align) is not a size.", remedy: "Write bytes, e.g. 1M.")
                }
                let path = LeaseStringSyntax.escape(self.path), lockspace = self.lockspace
                let resource: @Sendable (Int) -> String = { i in "\(lockspace):R\(i):\(path):\(first + UInt64(i) * step)" }
                for count in clients == 1 ? [1] : [1, clients] {
                    let m = try measure(clients: count, resource: resource)
                    if json {
                        print(Terminal.json(m))
                    } else {
                        print(String(format: "%3d client%@: %6d cycles in %.2f s = %8.1f cycles/s, p50 %.3f ms, p99 %.3f ms",
                                     m.clients, m.clients == 1 ? " " : "s", m.cycles, m.seconds, m.cyclesPerSecond, m.p50Ms, m.p99Ms))
                    }
                    fflush(nil)
                }
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
                Thread {
                    body(i)
                    done.leave()
                }.start()
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
