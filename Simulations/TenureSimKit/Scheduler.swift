import Synchronization
import TenureCore

/// SplitMix64: small, fast, and the same sequence on every platform for a
/// seed. Every choice of a simulation comes from one of these.
public struct SimRandom: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound (bound > 0), without modulo bias worth caring about at 64 bits.
    public mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0, "empty range")
        return next() % bound
    }

    public mutating func below(_ bound: Int) -> Int { Int(below(UInt64(bound))) }

    /// True with probability `p` (0...1).
    public mutating func chance(_ p: Double) -> Bool {
        p > 0 && Double(next() >> 11) / Double(1 << 53) < p
    }

    /// Uniform in `range`.
    public mutating func duration(in range: ClosedRange<Duration>) -> Duration {
        let low = range.lowerBound.nanosecondsClamped, high = range.upperBound.nanosecondsClamped
        return .nanoseconds(Int64(low + below(high - low + 1)))
    }

    /// A new generator whose sequence is independent of this one's.
    public mutating func fork() -> SimRandom { SimRandom(seed: next()) }
}

/// A `SimRandom` shared by the closures of one host (EngineContext.random,
/// the fault source). Only the scheduler's thread touches it.
final class SharedRandom: Sendable {
    private let state: Mutex<SimRandom>
    init(_ random: SimRandom) { state = Mutex(random) }
    func withRandom<T>(_ body: (inout SimRandom) -> T) -> T { state.withLock { body(&$0) } }
}

/// The deterministic executor of a simulation: every task of every simulated
/// host runs here, one job at a time, on the thread that calls ``run(until:onStep:)``.
///
/// Which ready job runs next is drawn from the seed, so the interleaving of
/// concurrent operations is explored, and the same seed replays it exactly.
/// Time is virtual: when no job is ready, time jumps to the earliest timer.
/// Engine code reaches neither the global executor nor the real clock: its
/// tasks are created with this executor as their preference, default actors
/// run on it, and the hosts' clocks (``SimClock``) sleep on its timers.
public final class SimScheduler: SerialExecutor, TaskExecutor, @unchecked Sendable {
    private struct Timer {
        let deadline: UInt64
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var ready: [UnownedJob] = []
        var timers: [Timer] = []
        var nextTimerID: UInt64 = 0
        var now: UInt64 = 0
        var random: SimRandom
    }

    private let state: Mutex<State>
    /// Jobs run so far: the simulation's steps.
    public private(set) var steps: UInt64 = 0

    public init(random: SimRandom) {
        state = Mutex(State(random: random))
    }

    /// Global virtual time in nanoseconds since the simulation started.
    public var now: UInt64 { state.withLock { $0.now } }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        state.withLock { $0.ready.append(unowned) }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Starts `body` as a task that runs on this scheduler.
    @discardableResult
    public func spawn<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> Task<T, Never> {
        Task(executorPreference: self, operation: body)
    }

    /// Suspends the calling task for `duration` of true (global) time: for
    /// the simulation's own timers (chaos, reboots), which no host clock drives.
    func sleep(for duration: Duration) async throws {
        try await sleep(untilGlobal: now + duration.nanosecondsClamped)
    }

    /// Suspends the calling task until global time `deadline`.
    func sleep(untilGlobal deadline: UInt64) async throws {
        try Task.checkCancellation()
        let id = state.withLock { s -> UInt64 in
            s.nextTimerID += 1
            return s.nextTimerID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let immediate: Bool? = state.withLock { s in
                    if Task.isCancelled { return false }
                    if deadline <= s.now { return true }
                    let timer = Timer(deadline: deadline, id: id, continuation: continuation)
                    // Kept sorted by (deadline, id): the earliest is last, so taking it is O(1).
                    let index = s.timers.firstIndex { ($0.deadline, $0.id) < (deadline, id) } ?? s.timers.count
                    s.timers.insert(timer, at: index)
                    return nil
                }
                switch immediate {
                case true?: continuation.resume()
                case false?: continuation.resume(throwing: CancellationError())
                case nil: break
                }
            }
        } onCancel: {
            let timer = state.withLock { s -> Timer? in
                guard let index = s.timers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.timers.remove(at: index)
            }
            timer?.continuation.resume(throwing: CancellationError())
        }
    }

    /// What ``run(until:onStep:)`` stopped for.
    public enum Stop: Equatable, Sendable {
        /// `onStep` asked to stop.
        case asked
        /// Global time reached the limit with timers left.
        case timeLimit
        /// Nothing is ready and no timer is set: every task finished or is stuck.
        case idle
    }

    /// Runs ready jobs in seeded order, advancing time to the next timer when
    /// none is ready, until `onStep` returns false, time would pass `limit`,
    /// or nothing is left. `onStep` runs after every job and every time jump.
    @discardableResult
    public func run(until limit: UInt64, onStep: () -> Bool) -> Stop {
        while true {
            enum Next { case job(UnownedJob), timer(Timer), idle, timeLimit }
            let next = state.withLock { s -> Next in
                if !s.ready.isEmpty {
                    let index = s.random.below(s.ready.count)
                    s.ready.swapAt(index, s.ready.count - 1)
                    return .job(s.ready.removeLast())
                }
                guard let earliest = s.timers.last else { return .idle }
                guard earliest.deadline <= limit else {
                    s.now = limit
                    return .timeLimit
                }
                s.timers.removeLast()
                s.now = max(s.now, earliest.deadline)
                return .timer(earliest)
            }
            switch next {
            case .job(let job):
                steps += 1
                job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
            case .timer(let timer):
                timer.continuation.resume()
            case .idle:
                return .idle
            case .timeLimit:
                return .timeLimit
            }
            if !onStep() { return .asked }
        }
    }
}

/// A host's monotonic clock in a simulation: its own boot offset and a rate
/// that drifts from true time by at most the simulation's stated bound.
/// Sleeping converts the host's deadline to global time and waits on the
/// scheduler's timers.
public final class SimClock: MonotonicClock {
    let scheduler: SimScheduler
    /// The host clock's reading at global time 0.
    let offsetNanoseconds: UInt64
    /// Host seconds per true second: 1 ± drift.
    let rate: Double

    init(scheduler: SimScheduler, offsetNanoseconds: UInt64, rate: Double) {
        precondition(rate > 0.5 && rate < 2, "an absurd clock rate")
        self.scheduler = scheduler
        self.offsetNanoseconds = offsetNanoseconds
        self.rate = rate
    }

    /// The host reading at global time `global`.
    func reading(atGlobal global: UInt64) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: offsetNanoseconds + UInt64((Double(global) * rate).rounded(.down)))
    }

    /// The earliest global time at which this clock reads at least `instant`.
    func globalTime(of instant: MonotonicInstant) -> UInt64 {
        guard instant.nanoseconds > offsetNanoseconds else { return 0 }
        var global = UInt64((Double(instant.nanoseconds - offsetNanoseconds) / rate).rounded(.up))
        while reading(atGlobal: global) < instant { global += 1 }
        return global
    }

    public func now() -> MonotonicInstant { reading(atGlobal: scheduler.now) }

    public func sleep(until deadline: MonotonicInstant) async throws {
        try await scheduler.sleep(untilGlobal: globalTime(of: deadline))
    }
}
