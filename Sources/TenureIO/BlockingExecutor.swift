import Glibc
import TenureCore
import TenureSyscall

/// A task executor for async code that blocks its thread: the `tenure`
/// command's work (it waits on the daemon's socket, on child processes, on
/// sleeps), a killpath's reaping, and the tests that run real processes.
///
/// Such code must not run on Swift's cooperative pool (one thread per core,
/// shared by every task of the process; see ``ThreadRole``). Here each job
/// gets a thread of its own for as long as it runs: an idle worker if one
/// waits, a new one otherwise, so a job that blocks never delays another.
/// A worker idle for ``idleSeconds`` ends. The workers' role is
/// ``ThreadRole/Role/mayBlock``.
///
/// Start work here with `Task(executorPreference: BlockingExecutor.shared)`
/// or `withTaskExecutorPreference(BlockingExecutor.shared) { … }`; child
/// tasks and `Task { }` inherit the preference. Actor-isolated code still
/// runs on its actor's executor.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    /// The process's one instance.
    public static let shared = BlockingExecutor()

    /// The workers' name in ps, top and gdb.
    public static let threadName = "tenure-block"
    /// How long a worker waits for a job before it ends.
    public static let idleSeconds = 10

    private struct State {
        var jobs: [UnownedJob] = []
        /// Workers waiting for a job.
        var idle = 0
        var workers = 0
    }

    private var state = State()
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    private init() {
        pthread_mutex_init(mutex, nil)
        initialiseMonotonicCondition(cond)
    }

    /// How many workers exist now (for tests).
    public var workerCount: Int { locked { $0.workers } }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        // Every queued job needs a waiting worker; start one when there are more jobs than those.
        let startWorker = locked { s -> Bool in
            s.jobs.append(job)
            guard s.jobs.count > s.idle else { return false }
            s.workers += 1
            return true
        }
        if startWorker {
            do {
                try DetachedThread.start(name: Self.threadName, for: Self.threadName) { self.work() }
            } catch {
                // No thread to be had (EAGAIN: a thread or memory limit). The job
                // waits for a worker that is busy now, which is slower, not wrong.
                locked { $0.workers -= 1 }
                guard workerCount > 0 else { preconditionFailure("BlockingExecutor: no thread could be started: \(error)") }
            }
        } else {
            pthread_cond_signal(cond)
        }
    }

    /// A worker: takes jobs until none comes for ``idleSeconds``.
    private func work() {
        ThreadRole.assign(.mayBlock)
        let executor = asUnownedTaskExecutor()
        while let job = nextJob() {
            job.runSynchronously(on: executor)
        }
    }

    private func nextJob() -> UnownedJob? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while state.jobs.isEmpty {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            var until = timespec(tv_sec: now.tv_sec + Self.idleSeconds, tv_nsec: now.tv_nsec)
            state.idle += 1
            let rc = pthread_cond_timedwait(cond, mutex, &until)
            state.idle -= 1
            if rc == ETIMEDOUT && state.jobs.isEmpty {
                state.workers -= 1
                return nil
            }
        }
        return state.jobs.removeFirst()
    }

    private func locked<T>(_ body: (inout State) -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body(&state)
    }
}
