import CTenureSys
import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// A lease device opened O_DIRECT | O_SYNC, with its I/O through libaio and a
/// deadline on every I/O.
///
/// One io_context (``maxInFlight`` slots) per device, and either a reaper
/// thread of its own or an ``EventLoop`` that reaps for it. A read or write
/// is validated, copied into an ``AlignedBuffer``, submitted with io_submit,
/// and awaited; the reaper collects completions with io_getevents and
/// resumes the caller. On a loop, each iocb signals the device's eventfd,
/// which the loop watches: the completion is reaped on the loop's thread,
/// where the daemon's requests run, so no thread is woken for it. When an I/O's deadline (`ioTimeout`
/// after the call, on CLOCK_MONOTONIC) passes first, the caller gets
/// `.ioTimeout` at once and the I/O is *abandoned*: the reaper tries
/// io_cancel, and keeps the iocb and buffer alive until the kernel's
/// completion is reaped, because until then the kernel may still read or
/// write that memory.
///
/// When every slot is taken, an I/O waits in a queue (at most ``maxQueued``)
/// under the same deadline. So does a write that overlaps an earlier write
/// still queued, in flight or abandoned: writes to the same sectors land in
/// the order they were issued (see ``DeadlineTable/nextToSubmit()``). Every
/// request that may go is submitted in one io_submit with the others ready
/// at the same moment (``AIOCore/submitReady()``); on an ``EventLoop``'s
/// thread, that moment is the end of the loop's round of work, so the
/// requests that ran together share one io_submit.
///
/// Cancelling the calling task does not interrupt an I/O; the deadline bounds it.
public final class DirectDevice: MeasuredBlockDevice {
    /// Slots in the io_context: the most I/Os the kernel may own at once,
    /// counting abandoned ones.
    public static let maxInFlight = 128
    /// The most I/Os that may wait for a slot before new ones are refused.
    public static let maxQueued = 1024
    /// The longest the reaper sleeps in io_getevents; bounds how late a
    /// deadline or a close is noticed.
    public static let reaperTickMilliseconds = 50
    /// close() waits for in-flight I/O up to this many times `ioTimeout`.
    public static let closeWaitTimeoutMultiplier = 2
    /// The largest single I/O.
    public static let maxIOBytes = AlignedBuffer.maxByteCount

    public let path: String
    public let sectorSize: SectorSize
    public let sizeBytes: UInt64
    /// How long one I/O may take before it fails with `.ioTimeout`.
    public let ioTimeout: Duration

    private let core: AIOCore
    private let access: DeviceAccess

    /// Opens `path` (see ``DeviceOpener/open(path:)``) with an io_context
    /// and a reaper thread, or reaped by `loop`.
    /// - Parameter realtimePriority: the reaper runs at SCHED_RR at this
    ///   priority (the renewal device's, beside ``RenewalThread``); nil for
    ///   an ordinary thread. A refusal leaves it ordinary.
    /// - Parameter loop: reaps the completions and answers deadlines on its
    ///   thread instead of a reaper thread (the daemon's client handles).
    public init(path: String, ioTimeout: Duration, access: DeviceAccess = .readWrite, realtimePriority: Int32? = nil,
                loop: EventLoop? = nil) throws {
        precondition(ioTimeout > .zero, "ioTimeout must be positive")
        let opened = try DeviceOpener.open(path: path, access: access)
        self.access = access
        do {
            core = try AIOCore(opened: opened, ioTimeout: ioTimeout, realtimePriority: realtimePriority, loop: loop)
        } catch {
            // The descriptor was never used; its close error has nothing to add.
            try? Syscall.close(opened.fd, path: path)
            throw error
        }
        self.path = path
        self.sectorSize = opened.sectorSize
        self.sizeBytes = opened.sizeBytes
        self.ioTimeout = ioTimeout
    }

    deinit {
        // Without a close(), the reaper drains and tears down on its own.
        core.beginClose(waiter: nil)
    }

