import Synchronization
import TenureCore

/// A ``MonotonicClock`` on which time moves only when the test moves it.
///
/// Manual mode (the default): ``sleep(until:)`` suspends the calling task
/// until a test calls ``advance(by:)``, ``advance(to:)`` or
/// ``advanceToNextDeadline()`` past its deadline. A test starts an operation
/// in a `Task`, waits with ``waitForSleepers(_:)`` until it is asleep, then
/// advances:
///
/// ```swift
/// let clock = ManualClock()
/// let join = Task { try await lockspace.join(clock: clock) }
/// try await clock.waitForSleepers(1)   // the join is waiting 2 × io_timeout
/// clock.advance(by: .seconds(20))
/// try await join.value
/// ```
///
/// An advance resumes the sleepers it makes due in deadline order (ties in
/// the order they fell asleep), and time jumps straight to the target: a task
/// that sleeps in a loop wakes once per advance, not once per period it
/// skipped. Resuming is not running: on the global concurrent executor the
/// resumed tasks run in parallel, and `advance` returns before they have run.
/// To step a periodic task, advance one period at a time and wait for it to
/// fall asleep again.
///
/// Auto-advance mode (`ManualClock(autoAdvance: true)`): ``sleep(until:)``
/// moves now forward to the deadline (never backwards), yields once and
/// returns. It is virtual time for single-flow unit tests in which an
/// operation sleeps (a join waiting 2 × io_timeout) that the test does not
/// want to drive; nobody is ever suspended. It is not a scheduler: two tasks
/// sleeping concurrently each move the clock when they happen to run, in no
/// defined order. The deterministic simulator is the tool for that.
///
/// Cancelling a sleeping task resumes it at once with `CancellationError`;
/// time does not move.
public final class ManualClock: MonotonicClock {
    /// 1,000 s: late enough that a timestamp written from it is never 0
    /// (0 on disk means "free").
    public static let defaultStart = MonotonicInstant(nanoseconds: 1_000 * 1_000_000_000)

    /// Whether ``sleep(until:)`` moves time itself instead of suspending.
    public let autoAdvance: Bool

    private let state: Mutex<State>

    private struct Sleeper {
        let id: UInt64
        let deadline: MonotonicInstant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct Waiter {
        let id: UInt64
        let count: Int
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now: MonotonicInstant
        var sleepers: [Sleeper] = []
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0

        mutating func makeID() -> UInt64 {
            nextID += 1
            return nextID
        }

        /// Moves now to `target` and takes every sleeper due by then, in wake order.
        /// The one rule of moving the clock: forward, or not at all.
        func mayMove(to target: MonotonicInstant) -> Bool { target >= now }

        mutating func advance(to target: MonotonicInstant) -> [CheckedContinuation<Void, any Error>] {
            precondition(mayMove(to: target), "ManualClock cannot go backwards: from \(now) to \(target)")
            now = target
            let due = sleepers.filter { $0.deadline <= target }
                .sorted { ($0.deadline, $0.id) < ($1.deadline, $1.id) }
            sleepers.removeAll { $0.deadline <= target }
            return due.map(\.continuation)
        }
    }

    /// A clock reading `start` until it is moved.
    public init(start: MonotonicInstant = ManualClock.defaultStart, autoAdvance: Bool = false) {
        self.autoAdvance = autoAdvance
        self.state = Mutex(State(now: start))
    }

    public func now() -> MonotonicInstant {
        state.withLock { $0.now }
    }

    // MARK: Moving time

    /// Moves time forward by `duration` and resumes every sleeper now due.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "ManualClock cannot go backwards: advance by \(duration)")
        resume(state.withLock { s in s.advance(to: s.now + duration) })
    }

    /// Whether ``advance(to:)`` may move to `instant`: forward, or not at
    /// all. Moving backwards is a programmer error (a precondition).
    public func mayAdvance(to instant: MonotonicInstant) -> Bool { state.withLock { $0.mayMove(to: instant) } }

