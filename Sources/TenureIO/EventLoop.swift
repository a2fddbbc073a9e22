import CTenureSys
import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// The daemon's event loop: one thread that waits in epoll_wait for every
/// descriptor the daemon serves (listening sockets, connections, the
/// completion eventfds of its lease handles) and its timers, and runs the
/// work they wake on the same thread.
///
/// It is the `Daemon` actor's serial executor and the task executor of the
/// requests' tasks (`Task(executorPreference:)`), so a request read off a
/// socket, the daemon's decision, the engine's ballot, the I/O completion
/// that resumes it and the reply all run here, one after another, without
/// a thread switch. Work enqueued from another thread (the renewal thread,
/// a reaper) wakes the loop through its eventfd; work enqueued on the loop
/// is picked up before the loop sleeps again.
///
/// Handlers and timers run on the loop's thread and must not block: a
/// handler that waits for the loop deadlocks it.
public final class EventLoop: SerialExecutor, TaskExecutor, @unchecked Sendable {
    /// The loop's name in ps, top and gdb (at most 15 bytes).
    public static let threadName = "tenure-loop"
    /// The most descriptors one epoll_wait reports (the shim's limit).
    public static let maxEventsPerWait = 64

    /// Rounds of queued work the loop runs before it looks at its
    /// descriptors again: bounds how long a burst of work delays I/O.
    public static let workRoundsPerPoll = 64

    /// What a descriptor's readiness runs, with epoll's event bits.
    public typealias Handler = @Sendable (_ events: UInt32) -> Void

    /// A timer's handle, to cancel it.
    public struct TimerID: Hashable, Sendable {
        let rawValue: UInt64
    }

    /// A watched descriptor's handle, to stop watching it.
    public struct WatchID: Hashable, Sendable {
        let rawValue: UInt64
        let fd: FileDescriptor
    }