    public func read(at offset: UInt64, length: Int) async throws -> [UInt8] {
        try checkRequest(offset: offset, length: length, limit: Self.maxIOBytes)
        let request = IORequest(.read, offset: offset, buffer: AlignedBuffer(count: length), fd: core.fd, completions: core.completions)
        return try await core.perform(request)
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) async throws {
        try access.checkWrite(path)
        try checkRequest(offset: offset, length: bytes.count, limit: Self.maxIOBytes)
        let request = IORequest(.write, offset: offset, buffer: AlignedBuffer(copying: bytes), fd: core.fd, completions: core.completions)
        _ = try await core.perform(request)
    }

    /// Refuses new I/O, fails I/O still waiting for a slot with
    /// `.deviceClosed`, and waits until the kernel has returned every
    /// submitted I/O, then destroys the io_context and closes the descriptor.
    ///
    /// If abandoned I/O is still in the kernel after ``closeWaitTimeoutMultiplier``
    /// × `ioTimeout`, close gives up waiting and deliberately leaks the
    /// io_context and those I/Os' iocbs and buffers: the kernel still owns
    /// them and may write into the buffers whenever the storage answers, and
    /// io_destroy would block until it does. The descriptor is closed (each
    /// kernel I/O holds its own reference to the file). See
    /// `statistics.abandonedInFlight`.
    public func close() async {
        await withCheckedContinuation { continuation in
            core.beginClose(waiter: continuation)
        }
    }

    public var statistics: IOStatistics { core.statistics }

    /// A write queued, in the kernel, or abandoned at its deadline and not yet
    /// returned by the kernel (also after a close that gave up on it).
    public var writesMayStillLand: Bool { core.holdsWrites }
}

extension BlockDevice {
    /// The contract's checks (``BlockDevice/validate(offset:length:)``) plus the
    /// implementation's size limit, before anything is allocated or submitted.
    func checkRequest(offset: UInt64, length: Int, limit: Int) throws {
        try validate(offset: offset, length: length)
        guard length <= limit else {
            throw TenureError(
                .invalidArgument,
                "I/O of \(length) bytes at offset \(offset) on \(path) is larger than the \(limit)-byte limit of one I/O.",
                remedy: "Split it into I/Os of at most \(limit) bytes.")
        }
    }
}

/// "10s", "0.25s": a timeout for messages.
func secondsText(_ duration: Duration) -> String {
    let milliseconds = duration.nanosecondsClamped / 1_000_000
    if milliseconds % 1000 == 0 { return "\(milliseconds / 1000)s" }
    return "\(Double(milliseconds) / 1000)s"
}

// MARK: - Requests

/// One read or write: its iocb and its buffer, memory the kernel owns while
/// the I/O is in flight.
///
/// `@unchecked Sendable`: the fields never change after init; the iocb is
/// written by the submitting thread before io_submit and only by the kernel
/// after, and the buffer is read by the reaper only after the completion is
/// reaped. The ``DeadlineTable`` keeps the request alive until then.
final class IORequest: @unchecked Sendable {
    enum Kind: String, Sendable { case read, write }

    let kind: Kind
    let offset: UInt64
    let buffer: AlignedBuffer
    let iocb: UnsafeMutablePointer<iocb>

    /// - Parameter completions: an eventfd the kernel signals when the I/O completes.
    init(_ kind: Kind, offset: UInt64, buffer: AlignedBuffer, fd: FileDescriptor, completions: FileDescriptor? = nil) {
        self.kind = kind
        self.offset = offset
        self.buffer = buffer
        iocb = .allocate(capacity: 1)
        iocb.initialize(to: CTenureSys.iocb())
        switch kind {
        case .read: io_prep_pread(iocb, fd.rawValue, buffer.pointer, buffer.count, Int64(offset))
        case .write: io_prep_pwrite(iocb, fd.rawValue, buffer.pointer, buffer.count, Int64(offset))
        }
        if let completions { io_set_eventfd(iocb, completions.rawValue) }
    }

    var length: Int { buffer.count }

    /// Marks the iocb with `token`, which io_getevents hands back in `data`.
    func tag(_ token: IOToken) {
        iocb.pointee.data = UnsafeMutableRawPointer(bitPattern: UInt(token.rawValue))
    }

    func context(path: String) -> SyscallContext {
        SyscallContext(kind == .read ? "read" : "write", path: path, offset: offset, length: length)
    }

