import CTenureSys
import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// The thread lockspace renewals run on, apart from everything else the
/// daemon does, as sanlock gives each lockspace a thread of its own.
///
/// It is a task executor: a renewal task started with it as its preference
/// (`Task(executorPreference:)`) runs here, and so does the `Lockspace`
/// actor's code that task calls. It is also the renewal path's clock: a
/// sleep is a timer this thread keeps and wakes itself, so nothing on the
/// path waits for a thread of the shared pool. With a real-time priority,
/// the thread runs round-robin at it (SCHED_RR, like sanlock's daemon), and
/// the renewal device's reaper should too (``DirectDevice``'s
/// `realtimePriority`): a busy host cannot then delay a renewal. Only these
/// threads get the priority — clients and their connections stay ordinary,
/// so the daemon cannot starve them.
public final class RenewalThread: TaskExecutor, MonotonicClock, @unchecked Sendable {
    /// The thread's name in ps, top and gdb (at most 15 bytes).
    public static let threadName = "tenure-renew"

    private struct Timer {
        let id: UInt64
        let deadline: MonotonicInstant
        let waiter: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var jobs: [UnownedJob] = []
        var timers: [Timer] = []
        var nextTimer: UInt64 = 0
        var tid: Int32 = 0
        /// The result of asking for the real-time priority: nil while not asked.
        var realtime: Result<Void, TenureError>?
    }

    // State guarded by `mutex`; `cond` wakes the thread for a job or an earlier timer.
    private var state = State()
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let clock = SystemMonotonicClock.shared
    private let priority: Int32?

    /// Starts the thread. With `realtimePriority`, it asks for SCHED_RR at
    /// that priority first; whether it got it is ``realtimeOutcome``.
    public init(realtimePriority: Int32?) throws(TenureError) {
        priority = realtimePriority
        pthread_mutex_init(mutex, nil)
        // Timers are CLOCK_MONOTONIC instants: wait on the same clock.
        initialiseMonotonicCondition(cond)
        try DetachedThread.start(name: Self.threadName, for: Self.threadName) { self.run() }
        // Wait until the thread has named itself and asked for its priority.
        while locked({ $0.realtime == nil && priority != nil || $0.tid == 0 }) { usleep(100) }
    }

    /// The thread runs for the life of the process (the daemon has one).
    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    /// Whether the thread got its real-time priority (nil: none was asked for).
    public var realtimeOutcome: Result<Void, TenureError>? { locked { $0.realtime } }

    /// The thread's kernel id (as in /proc/self/task).
    public var threadID: Int32 { locked { $0.tid } }

    /// The calling thread's kernel id, to tell where code runs.
    public static var callerThreadID: Int32 { tenure_current_tid() }

    /// Whether the thread runs at a real-time policy now (for status).
    public var isRealtime: Bool {
        let policy = tenure_thread_policy(locked { $0.tid })
        return policy == SCHED_RR || policy == SCHED_FIFO
    }

    // MARK: TaskExecutor

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        locked { $0.jobs.append(unowned) }
        pthread_cond_signal(cond)
    }

    // MARK: MonotonicClock

    public func now() -> MonotonicInstant { clock.now() }

    /// Sleeps until `deadline`, woken by this thread; throws
    /// `CancellationError` when the task is cancelled first.
    public func sleep(until deadline: MonotonicInstant) async throws {
        if Task.isCancelled { throw CancellationError() }
        if deadline <= now() { return }
        let id = locked { s -> UInt64 in
            s.nextTimer += 1
            return s.nextTimer
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
                locked { $0.timers.append(Timer(id: id, deadline: deadline, waiter: waiter)) }
                // A cancel that came before the timer was there found nothing to end.
                if Task.isCancelled, let early = takeTimer(id) {
                    early.waiter.resume(throwing: CancellationError())
                    return
                }
                pthread_cond_signal(cond)
            }
        } onCancel: {
            self.takeTimer(id)?.waiter.resume(throwing: CancellationError())
        }
    }

    /// Removes timer `id`; whoever gets it resumes it (exactly once).
    private func takeTimer(_ id: UInt64) -> Timer? {
        locked { s -> Timer? in
            guard let index = s.timers.firstIndex(where: { $0.id == id }) else { return nil }
            return s.timers.remove(at: index)
        }
    }

    // MARK: The thread

    private func run() {
        ThreadRole.assign(.mustNotBlock)
        var outcome: Result<Void, TenureError>?
        if let priority {
            do {
                try Syscall.run(SyscallContext("sched_setscheduler(SCHED_RR)", path: Self.threadName)) { tenure_set_realtime_current_thread(priority) }
                outcome = .success(())
            } catch {
                outcome = .failure(error)
            }
        }
        let tid = tenure_current_tid()
        locked { s in
            s.tid = tid
            s.realtime = outcome
        }
        let executor = asUnownedTaskExecutor()
        while true {
            let (jobs, due) = nextWork()
            for timer in due { timer.waiter.resume() }
            for job in jobs { job.runSynchronously(on: executor) }
        }
    }

    /// Waits for jobs or due timers and takes them.
    private func nextWork() -> ([UnownedJob], [Timer]) {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while true {
            let now = clock.now()
            let due = state.timers.filter { $0.deadline <= now }
            if !state.jobs.isEmpty || !due.isEmpty {
                state.timers.removeAll { $0.deadline <= now }
                defer { state.jobs = [] }
                return (state.jobs, due.sorted { $0.deadline < $1.deadline })
            }
            if let earliest = state.timers.map(\.deadline).min() {
                var until = timespec(tv_sec: Int(earliest.nanoseconds / 1_000_000_000), tv_nsec: Int(earliest.nanoseconds % 1_000_000_000))
                _ = pthread_cond_timedwait(cond, mutex, &until)
            } else {
                _ = pthread_cond_wait(cond, mutex)
            }
        }
    }

    private func locked<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&state)
    }
}

/// Initialises `cond` so that its timed waits take CLOCK_MONOTONIC
/// deadlines (the clock every deadline here is on), not wall-clock ones.
func initialiseMonotonicCondition(_ cond: UnsafeMutablePointer<pthread_cond_t>) {
    var attributes = pthread_condattr_t()
    pthread_condattr_init(&attributes)
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
    pthread_cond_init(cond, &attributes)
    pthread_condattr_destroy(&attributes)
}
