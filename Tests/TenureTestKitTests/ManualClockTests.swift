import Testing
import TenureCore
@testable import TenureTestKit

@Suite("ManualClock", .timeLimit(.minutes(1)))
struct ManualClockTests {
    @Test("Starts at 1,000 s unless told otherwise, and moves only when moved")
    func start() async throws {
        let clock = ManualClock()
        #expect(clock.now() == ClockStart.value)
        #expect(clock.now().wholeSeconds == 1000)
        #expect(clock.now() == clock.now())
        clock.advance(by: .milliseconds(1500))
        #expect(clock.now() == ClockStart.value + .milliseconds(1500))
        clock.advance(to: MonotonicInstant(nanoseconds: 2_000_000_000_000))
        #expect(clock.now().wholeSeconds == 2000)

        let other = ManualClock(start: MonotonicInstant(nanoseconds: 7))
        #expect(other.now().nanoseconds == 7)
    }

    @Test("A sleep whose deadline has passed returns at once")
    func pastDeadline() async throws {
        let clock = ManualClock()
        try await clock.sleep(until: clock.now())
        try await clock.sleep(until: MonotonicInstant(nanoseconds: 0))
        try await clock.sleep(for: .zero)
        #expect(clock.sleeperCount == 0)
        #expect(clock.now() == ClockStart.value)
    }

    @Test("A sleeper wakes when time reaches its deadline, not before")
    func wakesAtDeadline() async throws {
        let clock = ManualClock()
        let woke = Recorder<MonotonicInstant>()
        let sleeper = Task {
            try await clock.sleep(for: .seconds(5))
            woke.append(clock.now())
        }
        try await clock.waitForSleepers(1)
        clock.advance(by: .seconds(4))
        #expect(clock.sleeperCount == 1)
        #expect(woke.all.isEmpty)
        clock.advance(by: .seconds(2))
        try await sleeper.value
        #expect(woke.all == [ClockStart.value + .seconds(6)])
        #expect(clock.sleeperCount == 0)
    }

    @Test("Sleepers wake in deadline order, only those due")
    func deadlineOrder() async throws {
        let clock = ManualClock()
        let woke = Recorder<Int>()
        var tasks: [Int: Task<Void, any Error>] = [:]
        for seconds in [3, 1, 2] {
            tasks[seconds] = Task {
                try await clock.sleep(for: .seconds(seconds))
                woke.append(seconds)
            }
            // One at a time, so each deadline is measured from the same now.
            try await clock.waitForSleepers(tasks.count)
        }
        #expect(clock.nextDeadline == ClockStart.value + .seconds(1))

        for (step, seconds) in [1, 2, 3].enumerated() {
            let instant = clock.advanceToNextDeadline()
            #expect(instant == ClockStart.value + .seconds(seconds))
            try await tasks[seconds]!.value
            #expect(woke.all == Array([1, 2, 3][...step]))
            #expect(clock.sleeperCount == 2 - step)
        }
        #expect(clock.advanceToNextDeadline() == nil)
        #expect(clock.now() == ClockStart.value + .seconds(3))
    }

    @Test("One advance wakes every sleeper due by then, ties included")
    func advanceWakesAllDue() async throws {
        let clock = ManualClock()
        let woke = Recorder<Int>()
        var tasks: [Task<Void, any Error>] = []
        for (i, seconds) in [2, 2, 1, 9].enumerated() {
            tasks.append(Task {
                try await clock.sleep(for: .seconds(seconds))
                woke.append(i)
            })
        }
        try await clock.waitForSleepers(4)
        clock.advance(by: .seconds(2))
        for task in tasks[..<3] { try await task.value }
        #expect(Set(woke.all) == [0, 1, 2])
        #expect(clock.sleeperCount == 1)
        #expect(clock.nextDeadline == ClockStart.value + .seconds(9))
        tasks[3].cancel()
        _ = await thrownError { try await tasks[3].value }
    }

    @Test("Cancelling a sleeper throws CancellationError at once; time stands still")
    func cancellation() async throws {
        let clock = ManualClock()
        let sleeper = Task { try await clock.sleep(for: .seconds(3600)) }
        try await clock.waitForSleepers(1)
        sleeper.cancel()
        #expect(await thrownError { try await sleeper.value } is CancellationError)
        #expect(clock.sleeperCount == 0)
        #expect(clock.now() == ClockStart.value)
        // Advancing afterwards does not trip over the cancelled sleeper.
        clock.advance(by: .seconds(7200))
    }

    @Test("A task cancelled before it sleeps does not sleep")
    func cancelledBeforeSleeping() async throws {
        let clock = ManualClock()
        let sleeper = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await clock.sleep(for: .seconds(1))
        }
        #expect(await thrownError { try await sleeper.value } is CancellationError)
        #expect(clock.sleeperCount == 0)
    }

    @Test("waitForSleepers returns once that many tasks sleep, and can be cancelled")
    func waitForSleepers() async throws {
        let clock = ManualClock()
        try await clock.waitForSleepers(0)
        let waiter = Task { try await clock.waitForSleepers(3) }
        var sleepers: [Task<Void, any Error>] = []
        for i in 1...3 {
            sleepers.append(Task { try await clock.sleep(for: .seconds(i)) })
        }
        try await waiter.value
        #expect(clock.sleeperCount == 3)

        let stuck = Task { try await clock.waitForSleepers(10) }
        stuck.cancel()
        #expect(await thrownError { try await stuck.value } is CancellationError)

        clock.advance(by: .seconds(3))
        for sleeper in sleepers { try await sleeper.value }
        #expect(clock.sleeperCount == 0)
    }

    @Test("Auto-advance: a sleep moves time to its deadline, never backwards")
    func autoAdvance() async throws {
        let clock = ManualClock(autoAdvance: true)
        try await clock.sleep(for: .seconds(20))
        #expect(clock.now() == ClockStart.value + .seconds(20))
        try await clock.sleep(until: ClockStart.value + .seconds(5))
        #expect(clock.now() == ClockStart.value + .seconds(20))
        try await clock.sleep(until: ClockStart.value + .seconds(21))
        #expect(clock.now() == ClockStart.value + .seconds(21))
        #expect(clock.sleeperCount == 0)

        // Cancelled: throws, and time stays.
        let cancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await clock.sleep(for: .seconds(100))
        }
        #expect(await thrownError { try await cancelled.value } is CancellationError)
        #expect(clock.now() == ClockStart.value + .seconds(21))
    }
}

/// Going backwards is a programmer error: `advance(to:)`'s precondition is
/// `mayAdvance(to:)`. (An exit test that trapped in a child process hung CI
/// twice: the child, the whole test bundle, was left a zombie the test
/// library never reaped while the rest of the suite ran.)
@Suite("ManualClock's programmer errors")
struct ManualClockTrapTests {
    @Test("Going backwards is a programmer error")
    func backwardsIsRefused() {
        let clock = ManualClock()
        #expect(!clock.mayAdvance(to: MonotonicInstant(nanoseconds: 0)))
        #expect(clock.mayAdvance(to: clock.now()))
        #expect(clock.mayAdvance(to: clock.now() + .seconds(1)))
    }
}
