import Glibc
import Synchronization
import Testing
import TenureCore
import TenureIO

/// The renewal path's own thread: renewal tasks and the Lockspace actor's
/// code run there, and its clock wakes their sleeps itself.
@Suite("RenewalThread", .timeLimit(.minutes(1)))
struct RenewalThreadTests {
    /// A default actor, as `Lockspace` is.
    actor Probe {
        func whereAmI() -> Int32 { RenewalThread.callerThreadID }
    }

    @Test func aTaskThatPrefersItAndTheActorsItCallsRunOnTheThread() async throws {
        let thread = try RenewalThread(realtimePriority: nil)
        #expect(thread.realtimeOutcome == nil, "no priority asked for")
        let probe = Probe()
        let seen = await Task(executorPreference: thread) { () async -> [Int32] in
            let before = RenewalThread.callerThreadID
            let inActor = await probe.whereAmI()
            try? await thread.sleep(for: .milliseconds(5))
            return [before, inActor, RenewalThread.callerThreadID]
        }.value
        #expect(seen == [thread.threadID, thread.threadID, thread.threadID], "ran on \(seen), the thread is \(thread.threadID)")
        #expect(RenewalThread.callerThreadID != thread.threadID)
    }

    @Test func sleepsWakeAtTheirDeadlinesInOrder() async throws {
        let thread = try RenewalThread(realtimePriority: nil)
        let start = thread.now()
        // The order they woke in, as the thread ran them (two readings of the
        // shared clock may be equal when a busy thread wakes both late). The
        // sleepers run on the thread itself, as renewal tasks do: on the
        // shared pool a busy machine could run the later wake's code first,
        // whatever order the thread woke them in.
        final class Order: Sendable { let woke = Mutex<[String]>([]) }
        let order = Order()
        let late = Task(executorPreference: thread) { () async throws -> MonotonicInstant in
            try await thread.sleep(for: .milliseconds(60)); order.woke.withLock { $0.append("late") }; return thread.now()
        }
        let early = Task(executorPreference: thread) { () async throws -> MonotonicInstant in
            try await thread.sleep(for: .milliseconds(20)); order.woke.withLock { $0.append("early") }; return thread.now()
        }
        let (a, b) = (try await early.value, try await late.value)
        #expect(a - start >= .milliseconds(20))
        #expect(b - start >= .milliseconds(60))
        #expect(a <= b)
        #expect(order.woke.withLock { $0 } == ["early", "late"])
    }

    @Test func aCancelledSleepThrowsAtOnce() async throws {
        let thread = try RenewalThread(realtimePriority: nil)
        let seen = Seen()
        let sleeper = Task(executorPreference: thread) {
            do {
                try await thread.sleep(for: .seconds(30))
            } catch {
                seen.at.withLock { $0 = thread.now() }
                throw error
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        let cancelledAt = thread.now()
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        let observed = try #require(seen.at.withLock { $0 })
        #expect(observed - cancelledAt < .seconds(10))
    }

    /// When the sleeper saw its cancel, on the renewal thread.
    final class Seen: Sendable {
        let at = Mutex<MonotonicInstant?>(nil)
    }

    @Test func aRealtimePriorityIsAskedForAndReported() throws {
        let thread = try RenewalThread(realtimePriority: Starvation.realtimePriority)
        switch thread.realtimeOutcome {
        case .success?: #expect(thread.isRealtime)
        case .failure(let error)?: #expect(error.errno == EPERM, "refused for another reason: \(error)")
        case nil: Issue.record("the thread never asked for its priority")
        }
    }
}