    private enum Work {
        case job(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    private struct Timer {
        let deadline: MonotonicInstant
        let fire: @Sendable () -> Void
    }

    private struct State {
        var work: [Work] = []
        var timers: [UInt64: Timer] = [:]
        var handlers: [UInt64: Handler] = [:]
        /// Run at the end of the current round of work (atEndOfRound).
        var endOfRound: [@Sendable () -> Void] = []
        var nextID: UInt64 = 1
        /// The loop is in (or about to enter) epoll_wait with a timeout.
        var sleeping = false
        /// The eventfd was written and not yet drained.
        var wakePending = false
        var thread: pthread_t?
    }

    private let state = Mutex(State())
    private let epoll: FileDescriptor
    private let wake: FileDescriptor
    private let clock = SystemMonotonicClock.shared
    /// The epoll token of the loop's own eventfd.
    private static let wakeToken: UInt64 = 0

    /// Creates the epoll instance and the wake eventfd and starts the thread.
    public init() throws(TenureError) {
        epoll = FileDescriptor(rawValue: try Syscall.run(SyscallContext("epoll_create1", path: Self.threadName)) { tenure_epoll_create() })
        do {
            wake = FileDescriptor(rawValue: try Syscall.run(SyscallContext("eventfd", path: Self.threadName)) { tenure_eventfd() })
        } catch {
            try? Syscall.close(epoll, path: Self.threadName)
            throw error
        }
        do {
            try Syscall.run(SyscallContext("epoll_ctl", path: Self.threadName)) {
                tenure_epoll_watch(epoll.rawValue, wake.rawValue, tenure_EPOLLIN, Self.wakeToken, 0)
            }
            try DetachedThread.start(name: Self.threadName, for: Self.threadName) { self.run() }
        } catch {
            try? Syscall.close(wake, path: Self.threadName)
            try? Syscall.close(epoll, path: Self.threadName)
            throw error
        }
        while state.withLock({ $0.thread == nil }) { usleep(100) }
    }

    /// Whether the caller runs on the loop's thread.
    public var isCurrent: Bool {
        guard let thread = state.withLock({ $0.thread }) else { return false }
        return pthread_equal(thread, pthread_self()) != 0
    }

    // MARK: Executors

    public func enqueue(_ job: consuming ExecutorJob) {
        add(.job(UnownedJob(job)))
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func checkIsolated() {
        precondition(isCurrent, "expected to run on \(Self.threadName)")
    }

    /// Runs `body` on the loop's thread, after the work already queued.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        add(.closure(body))
    }

    /// Runs `body` on the loop's thread at the end of the current round of
    /// work: once the work the loop took together (the requests that
    /// arrived together, the completions reaped together) has run, before
    /// the work that work begot. A device submits there, in one io_submit,
    /// the I/O every request of the round asked for (``DirectDevice``).
    public func atEndOfRound(_ body: @escaping @Sendable () -> Void) {
        changeAndWake { $0.endOfRound.append(body) }
    }

    /// Whether work waits to run on the loop (called on the loop: a handler
    /// that could spin deciding whether it would delay anyone).
    public var hasQueuedWork: Bool {
        state.withLock { !$0.work.isEmpty }
    }

    private func add(_ work: Work) {
        changeAndWake { $0.work.append(work) }
    }

    /// Changes the state, and wakes the loop if it sleeps (one write to the
    /// eventfd per sleep, however many changes).
    private func changeAndWake(_ change: (inout State) -> Void) {
        let wakeUp = state.withLock { state -> Bool in
            change(&state)
            guard state.sleeping, !state.wakePending else { return false }
            state.wakePending = true
            return true
        }
        if wakeUp { signalWake() }
    }

    private func signalWake() {
        var one: UInt64 = 1
        // A full counter (2^64 - 2 wakes unread) cannot happen; EAGAIN would mean it did.
        _ = Glibc.write(wake.rawValue, &one, MemoryLayout<UInt64>.size)
    }

    // MARK: Timers

    /// Runs `fire` on the loop's thread once `deadline` has passed, unless
    /// cancelled first.
    @discardableResult
    public func schedule(at deadline: MonotonicInstant, _ fire: @escaping @Sendable () -> Void) -> TimerID {
        var id: UInt64 = 0
        changeAndWake { state in
            id = state.nextID
            state.nextID += 1
            state.timers[id] = Timer(deadline: deadline, fire: fire)
        }
        return TimerID(rawValue: id)
    }

    /// Cancels a timer; false when it has fired (or is firing) already.
    @discardableResult
    public func cancel(_ timer: TimerID) -> Bool {
        state.withLock { $0.timers.removeValue(forKey: timer.rawValue) != nil }
    }

    /// Sleeps until `deadline` on the loop's clock.
    public func sleep(until deadline: MonotonicInstant) async {
        guard deadline > clock.now() else { return }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            schedule(at: deadline) { done.resume() }
        }
    }

    // MARK: Descriptors

    /// Watches `fd` for `events` (epoll bits: ``EventLoop/readable`` and
    /// the others); `handler` runs on the loop's thread with what is ready.
    /// Edge-triggered (``EventLoop/edgeTriggered``) handlers must drain
    /// the descriptor; level-triggered ones are called while it stays ready.
    public func watch(_ fd: FileDescriptor, events: UInt32, path: String, _ handler: @escaping Handler) throws(TenureError) -> WatchID {
        let id = state.withLock { state -> UInt64 in
            let id = state.nextID
            state.nextID += 1
            state.handlers[id] = handler
            return id
        }
        do {
            try Syscall.run(SyscallContext("epoll_ctl(EPOLL_CTL_ADD)", path: path)) { tenure_epoll_watch(epoll.rawValue, fd.rawValue, events, id, 0) }
        } catch {
            _ = state.withLock { $0.handlers.removeValue(forKey: id) }
            throw error
        }
        return WatchID(rawValue: id, fd: fd)
    }

    /// Stops watching; the handler is not called again, even for events
    /// already taken from the kernel. Call it before closing the descriptor.
    public func unwatch(_ watch: WatchID) {
        _ = state.withLock { $0.handlers.removeValue(forKey: watch.rawValue) }
        // ENOENT/EBADF: the descriptor was closed first, which removed it.
        _ = tenure_epoll_unwatch(epoll.rawValue, watch.fd.rawValue)
    }