    deinit {
        iocb.deinitialize(count: 1)
        iocb.deallocate()
    }
}

/// The kernel's io_context handle.
///
/// `@unchecked Sendable`: the handle is an opaque kernel id that libaio calls
/// accept from any thread; only ``AIOCore`` destroys it, once, after the
/// reaper has stopped using it.
struct AIOContext: @unchecked Sendable {
    let raw: io_context_t
}

// MARK: - The shared core

/// What the device and its reaper share. The reaper (its thread, or the
/// loop's watch of its eventfd) holds a strong reference, so the core
/// outlives the `DirectDevice` until it is torn down.
final class AIOCore: Sendable {
    typealias Waiter = CheckedContinuation<[UInt8], any Error>
    typealias Table = DeadlineTable<Waiter, IORequest>

    enum Lifecycle {
        case open
        /// close() began; the reaper gives up on abandoned I/O at `giveUpAt`.
        case closing(giveUpAt: MonotonicInstant)
        case closed
    }

    struct State {
        var table = Table(capacity: DirectDevice.maxInFlight, queueLimit: DirectDevice.maxQueued)
        var lifecycle = Lifecycle.open
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        var statistics = IOStatistics()
        /// Requests taken for submission whose io_submit has not returned:
        /// the descriptor must stay open (and its number unused) while any is.
        var submitsInProgress = 0
        /// A thread is in submitReady(): others only enqueue.
        var submitterActive = false
        /// A caller is polling for its own completion (pollWhileAlone).
        var polling = false
        /// I/O enqueued on the loop's thread waits for the end of the loop's
        /// round of work (submitAtEndOfRound), which is already arranged.
        var submitAtEndOfRound = false
    }

    let fd: FileDescriptor
    let path: String
    let ioTimeout: Duration
    private let context: AIOContext
    private let clock = SystemMonotonicClock.shared
    private let state = Mutex(State())
    private let realtimePriority: Int32?
    /// The loop that reaps, when no thread does.
    private let loop: EventLoop?
    /// The eventfd every iocb signals, when a loop reaps.
    let completions: FileDescriptor?
    /// The loop's watch of `completions` and its deadline timer, while open.
    private let onLoop = Mutex<(watch: EventLoop.WatchID?, timer: EventLoop.TimerID?, stopped: Bool)>((nil, nil, false))
    /// Where the reaper's io_getevents writes, allocated once: one reaper
    /// (its thread, or the loop's thread) uses it. The callers' solo poll
    /// has its own event.
    nonisolated(unsafe) private let reaped = UnsafeMutablePointer<io_event>.allocate(capacity: DirectDevice.maxInFlight)

    init(opened: OpenedDevice, ioTimeout: Duration, realtimePriority: Int32?, loop: EventLoop? = nil) throws(TenureError) {
        self.realtimePriority = realtimePriority
        self.loop = loop
        fd = opened.fd
        path = opened.path
        self.ioTimeout = ioTimeout
        var raw: io_context_t?
        try Syscall.runAIO(SyscallContext("io_setup", path: opened.path), {
            io_setup(Int32(DirectDevice.maxInFlight), &raw)
        })
        context = AIOContext(raw: raw!)
        let path = opened.path, created = raw!
        do throws(TenureError) {
            if loop != nil {
                completions = FileDescriptor(rawValue: try Syscall.run(SyscallContext("eventfd", path: path)) { tenure_eventfd() })
            } else {
                completions = nil
            }
        } catch {
            // No I/O was ever submitted, so io_destroy cannot block.
            _ = try? Syscall.runAIO(SyscallContext("io_destroy", path: path), { io_destroy(created) })
            throw error
        }
        do {
            if let loop { try startOnLoop(loop) } else { try startReaper() }
        } catch {
            _ = try? Syscall.runAIO(SyscallContext("io_destroy", path: path), { io_destroy(created) })
            if let completions { try? Syscall.close(completions, path: path) }
            throw error
        }
    }

    deinit { reaped.deallocate() }

    var holdsWrites: Bool { state.withLock { $0.table.holdsWrites } }

    var statistics: IOStatistics {
        state.withLock { state in
            var statistics = state.statistics
            statistics.abandonedInFlight = UInt64(state.table.abandonedCount)
            return statistics
        }
    }

