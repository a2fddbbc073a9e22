import Testing
import TenureCore
@testable import TenureIO

/// The libaio device's bookkeeping, with no kernel: a timed-out I/O answers
/// its caller at once but keeps its slot and buffer until the kernel returns it.
/// `value`, or a failed test (`#require` cannot wrap a mutating call).
func some<T>(_ value: T?, sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    try #require(value, sourceLocation: sourceLocation)
}

@Suite("DeadlineTable: deadlines, slots and abandoned buffers")
struct DeadlineTableTests {
    typealias Table = DeadlineTable<String, String>
    static let t0 = MonotonicInstant(nanoseconds: 1_000_000_000)
    static func at(_ ms: Int64) -> MonotonicInstant { t0 + .milliseconds(ms) }

    @Test func aSubmittedIOThatTimesOutIsAbandonedAndKeepsItsBufferUntilReaped() throws {
        var table = Table(capacity: 2, queueLimit: 4)
        let token = table.enqueue(waiter: "caller", resource: "buffer", deadline: Self.at(100))
        let (submitted, resource) = try some(table.nextToSubmit())
        #expect(submitted == token && resource == "buffer")
        #expect(table.expired(at: Self.at(99)).isEmpty)
        #expect(table.expired(at: Self.at(100)) == [token])

        let expired = try some(table.expire(token))
        #expect(expired.waiter == "caller", "the caller is answered at the deadline")
        #expect(expired.phase == .submitted, "worth an io_cancel")
        #expect(table.abandonedCount == 1)
        #expect(table.slotsInUse == 1, "the kernel still owns the slot")
        #expect(table.abandonedResources == ["buffer"], "the buffer stays owned by the table")
        #expect(table.expired(at: Self.at(10_000)).isEmpty, "an answered caller is never answered twice")
        #expect(table.nearestDeadline == nil)

        let finished = try some(table.complete(token))
        #expect(finished.waiter == nil, "the deadline already answered the caller")
        #expect(finished.resource == "buffer", "only now may the buffer be freed")
        #expect(table.isEmpty && table.slotsInUse == 0 && table.abandonedCount == 0)
    }

    /// What a leave asks before it frees its host id: an abandoned write
    /// may still land until the kernel returns it; a read never writes.
    @Test func anAbandonedWriteMayStillLandUntilTheKernelReturnsIt() throws {
        var table = Table(capacity: 2, queueLimit: 4)
        let read = table.enqueue(waiter: "reader", resource: "rb", deadline: Self.at(100))
        #expect(!table.holdsWrites, "a read never lands on the device")
        let write = table.enqueue(waiter: "writer", resource: "wb", deadline: Self.at(100), writeRange: 512..<1024)
        #expect(table.holdsWrites, "queued")
        _ = try some(table.nextToSubmit())
        _ = try some(table.nextToSubmit())
        #expect(table.holdsWrites, "in the kernel")
        _ = try some(table.expire(write))
        _ = try some(table.complete(read))
        #expect(table.holdsWrites, "abandoned: its caller was answered, the kernel still owns it")
        _ = try some(table.complete(write))
        #expect(!table.holdsWrites)
    }

    @Test func aQueuedIOThatTimesOutLeavesAtOnceWithoutTheKernel() throws {
        var table = Table(capacity: 1, queueLimit: 4)
        let first = table.enqueue(waiter: "a", resource: "ba", deadline: Self.at(1_000))
        let second = table.enqueue(waiter: "b", resource: "bb", deadline: Self.at(50))
        _ = try some(table.nextToSubmit())
        #expect(table.nextToSubmit() == nil, "the only slot is taken")
        #expect(table.queuedCount == 1)
        let expired = try some(table.expire(second))
        #expect(expired.phase == .queued)
        #expect(table.queuedCount == 0 && table.abandonedCount == 0)
        let done = try some(table.complete(first))
        #expect(done.waiter == "a")
        #expect(table.isEmpty)
    }

