import Foundation
import Synchronization
import Testing
import TenureTestSupport
import TenureCore
import TenureIO
import TenureSyscall

// The daemon's event loop: where work runs, that work from other threads
// wakes it, its timers, and the sockets and devices it serves.

/// One loop for the suite: a loop's thread lives as long as the process.
let testLoop = try! EventLoop()

/// An actor whose executor is the loop, as the daemon's is.
actor OnTheLoop {
    nonisolated var unownedExecutor: UnownedSerialExecutor { testLoop.asUnownedSerialExecutor() }
    var calls = 0
    func call() -> Bool {
        calls += 1
        return testLoop.isCurrent
    }
}

/// Waits (on the calling thread) until `condition` holds, at most `limit`:
/// a bound only a failure reaches, not a guess of how long the loop takes
/// on a machine the rest of the suite keeps busy.
func eventually(within limit: Duration = .seconds(60), _ condition: () -> Bool) -> Bool {
    let until = ContinuousClock.now + limit
    while ContinuousClock.now < until {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// A connected pair of Unix stream sockets.
func socketPair() -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [0, 0]
    precondition(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
    return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
}

func writeBytes(_ bytes: [UInt8], to fd: FileDescriptor) {
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
        precondition(n > 0)
        sent += n
    }
}

@Suite("The event loop", .ownThreads)
struct EventLoopTests {
    @Test func anActorOnTheLoopAndTasksPreferringItRunOnItsThread() async {
        let actor = OnTheLoop()
        #expect(!testLoop.isCurrent, "the test itself runs elsewhere")
        #expect(await actor.call())
        let inTask = await Task(executorPreference: testLoop) { () async -> Bool in
            // Nonisolated code in a task that prefers the loop runs there too.
            testLoop.isCurrent
        }.value
        #expect(inTask)
        #expect(await actor.calls == 1)
    }

    @Test func workFromAnotherThreadWakesTheSleepingLoop() {
        let ran = Atomic<Int>(0)
        for _ in 0 ..< 50 {
            usleep(200) // let the loop go back to sleep in epoll_wait
            testLoop.execute { if testLoop.isCurrent { ran.add(1, ordering: .relaxed) } }
        }
        #expect(eventually { ran.load(ordering: .relaxed) == 50 }, "ran \(ran.load(ordering: .relaxed)) of 50 on the loop")
    }

    @Test func theEndOfARoundRunsAfterTheWorkTakenTogetherAndBeforeWhatItBegot() {
        let order = Mutex<[String]>([])
        testLoop.execute {
            // Both queued from the loop itself: the next round takes them together.
            testLoop.execute {
                order.withLock { $0.append("first") }
                testLoop.atEndOfRound { order.withLock { $0.append("end of round") } }
                testLoop.execute { order.withLock { $0.append("next round") } }
            }
            testLoop.execute { order.withLock { $0.append("second") } }
        }
        #expect(eventually { order.withLock { $0.count } == 4 })
        #expect(order.withLock { $0 } == ["first", "second", "end of round", "next round"])
    }

    @Test func theEndOfARoundAskedForFromAnotherThreadStillRuns() {
        let ran = Atomic<Bool>(false)
        usleep(200) // let the loop go back to sleep in epoll_wait
        testLoop.atEndOfRound { ran.store(testLoop.isCurrent, ordering: .relaxed) }
        #expect(eventually { ran.load(ordering: .relaxed) })
    }

    @Test func timersFireInDeadlineOrderAndACancelledOneNever() {
        let fired = Mutex<[Int]>([])
        let now = SystemMonotonicClock.shared.now()
        testLoop.schedule(at: now + .milliseconds(60)) { fired.withLock { $0.append(3) } }
        testLoop.schedule(at: now + .milliseconds(20)) { fired.withLock { $0.append(1) } }
        let cancelled = testLoop.schedule(at: now + .milliseconds(30)) { fired.withLock { $0.append(99) } }
        testLoop.schedule(at: now + .milliseconds(40)) { fired.withLock { $0.append(2) } }
        #expect(testLoop.cancel(cancelled))
        #expect(eventually { fired.withLock { $0.count } == 3 })
        usleep(50_000)
        #expect(fired.withLock { $0 } == [1, 2, 3])
        let elapsed = SystemMonotonicClock.shared.now() - now
        #expect(elapsed >= .milliseconds(60), "no timer fires before its deadline")
    }

    @Test func aMessageSentInPiecesIsReadWhole() async throws {
        let (ours, theirs) = socketPair()
        defer { try? Syscall.close(theirs, path: "test") }
        let message = pattern(7, count: 3000)
        let (first, second) = try await Task(executorPreference: testLoop) { () async throws -> ([UInt8]?, [UInt8]?) in
            let socket = try LoopSocket(ours, path: "test", loop: testLoop)
            defer { socket.close() }
            let writer = Thread {
                for piece in stride(from: 0, to: message.count, by: 700) {
                    writeBytes(Array(message[piece ..< min(piece + 700, message.count)]), to: theirs)
                    usleep(5000)
                }
                Glibc.shutdown(theirs.rawValue, Int32(SHUT_WR))
            }
            writer.start()
            let whole = try await socket.receiveExactly(3000, eofAllowed: true)
            let afterEnd = try await socket.receiveExactly(16, eofAllowed: true)
            return (whole, afterEnd)
        }.value
        #expect(first == message)
        #expect(second == nil, "the peer's clean end between messages reads as nil")
    }

    @Test func aPeerThatHangsUpMidMessageIsAProtocolError() async throws {
        let (ours, theirs) = socketPair()
        writeBytes([1, 2, 3, 4, 5], to: theirs)
        try Syscall.close(theirs, path: "test")
        let error = await Task(executorPreference: testLoop) { () async -> TenureError? in
            guard let socket = try? LoopSocket(ours, path: "test", loop: testLoop) else { return nil }
            defer { socket.close() }
            do throws(TenureError) {
                _ = try await socket.receiveExactly(16, eofAllowed: true)
                return nil
            } catch {
                return error
            }
        }.value
        #expect(error?.code == .protocolError)
        #expect(error?.message.contains("after 5 of 16 bytes") == true)
    }

    @Test func waitingToReadEndsAtItsDeadlineOrWhenBytesCome() async throws {
        let (ours, theirs) = socketPair()
        defer { try? Syscall.close(theirs, path: "test") }
        let clock = SystemMonotonicClock.shared
        let (timedOut, waited, thenReadable) = try await Task(executorPreference: testLoop) { () async throws -> (Bool, Duration, Bool) in
            let socket = try LoopSocket(ours, path: "test", loop: testLoop)
            defer { socket.close() }
            let started = clock.now()
            let first = await socket.waitReadable(until: started + .milliseconds(80))
            let waited = clock.now() - started
            Thread { usleep(20_000); writeBytes([42], to: theirs) }.start()
            let second = await socket.waitReadable(until: clock.now() + .seconds(10))
            return (!first, waited, second)
        }.value
        #expect(timedOut)
        #expect(waited >= .milliseconds(80))
        #expect(thenReadable)
    }

    @Test func aLargeReplyReachesAPeerThatReadsLate() async throws {
        let (ours, theirs) = socketPair()
        defer { try? Syscall.close(theirs, path: "test") }
        let reply = pattern(3, count: 4 << 20) // far more than a socket buffer holds
        let received = Mutex<[UInt8]>([])
        let reader = Thread {
            usleep(100_000) // the daemon's send finds the buffer full first
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = chunk.withUnsafeMutableBytes { Glibc.read(theirs.rawValue, $0.baseAddress, $0.count) }
                if n <= 0 { return }
                received.withLock { $0 += chunk[..<n] }
            }
        }
        reader.start()
        try await Task(executorPreference: testLoop) {
            let socket = try LoopSocket(ours, path: "test", loop: testLoop)
            try await socket.sendAll(reply)
            socket.close()
        }.value
        #expect(eventually { received.withLock { $0.count } == reply.count })
        #expect(received.withLock { $0 } == reply)
    }
}