    // MARK: Submission

    /// Queues `request`, submits what slots allow, and waits for the answer.
    func perform(_ request: IORequest) async throws -> [UInt8] {
        Self.waitingCallers.add(1, ordering: .relaxed)
        let called = clock.now()
        defer {
            Self.waitingCallers.subtract(1, ordering: .relaxed)
            let waited = (clock.now() - called).nanosecondsClamped
            state.withLock { $0.statistics.waitNanoseconds &+= waited }
        }
        return try await withCheckedThrowingContinuation { (waiter: Waiter) in
            let deadline = clock.now() + ioTimeout
            let refusal: TenureError? = state.withLock { state in
                guard case .open = state.lifecycle else { return closedError(request) }
                guard state.table.canEnqueue else { return queueFullError(request) }
                let writeRange = request.kind == .write ? request.offset..<(request.offset + UInt64(request.length)) : nil
                _ = state.table.enqueue(waiter: waiter, resource: request, deadline: deadline, writeRange: writeRange)
                return nil
            }
            if let refusal {
                waiter.resume(throwing: refusal)
                return
            }
            if let loop, loop.isCurrent {
                submitAtEndOfRound(on: loop)
            } else {
                submitReady()
                pollWhileAlone()
            }
        }
    }

    /// On the loop's thread an I/O is not submitted when its request asks
    /// for it, but at the end of the loop's round of work
    /// (``EventLoop/atEndOfRound(_:)``): the I/Os of every request that ran
    /// in the round go to the kernel in one io_submit. The solo poll runs
    /// there too (``pollWhenIdle(on:)``).
    ///
    /// Not later: deferring to the end of the loop's whole turn (every round
    /// until no work is left) made 32 clients 10–15 % slower on this kind of
    /// machine, as I/O that could have been on the device waited for the
    /// turn's other work (docs/performance.md, "Batching").
    private func submitAtEndOfRound(on loop: EventLoop) {
        let first = state.withLock { state -> Bool in
            defer { state.submitAtEndOfRound = true }
            return !state.submitAtEndOfRound
        }
        guard first else { return }
        loop.atEndOfRound {
            self.state.withLock { $0.submitAtEndOfRound = false }
            self.submitReady()
            self.pollWhenIdle(on: loop)
        }
    }

    /// How long a caller whose I/O is the only one on the handle polls for
    /// its completion itself: a fast device answers within this, and the
    /// caller goes on on its own thread instead of waiting for the reaper to
    /// wake another one (two thread switches per I/O, most of an
    /// uncontended acquire's time). Deadlines stay the reaper's.
    static let soloPollWindow: Duration = .microseconds(150)

    /// Callers waiting for an I/O on any handle of this process.
    static let waitingCallers = Atomic<Int>(0)

    /// Polls the completion queue without blocking until the handle has no
    /// I/O left (ours completed: by us, or by the reaper) or the window
    /// passes. Only when ours is the only I/O anyone in the process waits
    /// for: with more, the threads have other work and a spinning one would
    /// take a core from it (32 clients ran at 40 % of the rate).
    private func pollWhileAlone() {
        guard Self.waitingCallers.load(ordering: .relaxed) == 1 else { return }
        let alone = state.withLock { state -> Bool in
            guard state.table.count == 1, !state.polling else { return false }
            state.polling = true
            return true
        }
        guard alone else { return }
        defer { state.withLock { $0.polling = false } }
        var event = io_event()
        pollForCompletions(into: &event, capacity: 1)
    }

    /// The most I/Os a handle may have in flight for the loop to poll for
    /// them when it has nothing else to run, rather than sleep: one
    /// request's reads of a few runs, not a loaded daemon's many.
    static let loopPollMaxInFlight = 4

    /// At the end of a round, with nothing else queued on the loop and at most
    /// ``loopPollMaxInFlight`` I/Os out, the loop polls for the first
    /// completion instead of sleeping in epoll_wait until the eventfd wakes
    /// it: the solo poll, for the one or few I/Os of a request.
    private func pollWhenIdle(on loop: EventLoop) {
        guard !loop.hasQueuedWork,
              state.withLock({ !$0.polling && !$0.table.isEmpty && $0.table.count <= Self.loopPollMaxInFlight })
        else { return }
        // The loop is this handle's only reaper: the reaper's buffer is free.
        pollForCompletions(into: reaped, capacity: DirectDevice.maxInFlight)
    }