    @Test func slotsBoundWhatTheKernelOwnsCountingAbandonedIOs() throws {
        var table = Table(capacity: 2, queueLimit: 8)
        let tokens = (0..<4).map { table.enqueue(waiter: "w\($0)", resource: "r\($0)", deadline: Self.at(10)) }
        _ = try some(table.nextToSubmit())
        _ = try some(table.nextToSubmit())
        #expect(table.nextToSubmit() == nil)
        // Both in-flight I/Os time out: their slots stay taken.
        _ = table.expire(tokens[0])
        _ = table.expire(tokens[1])
        #expect(table.nextToSubmit() == nil, "abandoned I/Os still hold their slots")
        _ = table.complete(tokens[0])
        let next = try some(table.nextToSubmit())
        #expect(next.0 == tokens[2], "the oldest queued I/O goes first")
    }

    @Test func aRefusedSubmissionFreesItsSlotAndResource() throws {
        var table = Table(capacity: 1, queueLimit: 1)
        let token = table.enqueue(waiter: "w", resource: "r", deadline: Self.at(10))
        #expect(!table.canEnqueue, "the queue limit is enforced")
        _ = try some(table.nextToSubmit())
        let failed = try some(table.failSubmission(token))
        #expect(failed.waiter == "w" && failed.resource == "r")
        #expect(table.isEmpty && table.slotsInUse == 0)
        #expect(table.complete(token) == nil, "a token is finished once")
    }

    /// A write never overtakes an earlier write to the same bytes that the
    /// kernel may still land, even one abandoned at its deadline.
    @Test func writesToTheSameBytesGoInIssueOrder() throws {
        var table = Table(capacity: 4, queueLimit: 8)
        let first = table.enqueue(waiter: "w1", resource: "old", deadline: Self.at(100), writeRange: 512..<1024)
        #expect(try some(table.nextToSubmit()).0 == first)
        _ = table.expire(first)   // abandoned: the kernel still owns it
        let second = table.enqueue(waiter: "w2", resource: "new", deadline: Self.at(300), writeRange: 0..<1024)
        let read = table.enqueue(waiter: "r", resource: "read", deadline: Self.at(300))
        let elsewhere = table.enqueue(waiter: "w3", resource: "other", deadline: Self.at(300), writeRange: 4096..<4608)
        // The overlapping write waits; a read and a write elsewhere go past it.
        #expect(try some(table.nextToSubmit()).0 == read)
        #expect(try some(table.nextToSubmit()).0 == elsewhere)
        #expect(table.nextToSubmit() == nil, "a slot is free, but the write must wait for the abandoned one")
        _ = table.complete(first)
        #expect(try some(table.nextToSubmit()).0 == second, "once the old write is back, the new one goes")
    }

    @Test func aBlockedWriteStillTimesOutAtItsOwnDeadline() throws {
        var table = Table(capacity: 4, queueLimit: 8)
        let hung = table.enqueue(waiter: "w1", resource: "hung", deadline: Self.at(100), writeRange: 0..<512)
        _ = try some(table.nextToSubmit())
        _ = table.expire(hung)
        let blocked = table.enqueue(waiter: "w2", resource: "blocked", deadline: Self.at(200), writeRange: 0..<512)
        #expect(table.nextToSubmit() == nil)
        #expect(table.expired(at: Self.at(200)) == [blocked])
        let expired = try some(table.expire(blocked))
        #expect(expired.phase == .queued, "it never reached the kernel")
    }

    @Test func drainingTheQueueAnswersOnlyQueuedIOs() throws {
        var table = Table(capacity: 1, queueLimit: 4)
        _ = table.enqueue(waiter: "inflight", resource: "r0", deadline: Self.at(10))
        _ = table.enqueue(waiter: "q1", resource: "r1", deadline: Self.at(10))
        _ = table.enqueue(waiter: "q2", resource: "r2", deadline: Self.at(10))
        _ = try some(table.nextToSubmit())
        #expect(table.drainQueue() == ["q1", "q2"])
        #expect(!table.isEmpty, "the in-flight I/O stays until the kernel returns it")
        #expect(table.nearestDeadline == Self.at(10))
    }
}
