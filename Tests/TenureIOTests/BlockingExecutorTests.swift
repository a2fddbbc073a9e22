import Dispatch
import Glibc
import Synchronization
import Testing
import TenureIO
import TenureSyscall
import TenureTestSupport

// Blocking work off the cooperative pool (issue 26): what ThreadRole says
// of each kind of thread, and that BlockingExecutor gives a job that blocks
// a thread of its own.

@Suite("Blocking work runs on threads of its own", .timeLimit(.minutes(1)))
struct BlockingExecutorTests {
    @Test("A task on the pool may not block; one on BlockingExecutor, a thread of the process's own, or no task may")
    func roles() async throws {
        let onPool = await Task.detached { (ThreadRole.onCooperativePool, ThreadRole.refusal("x")) }.value
        #expect(onPool.0)
        #expect(onPool.1?.contains("cooperative pool") == true)

        let onBlocking = await Task(executorPreference: BlockingExecutor.shared) { (ThreadRole.current, ThreadRole.refusal("x")) }.value
        #expect(onBlocking.0 == .mayBlock)
        #expect(onBlocking.1 == nil)

        let onLoop = await Task(executorPreference: testLoop) { ThreadRole.refusal("x") }.value
        #expect(onLoop?.contains("must not block") == true)

        let onThread = Mutex<String??>(nil)
        let done = DispatchSemaphore(value: 0)
        try DetachedThread.start(name: "test-thread", for: "the test") {
            onThread.withLock { $0 = .some(ThreadRole.refusal("x")) }
            done.signal()
        }
        await Task.detached(executorPreference: BlockingExecutor.shared) { done.wait() }.value
        #expect(onThread.withLock { $0 } == .some(nil))
    }

    @Test("More blocked jobs than cores do not stop a task on the pool: each has a thread of its own")
    func blockedJobsLeaveThePoolFree() async throws {
        // Each blocker waits for a signal that only a task on the pool sends.
        // Were the blockers on the pool (one thread per core), that task
        // could never run, and this test would hang until its time limit.
        let blockers = 2 * max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let tasks = (0..<blockers).map { _ in
            Task(executorPreference: BlockingExecutor.shared) { () -> ThreadRole.Role? in
                started.signal()
                release.wait()
                return ThreadRole.current
            }
        }
        await Task.detached(executorPreference: BlockingExecutor.shared) { for _ in 0..<blockers { started.wait() } }.value
        #expect(BlockingExecutor.shared.workerCount >= blockers)
        await Task.detached {
            #expect(ThreadRole.onCooperativePool)
            for _ in 0..<blockers { release.signal() }
        }.value
        for task in tasks { #expect(await task.value == .mayBlock) }
    }

    @Test("A test with .ownThreads runs its body, synchronous or not, off the pool", .ownThreads)
    func traitMovesTheBody() async {
        #expect(ThreadRole.current == .mayBlock)
        #expect(!ThreadRole.onCooperativePool)
        // Child tasks inherit the preference; an unstructured Task does not
        // (SE-0417), so blocking work started with `Task { }` must name the executor.
        async let child = ThreadRole.current
        #expect(await child == .mayBlock)
        let inGroup = await withTaskGroup(of: ThreadRole.Role?.self) { group in
            group.addTask { ThreadRole.current }
            return await group.next()!
        }
        #expect(inGroup == .mayBlock)
        #expect(await Task { ThreadRole.current }.value == nil)
        #expect(await Task(executorPreference: BlockingExecutor.shared) { ThreadRole.current }.value == .mayBlock)
    }

    @Test("…and a synchronous body too", .ownThreads)
    func traitMovesASynchronousBody() {
        #expect(ThreadRole.current == .mayBlock)
    }

    @Test("The pool watch notes a pool that every thread of it blocks", .ownThreads)
    func poolWatchTripsOnABlockedPool() async throws {
        // A watch of the test's own, with a bound far below the suite's
        // (15 s): blocking the pool here for 2 s trips it and not the shared one.
        let watch = PoolWatch(period: .milliseconds(50), stallBound: .milliseconds(500))
        defer { watch.stop() }
        watch.start()
        // One blocker per pool thread and as many again; a thread of its own
        // lets them go after 2 s.
        let blockers = 2 * max(2, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let release = DispatchSemaphore(value: 0)
        let blocked = ContinuousClock.now
        let tasks = (0..<blockers).map { _ in Task.detached { release.wait() } }
        try DetachedThread.start(name: "test-release", for: "the test") {
            usleep(2_000_000)
            for _ in 0..<blockers { release.signal() }
        }
        for task in tasks { await task.value }
        // The heartbeat's next turn ends the stall.
        try await Task.detached { try await Task.sleep(for: .milliseconds(200)) }.value
        let stalls = watch.stalls(since: blocked)
        // The heartbeat was due at most one period after the pool blocked
        // and ran again only once it was free: a stall of nearly 2 s.
        #expect(stalls.contains { $0.until - $0.from >= .milliseconds(1500) }, "\(stalls)")
    }
}