    /// Polls until completions come (it answers them and submits what their
    /// slots free), the handle has nothing in flight, or the window passes.
    private func pollForCompletions(into events: UnsafeMutablePointer<io_event>, capacity: Int) {
        let until = clock.now() + Self.soloPollWindow
        var noWait = timespec(tv_sec: 0, tv_nsec: 0)
        repeat {
            let count = Int(io_getevents(context.raw, 0, capacity, events, &noWait))
            if count > 0 {
                state.withLock { $0.statistics.answeredByCaller += UInt64(count) }
                for index in 0 ..< count { reap(events[index]) }
                submitReady()
                return
            }
            if count < 0 || state.withLock({ $0.table.isEmpty }) { return }
        } while clock.now() < until
    }

    /// Submits queued requests while slots are free, in batches: every
    /// request that may go is handed to one io_submit, so concurrent
    /// operations share system calls and the device sees them together.
    /// Called by callers after enqueueing and by the reaper after freeing slots.
    func submitReady() {
        // One thread submits at a time; requests that arrive meanwhile are
        // picked up by its next round, in one batch.
        guard state.withLock({ state in
            if state.submitterActive { return false }
            state.submitterActive = true
            return true
        }) else { return }
        while true {
            let batch = takeReadyBatch()
            guard !batch.isEmpty else { return }
            for (token, request) in batch { request.tag(token) }
            var list: [UnsafeMutablePointer<iocb>?] = batch.map { $0.1.iocb }
            var accepted = 0
            var failure: TenureError?
            while accepted < batch.count {
                let context = batch[accepted].1.context(path: path).with(call: "io_submit")
                do {
                    let n = try list.withUnsafeMutableBufferPointer { buffer in
                        try Syscall.runAIO(context, { io_submit(self.context.raw, batch.count - accepted, buffer.baseAddress! + accepted) })
                    }
                    if n == 0 { throw Syscall.error(Errno(rawValue: EAGAIN), context) }
                    accepted += Int(n)
                } catch {
                    failure = (error as? TenureError) ?? TenureError(.ioFailed, "io_submit failed: \(error)")
                    break
                }
            }
            // Requests io_submit refused never reached the kernel: their callers get the error.
            let refused = batch[accepted...].map(\.0)
            let finished = state.withLock { state -> [Table.Finished] in
                state.submitsInProgress -= batch.count
                state.statistics.failures += UInt64(refused.count)
                state.statistics.batches += 1
                return refused.compactMap { state.table.failSubmission($0) }
            }
            if let failure { for f in finished { f.waiter?.resume(throwing: failure) } }
        }
    }

    /// Every queued request that may go now, up to the free slots; when
    /// there is none, the submitter steps down (under the same lock, so a
    /// request enqueued now finds no active submitter and submits itself).
    private func takeReadyBatch() -> [(IOToken, IORequest)] {
        state.withLock { state in
            var batch: [(IOToken, IORequest)] = []
            while let next = state.table.nextToSubmit() {
                batch.append(next)
            }
            if batch.isEmpty { state.submitterActive = false }
            state.submitsInProgress += batch.count
            state.statistics.submitted += UInt64(batch.count)
            return batch
        }
    }

    // MARK: Closing

    /// Starts closing (once) and registers `waiter` to be resumed when done.
    func beginClose(waiter: CheckedContinuation<Void, Never>?) {
        let giveUpAt = clock.now() + ioTimeout * DirectDevice.closeWaitTimeoutMultiplier
        let (alreadyClosed, neverSubmitted): (Bool, [Waiter]) = state.withLock { state in
            switch state.lifecycle {
            case .closed:
                return (true, [])
            case .closing:
                if let waiter { state.closeWaiters.append(waiter) }
                return (false, [])
            case .open:
                state.lifecycle = .closing(giveUpAt: giveUpAt)
                if let waiter { state.closeWaiters.append(waiter) }
                return (false, state.table.drainQueue())
            }
        }
        for queued in neverSubmitted {
            queued.resume(throwing: TenureError(
                .deviceClosed, "\(path) was closed before a queued I/O could be submitted.",
                remedy: "Open the device again to retry."))
        }
        if alreadyClosed { waiter?.resume() }
        // A handle with nothing in flight closes at once, not at the next tick.
        if let loop, !alreadyClosed { loop.execute { self.serviceOnLoop() } }
    }