    /// Moves time forward to `instant` and resumes every sleeper now due.
    /// Moving backwards is a programmer error.
    public func advance(to instant: MonotonicInstant) {
        resume(state.withLock { s in s.advance(to: instant) })
    }

    /// Moves time to the earliest sleeper's deadline and resumes the sleepers
    /// due then. Returns the new now, or `nil` (time unmoved) if nobody sleeps.
    @discardableResult
    public func advanceToNextDeadline() -> MonotonicInstant? {
        let (instant, due) = state.withLock { s -> (MonotonicInstant?, [CheckedContinuation<Void, any Error>]) in
            guard let next = s.sleepers.map(\.deadline).min() else { return (nil, []) }
            return (next, s.advance(to: max(next, s.now)))
        }
        resume(due)
        return instant
    }

    private func resume(_ continuations: [CheckedContinuation<Void, any Error>]) {
        for continuation in continuations { continuation.resume() }
    }

    // MARK: Sleeping

    /// How many tasks are suspended in ``sleep(until:)`` right now.
    public var sleeperCount: Int {
        state.withLock { $0.sleepers.count }
    }

    /// The earliest deadline of a suspended sleeper, if any.
    public var nextDeadline: MonotonicInstant? {
        state.withLock { s in s.sleepers.map(\.deadline).min() }
    }

    /// Suspends until time reaches `deadline` (manual mode) or moves time
    /// there (auto-advance mode). Returns at once if `deadline` has passed.
    /// Throws `CancellationError` if the task is or becomes cancelled while
    /// waiting.
    public func sleep(until deadline: MonotonicInstant) async throws {
        try Task.checkCancellation()
        if autoAdvance {
            state.withLock { s in
                if deadline > s.now { s.now = deadline }
            }
            await Task.yield()
            return
        }
        let id = state.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Next { case cancel, resume, wait([CheckedContinuation<Void, any Error>]) }
                let next = state.withLock { s -> Next in
                    // The cancellation handler may have run before this registration;
                    // the task's flag is set before it runs, so checking it here under
                    // the lock closes the gap.
                    if Task.isCancelled { return .cancel }
                    if deadline <= s.now { return .resume }
                    s.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    let count = s.sleepers.count
                    let ready = s.waiters.filter { $0.count <= count }.map(\.continuation)
                    s.waiters.removeAll { $0.count <= count }
                    return .wait(ready)
                }
                switch next {
                case .cancel: continuation.resume(throwing: CancellationError())
                case .resume: continuation.resume()
                case .wait(let ready): resume(ready)
                }
            }
        } onCancel: {
            let continuation = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let index = s.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return s.sleepers.remove(at: index).continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }

    /// Returns once at least `count` tasks are suspended in ``sleep(until:)``
    /// at the same time, so a test knows an operation it started is waiting
    /// on the clock before it advances. Throws `CancellationError` if the
    /// waiting task is cancelled. Never returns in auto-advance mode unless
    /// `count` is 0, since nobody sleeps there.
    public func waitForSleepers(_ count: Int) async throws {
        try Task.checkCancellation()
        let id = state.withLock { $0.makeID() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Next { case cancel, resume, wait }
                let next = state.withLock { s -> Next in
                    if Task.isCancelled { return .cancel }
                    if s.sleepers.count >= count { return .resume }
                    s.waiters.append(Waiter(id: id, count: count, continuation: continuation))
                    return .wait
                }
                switch next {
                case .cancel: continuation.resume(throwing: CancellationError())
                case .resume: continuation.resume()
                case .wait: break
                }
            }
        } onCancel: {
            let continuation = state.withLock { s -> CheckedContinuation<Void, any Error>? in
                guard let index = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return s.waiters.remove(at: index).continuation
            }
            continuation?.resume(throwing: CancellationError())
        }
    }
}
