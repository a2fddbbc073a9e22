import Dispatch
import Glibc
import Synchronization
import Testing
import TenureIO
import TenureSyscall

/// A trait for tests whose bodies block their thread: they run real
/// processes and wait for them, read pipes, sleep, wait on semaphores or
/// sockets, or compute for seconds.
///
/// Swift Testing runs every test body as a task on the cooperative pool,
/// which has one thread per core: two on the machines CI runs on. A body
/// that blocks there takes a thread from every other test in the process;
/// two of them stall the rest (a pure in-memory ManualClock test once took
/// 206 s behind the CLI suites). With this trait the body, and the tasks it
/// starts, run on ``BlockingExecutor``: a thread of its own for as long as
/// it runs.
///
/// Every suite or test marked with it also checks the ``PoolWatch``: if the
/// cooperative pool went unscheduled for longer than ``PoolWatch/stallBound``
/// while it ran, something still blocks the pool, and the test fails
/// saying so.
public struct OwnThreads: SuiteTrait, TestTrait, TestScoping {
    /// Where the bodies run: ``BlockingExecutor/shared`` (a thread per
    /// concurrent job), or for bodies that compute for seconds (simulations,
    /// engine runs over thousands of hosts) ``ComputeThread/shared``: one
    /// thread for all of them, so together they take one core at most and
    /// leave the other to the pool and to the real daemons of other tests.
    public let executor: any TaskExecutor

    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> OwnThreads? {
        // Each test case's body, not the suite around it: every body gets the scope once.
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        PoolWatch.shared.start()
        let started = ContinuousClock.now
        defer { PoolWatch.shared.reportStalls(since: started) }
        try await withTaskExecutorPreference(executor) {
            try await function()
        }
    }
}

extension Trait where Self == OwnThreads {
    /// Runs each test body on a thread of its own (``OwnThreads``).
    public static var ownThreads: Self { OwnThreads(executor: BlockingExecutor.shared) }

    /// ``ownThreads`` for bodies that compute for seconds and never block:
    /// they take turns on one thread (``ComputeThread``).
    public static var cpuBound: Self { OwnThreads(executor: ComputeThread.shared) }
}

/// One thread that runs the jobs of ``Trait/cpuBound`` tests in turn.
/// Their code must not block (a job waiting for another job of this thread
/// would wait for ever); it only computes and awaits.
public final class ComputeThread: TaskExecutor, @unchecked Sendable {
    public static let shared = ComputeThread()

    private let jobs = Mutex<[UnownedJob]>([])
    private let ready = DispatchSemaphore(value: 0)

    private init() {
        try! DetachedThread.start(name: "test-compute", for: "the compute thread") { [self] in
            // Its jobs only compute: a blocking call here is a test's bug.
            ThreadRole.assign(.mustNotBlock)
            let executor = asUnownedTaskExecutor()
            while true {
                ready.wait()
                let job = jobs.withLock { $0.removeFirst() }
                job.runSynchronously(on: executor)
            }
        }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        jobs.withLock { $0.append(job) }
        ready.signal()
    }
}

/// Records an issue when the caller may not block its thread (a test body
/// that should have the ``OwnThreads`` trait); the blocking call goes on.
public func expectMayBlock(_ what: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation) {
    if let refusal = ThreadRole.refusal(what()) {
        Issue.record(Comment(rawValue: refusal), sourceLocation: sourceLocation)
    }
}

/// A watchdog for the cooperative pool: a task on the pool must run every
/// ``period``; a thread of its own notes every time it did not for longer
/// than ``stallBound``. Only a blocked pool misses it by that much: on a
/// busy machine a runnable thread waits milliseconds for a core, not
/// seconds, and what computes for long runs off the pool (``Trait/cpuBound``).
/// The bound leaves room for the short computations that stay on the pool,
/// which take several times their CPU time when the suite's daemons and
/// processes crowd two cores (the format tests' roundtrips took 7 s so,
/// before they moved).
public final class PoolWatch: Sendable {
    /// The test process's watch, started by the first ``OwnThreads`` test.
    public static let shared = PoolWatch(period: .milliseconds(100), stallBound: .seconds(15))

    /// How often the heartbeat task on the pool runs.
    public let period: Duration
    /// How long the heartbeat may be late before it is a stall.
    public let stallBound: Duration

    /// A time the heartbeat went unscheduled for longer than ``stallBound``.
    public struct Stall: Sendable, CustomStringConvertible {
        public let from: ContinuousClock.Instant
        public let until: ContinuousClock.Instant
        public var description: String {
            let tenths = (until - from) / .milliseconds(100)
            return "\(Int(tenths) / 10).\(Int(tenths) % 10) s"
        }
    }

    private struct State {
        var started = false
        var stopped = false
        var lastBeat = ContinuousClock.now
        var stalls: [Stall] = []
        /// The stall going on now, if the heartbeat is late.
        var lateSince: ContinuousClock.Instant?
    }

    private let state = Mutex(State())

    public init(period: Duration, stallBound: Duration) {
        self.period = period
        self.stallBound = stallBound
    }

    /// Starts the heartbeat and its checker, once.
    public func start() {
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            if !s.started { s.lastBeat = .now }
            return !s.started
        }
        guard first else { return }
        // No executor preference: the heartbeat runs where ordinary tasks run.
        Task.detached { [self] in
            while !state.withLock({ $0.stopped }) {
                beat()
                try? await Task.sleep(for: period)
            }
        }
        try! DetachedThread.start(name: "pool-watch", for: "the pool watch") { [self] in
            while !state.withLock({ $0.stopped }) {
                usleep(UInt32(min(period, stallBound) / .microseconds(1)))
                check()
            }
        }
    }

    /// Stops the heartbeat and the checker (a watch of a test's own).
    public func stop() { state.withLock { $0.stopped = true } }

    private func beat() {
        state.withLock { s in
            let now = ContinuousClock.now
            if let since = s.lateSince {
                s.stalls.append(Stall(from: since, until: now))
                s.lateSince = nil
            }
            s.lastBeat = now
        }
    }

    private func check() {
        state.withLock { s in
            if s.lateSince == nil, ContinuousClock.now - s.lastBeat > period + stallBound {
                s.lateSince = s.lastBeat + period
            }
        }
    }

    /// The stalls that ended, or go on, after `instant`.
    public func stalls(since instant: ContinuousClock.Instant) -> [Stall] {
        state.withLock { s in
            s.stalls.filter { $0.until > instant } + (s.lateSince.map { [Stall(from: $0, until: .now)] } ?? [])
        }
    }

    /// Records an issue for every stall since `instant`.
    public func reportStalls(since instant: ContinuousClock.Instant, sourceLocation: SourceLocation = #_sourceLocation) {
        for stall in stalls(since: instant) {
            Issue.record("The cooperative pool ran nothing for \(stall) while this test ran: a task blocks its threads (a blocking call, a semaphore, a sleep, or a long computation in a body without .ownThreads). See ThreadRole.",
                         sourceLocation: sourceLocation)
        }
    }
}