    // MARK: Reaping on a loop

    /// Watches the completion eventfd and starts the deadline ticks.
    private func startOnLoop(_ loop: EventLoop) throws(TenureError) {
        let watch = try loop.watch(completions!, events: EventLoop.readable, path: path) { _ in self.serviceOnLoop() }
        onLoop.withLock { $0.watch = watch }
        loop.execute { self.tickOnLoop() }
    }

    /// Every ``DirectDevice/reaperTickMilliseconds``, as the reaper thread
    /// would wake: deadlines and a close's give-up time are noticed here.
    private func tickOnLoop() {
        serviceOnLoop()
        guard let loop else { return }
        onLoop.withLock { state in
            guard !state.stopped else { return }
            state.timer = loop.schedule(at: clock.now() + .milliseconds(DirectDevice.reaperTickMilliseconds)) { self.tickOnLoop() }
        }
    }

    /// What the reaper thread does in one round, without waiting: reap the
    /// completions there are, submit what the freed slots allow, answer
    /// expired I/O, and finish a close that may finish.
    private func serviceOnLoop() {
        guard let completions, !onLoop.withLock({ $0.stopped }) else { return }
        var signalled: UInt64 = 0
        // EAGAIN: nothing signalled since the last drain (a tick, or the caller's poll reaped it).
        _ = Glibc.read(completions.rawValue, &signalled, MemoryLayout<UInt64>.size)
        var noWait = timespec(tv_sec: 0, tv_nsec: 0)
        while true {
            let count = (try? Syscall.runAIO(SyscallContext("io_getevents", path: path), {
                io_getevents(context.raw, 0, DirectDevice.maxInFlight, reaped, &noWait)
            })).map(Int.init) ?? 0
            for index in 0 ..< count { reap(reaped[index]) }
            if count < DirectDevice.maxInFlight { break }
        }
        submitReady()
        let tick = expireAndPlan(now: clock.now())
        answerExpired(tick.expired)
        if let ending = tick.ending {
            finishClose(ending)
            stopOnLoop()
        }
    }

    /// After a close: the loop lets go of the eventfd and the core.
    private func stopOnLoop() {
        guard let loop, let completions else { return }
        let (watch, timer) = onLoop.withLock { state in
            state.stopped = true
            return (state.watch, state.timer)
        }
        if let timer { loop.cancel(timer) }
        if let watch { loop.unwatch(watch) }
        // The kernel holds its own reference for I/O a leaking close left behind.
        try? Syscall.close(completions, path: path)
    }

    // MARK: The reaper

    /// The reaper's name in ps, top and gdb (at most 15 bytes).
    static let reaperThreadName = "tenure-aio-reap"

    /// The reaper holds the core strongly until it has torn it down.
    private func startReaper() throws(TenureError) {
        try DetachedThread.start(name: Self.reaperThreadName, for: path) { self.runReaper() }
    }

    /// The reaper's loop: answer expired I/O, wait for completions (at most
    /// until the nearest deadline, and no longer than a tick), answer them,
    /// submit what the freed slots allow; until a close has finished.
    private func runReaper() {
        // Refused without CAP_SYS_NICE: the renewal thread reports the same refusal.
        if let realtimePriority { _ = tenure_set_realtime_current_thread(realtimePriority) }
        while true {
            let now = clock.now()
            let tick = expireAndPlan(now: now)
            answerExpired(tick.expired)
            if let ending = tick.ending {
                finishClose(ending)
                return
            }
            let count = waitForCompletions(reaped, timeout: tick.wait)
            for index in 0 ..< count {
                reap(reaped[index])
            }
            submitReady()
        }
    }

    private struct Tick {
        var expired: [(IOToken, Table.Expired)] = []
        var ending: Ending?
        var wait: Duration = .zero
    }