    public static var readable: UInt32 { tenure_EPOLLIN }
    public static var writable: UInt32 { tenure_EPOLLOUT }
    public static var failed: UInt32 { tenure_EPOLLERR }
    public static var hungUp: UInt32 { tenure_EPOLLHUP | tenure_EPOLLRDHUP }
    public static var edgeTriggered: UInt32 { tenure_EPOLLET }

    // MARK: The thread

    private func run() {
        ThreadRole.assign(.mustNotBlock)
        let me = pthread_self()
        state.withLock { $0.thread = me }
        let tokens = UnsafeMutablePointer<UInt64>.allocate(capacity: Self.maxEventsPerWait)
        let events = UnsafeMutablePointer<UInt32>.allocate(capacity: Self.maxEventsPerWait)
        let serial = asUnownedSerialExecutor()
        let task = asUnownedTaskExecutor()
        while true {
            // Work begets work (each hop between the daemon's actor and the
            // engine is a job): run it out, up to a bound, before asking
            // epoll, so a request costs one epoll_wait, not one per hop.
            // A round is the work taken at once; its end runs what waited
            // for it (atEndOfRound: the round's I/O, submitted together).
            for _ in 0 ..< Self.workRoundsPerPoll {
                let work = takeWork()
                for item in work {
                    switch item {
                    case .job(let job): job.runSynchronously(isolatedTo: serial, taskExecutor: task)
                    case .closure(let body): body()
                    }
                }
                let ends = takeEndOfRound()
                for body in ends { body() }
                if work.isEmpty && ends.isEmpty { break }
            }
            for fire in takeDueTimers() { fire() }
            let timeout = sleepTimeout()
            let count: Int32
            do {
                count = try Syscall.run(SyscallContext("epoll_wait", path: Self.threadName)) {
                    tenure_epoll_wait(epoll.rawValue, tokens, events, Int32(Self.maxEventsPerWait), timeout)
                }
            } catch {
                // The descriptor and the buffers are the loop's own: a failure is a bug in it.
                preconditionFailure("\(error)")
            }
            state.withLock { $0.sleeping = false }
            for index in 0 ..< Int(count) {
                if tokens[index] == Self.wakeToken {
                    drainWake()
                } else if let handler = state.withLock({ $0.handlers[tokens[index]] }) {
                    handler(events[index])
                }
            }
        }
    }

    private func takeWork() -> [Work] {
        state.withLock { state in
            defer { state.work = [] }
            return state.work
        }
    }

    private func takeEndOfRound() -> [@Sendable () -> Void] {
        state.withLock { state in
            defer { state.endOfRound = [] }
            return state.endOfRound
        }
    }

    private func takeDueTimers() -> [@Sendable () -> Void] {
        let now = clock.now()
        return state.withLock { state in
            let due = state.timers.filter { $0.value.deadline <= now }.sorted { $0.value.deadline < $1.value.deadline }
            for (id, _) in due { state.timers[id] = nil }
            return due.map(\.value.fire)
        }
    }

    /// epoll_wait's timeout in milliseconds: 0 when work is waiting, until
    /// the nearest timer (rounded up), or -1 for none. Marks the loop
    /// sleeping under the same lock, so work added after this wakes it.
    private func sleepTimeout() -> Int32 {
        let now = clock.now()
        return state.withLock { state in
            guard state.work.isEmpty, state.endOfRound.isEmpty else { return 0 }
            state.sleeping = true
            guard let nearest = state.timers.values.map(\.deadline).min() else { return -1 }
            guard nearest > now else { return 0 }
            let nanoseconds = (nearest - now).nanosecondsClamped
            return Int32(clamping: (nanoseconds + 999_999) / 1_000_000)
        }
    }

    private func drainWake() {
        var count: UInt64 = 0
        _ = Glibc.read(wake.rawValue, &count, MemoryLayout<UInt64>.size)
        state.withLock { $0.wakePending = false }
    }
}
