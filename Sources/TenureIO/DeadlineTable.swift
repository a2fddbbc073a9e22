import TenureCore

/// Names one I/O in a ``DeadlineTable``; travels through the kernel in `iocb.data`.
struct IOToken: Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt64
    var description: String { "io#\(rawValue)" }
}

/// The bookkeeping of a libaio device, with no system calls and no clock:
/// which I/Os wait for a slot, which the kernel owns, which have passed their
/// deadline, and who is still waiting for an answer.
///
/// Every I/O goes through these phases:
/// ```
/// enqueue ─▶ queued ─(slot free)─▶ submitted ─(completion reaped)─▶ gone
///              │                      │
///              │ deadline             │ deadline
///              ▼                      ▼
///            gone                 abandoned ─(completion reaped)─▶ gone
/// ```
/// A *slot* is one of the io_context's ``capacity`` events: submitted and
/// abandoned I/Os both hold one, because the kernel owns both. The *waiter*
/// (the caller's continuation) is handed out exactly once: on completion, on
/// expiry, or on failure to submit. The *resource* (the iocb and its buffer)
/// leaves the table only when the kernel has returned it, or when it was never
/// submitted.
struct DeadlineTable<Waiter, Resource> {
    enum Phase: Equatable { case queued, submitted, abandoned }

    private struct Entry {
        var phase: Phase
        let deadline: MonotonicInstant
        var waiter: Waiter?
        let resource: Resource
        /// The bytes a write covers; nil for a read.
        let writeRange: Range<UInt64>?
    }

    /// What ``complete(_:)`` and ``failSubmission(_:)`` give back.
    struct Finished {
        /// The caller to answer; nil when the deadline already answered it.
        var waiter: Waiter?
        /// The iocb and buffer, now free to release.
        var resource: Resource
    }

    /// What ``expire(_:)`` gives back.
    struct Expired {
        var waiter: Waiter
        /// The phase the I/O was in: `.submitted` ones become abandoned and
        /// are worth an io_cancel; `.queued` ones were never seen by the kernel.
        var phase: Phase
        /// The iocb, for io_cancel (still owned by the table when submitted).
        var resource: Resource
    }

    /// Slots in the io_context: the most I/Os the kernel may own at once.
    let capacity: Int
    /// The most I/Os that may wait for a slot.
    let queueLimit: Int

    private var entries: [IOToken: Entry] = [:]
    private var queue: [IOToken] = []
    private var lastToken: UInt64 = 0
    private(set) var slotsInUse = 0
    private(set) var abandonedCount = 0

    init(capacity: Int, queueLimit: Int) {
        precondition(capacity > 0 && queueLimit > 0, "every I/O passes through the queue")
        self.capacity = capacity
        self.queueLimit = queueLimit
    }

    /// No I/O is queued, in flight or abandoned.
    var isEmpty: Bool { entries.isEmpty }
    /// Requests queued, in flight, or abandoned in the kernel.
    var count: Int { entries.count }
    /// Whether a write is queued, in flight or abandoned: one that may still land.
    var holdsWrites: Bool { entries.values.contains { $0.writeRange != nil } }
    /// I/Os waiting for a slot.
    var queuedCount: Int { queue.count }
    /// Whether one more I/O may be enqueued.
    var canEnqueue: Bool { queue.count < queueLimit }

    /// Adds an I/O that waits for a slot; its `deadline` runs from now on.
    /// - Parameter writeRange: the bytes a write covers (nil for a read).
    mutating func enqueue(waiter: Waiter, resource: Resource, deadline: MonotonicInstant,
                          writeRange: Range<UInt64>? = nil) -> IOToken {
        precondition(canEnqueue, "enqueue past the table's limits")
        lastToken += 1
        let token = IOToken(rawValue: lastToken)
        entries[token] = Entry(phase: .queued, deadline: deadline, waiter: waiter, resource: resource, writeRange: writeRange)
        queue.append(token)
        return token
    }

    /// Takes a slot for the oldest queued I/O that may go, which the caller
    /// must then submit (or report with ``failSubmission(_:)``); nil if no
    /// slot is free or nothing may go.
    ///
    /// Write ordering: a write may not go while an earlier write to
    /// overlapping bytes is queued, in flight or abandoned (the kernel still
    /// owns it, and it may land at any time). Writes to the same sectors
    /// therefore land in the order they were issued: a host's stale write,
    /// given up on at its deadline, can never land over its newer one. The
    /// waiting write keeps its own deadline.
    mutating func nextToSubmit() -> (IOToken, Resource)? {
        guard slotsInUse < capacity else { return nil }
        guard let index = queue.indices.first(where: { mayGo(queue[$0]) }) else { return nil }
        let token = queue.remove(at: index)
        entries[token]!.phase = .submitted
        slotsInUse += 1
        return (token, entries[token]!.resource)
    }

    /// Whether no earlier write overlaps this queued I/O (reads always may go).
    private func mayGo(_ token: IOToken) -> Bool {
        guard let range = entries[token]?.writeRange else { return true }
        return !entries.contains { other, entry in
            other.rawValue < token.rawValue && (entry.writeRange?.overlaps(range) ?? false)
        }
    }

    /// The I/Os whose deadline is at or before `now` and whose caller still waits.
    func expired(at now: MonotonicInstant) -> [IOToken] {
        entries.compactMap { token, entry in
            entry.phase != .abandoned && entry.deadline <= now ? token : nil
        }
        .sorted { $0.rawValue < $1.rawValue }
    }

    /// The earliest deadline of an I/O whose caller still waits.
    var nearestDeadline: MonotonicInstant? {
        entries.values.lazy.filter { $0.phase != .abandoned }.map(\.deadline).min()
    }

    /// Answers an expired I/O's caller: a queued I/O leaves the table, a
    /// submitted one stays, abandoned, until the kernel returns it.
    mutating func expire(_ token: IOToken) -> Expired? {
        guard let entry = entries[token], entry.phase != .abandoned, let waiter = entry.waiter else { return nil }
        if entry.phase == .queued {
            entries[token] = nil
            queue.removeAll { $0 == token }
        } else {
            entries[token]!.phase = .abandoned
            entries[token]!.waiter = nil
            abandonedCount += 1
        }
        return Expired(waiter: waiter, phase: entry.phase, resource: entry.resource)
    }

    /// The kernel returned a submitted or abandoned I/O: its slot is free.
    /// Nil for a token the table does not hold (a bug in the caller).
    mutating func complete(_ token: IOToken) -> Finished? {
        guard let entry = entries[token], entry.phase != .queued else { return nil }
        return release(token, entry)
    }

    /// io_submit refused an I/O taken by ``nextToSubmit()``: the kernel never
    /// saw it, so its slot is free and its resource may be released.
    mutating func failSubmission(_ token: IOToken) -> Finished? {
        guard let entry = entries[token], entry.phase != .queued else { return nil }
        return release(token, entry)
    }

    /// Removes every queued I/O (for close), returning their waiters.
    mutating func drainQueue() -> [Waiter] {
        let drained = queue.compactMap { entries.removeValue(forKey: $0)?.waiter }
        queue.removeAll()
        return drained
    }

    /// The resources of abandoned I/Os, for a close that gives up on them.
    var abandonedResources: [Resource] {
        entries.values.filter { $0.phase == .abandoned }.map(\.resource)
    }

    private mutating func release(_ token: IOToken, _ entry: Entry) -> Finished {
        entries[token] = nil
        slotsInUse -= 1
        if entry.phase == .abandoned { abandonedCount -= 1 }
        return Finished(waiter: entry.waiter, resource: entry.resource)
    }
}