    /// How a close ends: cleanly, or leaking what the kernel never returned.
    private enum Ending {
        case drained(waiters: [CheckedContinuation<Void, Never>])
        case leaking(waiters: [CheckedContinuation<Void, Never>], resources: [IORequest], closeDescriptor: Bool)
    }

    private func expireAndPlan(now: MonotonicInstant) -> Tick {
        state.withLock { state in
            var tick = Tick()
            for token in state.table.expired(at: now) {
                if let expired = state.table.expire(token) {
                    tick.expired.append((token, expired))
                    state.statistics.timeouts += 1
                }
            }
            var closeGiveUpAt: MonotonicInstant?
            if case .closing(let giveUpAt) = state.lifecycle {
                closeGiveUpAt = giveUpAt
                if state.table.isEmpty {
                    tick.ending = .drained(waiters: state.closeWaiters)
                } else if now >= giveUpAt {
                    tick.ending = .leaking(waiters: state.closeWaiters, resources: state.table.abandonedResources,
                                           closeDescriptor: state.submitsInProgress == 0)
                }
                if tick.ending != nil {
                    state.lifecycle = .closed
                    state.closeWaiters = []
                }
            }
            let deadlines = [state.table.nearestDeadline, closeGiveUpAt].compactMap { $0 }
            tick.wait = reaperWait(now: now, nearestDeadline: deadlines.min())
            return tick
        }
    }

    private func answerExpired(_ expired: [(IOToken, Table.Expired)]) {
        for (token, entry) in expired {
            let request = entry.resource
            entry.waiter.resume(throwing: timeoutError(request, submitted: entry.phase == .submitted))
            if entry.phase == .submitted { tryCancel(token, request) }
        }
    }

    /// Asks the kernel to cancel an abandoned I/O. Block devices and most
    /// filesystems do not support it (EINVAL); current kernels answer
    /// EINPROGRESS and deliver the completion through io_getevents; only old
    /// kernels answer 0, having returned the I/O right here.
    private func tryCancel(_ token: IOToken, _ request: IORequest) {
        var result = io_event()
        let cancelled = (try? Syscall.runAIO(request.context(path: path).with(call: "io_cancel"), {
            io_cancel(context.raw, request.iocb, &result)
        })) == 0
        if cancelled {
            state.withLock { state in _ = state.table.complete(token) }
        }
    }

    private func waitForCompletions(_ events: UnsafeMutablePointer<io_event>, timeout: Duration) -> Int {
        let nanoseconds = Int(timeout.nanosecondsClamped)
        var wait = timespec(tv_sec: nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
        do {
            let count = try Syscall.runAIO(SyscallContext("io_getevents", path: path), {
                io_getevents(context.raw, 1, DirectDevice.maxInFlight, events, &wait)
            })
            return Int(count)
        } catch {
            // The context is ours and alive, the buffer and timeout valid: any
            // failure here is a bug, and the reaper cannot go on without it.
            preconditionFailure("io_getevents on \(path) failed: \(error)")
        }
    }

    /// Answers one completion, or frees an abandoned I/O the kernel has returned.
    private func reap(_ event: io_event) {
        let token = IOToken(rawValue: UInt64(UInt(bitPattern: event.data)))
        let result = Int(bitPattern: event.res)
        let (finished, outcome): (Table.Finished?, Outcome) = state.withLock { state in
            guard let finished = state.table.complete(token) else {
                preconditionFailure("io_getevents on \(path) returned \(token), which no request holds")
            }
            let outcome = Outcome(result: result, length: finished.resource.length)
            if finished.waiter != nil { state.statistics.record(outcome, finished.resource.kind, length: finished.resource.length) }
            return (finished, outcome)
        }
        guard let finished, let waiter = finished.waiter else { return }
        let request = finished.resource
        switch outcome {
        case .complete:
            waiter.resume(returning: request.kind == .read ? request.buffer.bytes : [])
        case .failed(let errno):
            waiter.resume(throwing: Syscall.error(errno, request.context(path: path)))
        case .short(let transferred):
            waiter.resume(throwing: shortError(request, transferred: transferred))
        }
    }

    private func finishClose(_ ending: Ending) {
        switch ending {
        case .drained(let waiters):
            // Nothing is in flight, so io_destroy returns at once; neither
            // failure would leave anything to clean up.
            _ = try? Syscall.runAIO(SyscallContext("io_destroy", path: path), { io_destroy(context.raw) })
            try? Syscall.close(fd, path: path)
            waiters.forEach { $0.resume() }
        case .leaking(let waiters, let resources, let closeDescriptor):
            // The kernel still owns these I/Os and may write into their
            // buffers when the storage answers: keep them, and the io_context
            // (io_destroy would block until the storage answers), forever
            // rather than hand their memory back.
            for resource in resources { _ = Unmanaged.passRetained(resource) }
            // Each submitted I/O holds its own reference to the open file, so
            // the descriptor can go, unless a thread is still between taking a
            // request and io_submit: it must not find the number reused.
            if closeDescriptor { try? Syscall.close(fd, path: path) }
            waiters.forEach { $0.resume() }
        }
    }

    // MARK: Errors

    private func closedError(_ request: IORequest) -> TenureError {
        TenureError(.deviceClosed, "\(request.context(path: path)) refused: the device is closed.",
                    remedy: "Open the device again.")
    }

    private func queueFullError(_ request: IORequest) -> TenureError {
        TenureError(
            .ioFailed,
            "\(request.context(path: path)) refused: \(DirectDevice.maxQueued) I/Os already wait for one of the device's \(DirectDevice.maxInFlight) slots.",
            remedy: "The storage is not keeping up; check it, or issue fewer I/Os at once.")
    }

    private func timeoutError(_ request: IORequest, submitted: Bool) -> TenureError {
        let context = request.context(path: path)
        if submitted {
            return TenureError(
                .ioTimeout,
                "\(context) did not complete within \(secondsText(ioTimeout)); it is abandoned to the kernel, which keeps its buffer until it returns.",
                remedy: "Check the storage and its path (multipath, SAN, network) and the kernel log; the I/O may be retried.")
        }
        return TenureError(
            .ioTimeout,
            "\(context) did not complete within \(secondsText(ioTimeout)): it waited for a slot, all \(DirectDevice.maxInFlight) being held by I/O the kernel has not returned.",
            remedy: "Check the storage and its path (multipath, SAN, network) and the kernel log.")
    }

    private func shortError(_ request: IORequest, transferred: Int) -> TenureError {
        TenureError(
            .shortIO,
            "\(request.context(path: path)) transferred only \(transferred) bytes.",
            remedy: "The file or device may have shrunk; check its size.")
    }
}

/// How a reaped I/O ended.
enum Outcome: Equatable {
    case complete
    case failed(Errno)
    case short(transferred: Int)

    /// From io_event's `res`: bytes transferred, or a negated errno.
    init(result: Int, length: Int) {
        if result < 0 {
            self = .failed(Errno(rawValue: Int32(clamping: -result)))
        } else if result != length {
            self = .short(transferred: result)
        } else {
            self = .complete
        }
    }
}

extension IOStatistics {
    /// Counts a reaped I/O whose caller was still waiting.
    mutating func record(_ outcome: Outcome, _ kind: IORequest.Kind, length: Int) {
        if outcome == .complete {
            recordCompleted(kind, bytes: length)
        } else {
            failures += 1
        }
    }

    mutating func recordCompleted(_ kind: IORequest.Kind, bytes: Int) {
        switch kind {
        case .read:
            reads += 1
            bytesRead += UInt64(bytes)
        case .write:
            writes += 1
            bytesWritten += UInt64(bytes)
        }
    }
}

/// How long the reaper may sleep in io_getevents: until the nearest deadline,
/// but never longer than ``DirectDevice/reaperTickMilliseconds``.
func reaperWait(now: MonotonicInstant, nearestDeadline: MonotonicInstant?) -> Duration {
    let tick = Duration.milliseconds(DirectDevice.reaperTickMilliseconds)
    guard let nearestDeadline else { return tick }
    return min(tick, nearestDeadline - now)
}

extension SyscallContext {
    /// The same I/O, named as the call that failed.
    func with(call: String) -> SyscallContext {
        var copy = self
        copy.call = call
        return copy
    }
}
