import Glibc

/// What a thread may do while it waits: the rule that keeps Swift's
/// cooperative pool (one thread per core: two on the machines CI runs on)
/// from starving.
///
/// Async code runs on the cooperative pool unless its task prefers an
/// executor of its own. A call that blocks there (waitpid, a blocking read,
/// a semaphore, usleep) takes one of those few threads away from every
/// other task of the process for as long as it waits; two such calls stop
/// them all. So every call that blocks goes through
/// ``checkMayBlock(_:)``, and a thread says what it is for:
///
/// | thread | role |
/// |---|---|
/// | `BlockingExecutor`'s workers, the metrics endpoint, a reaper, any thread the process starts for one job | ``Role/mayBlock`` |
/// | the event loop, the renewal thread | ``Role/mustNotBlock`` (everything queued on them waits) |
/// | a thread running a task that set no role: the cooperative pool | refused |
/// | a thread outside any task (main before it awaits, a C callback) | allowed |
///
/// The check costs a thread-local read. A debug build stops at a refused
/// call (it is our bug, like EBADF, and a test run shows where); a release
/// build lets the call through, since a stalled task is better than a
/// stopped daemon.
public enum ThreadRole {
    /// What the calling thread is for.
    public enum Role: Int, Sendable {
        /// Waits in blocking calls by design.
        case mayBlock = 1
        /// Runs queued work that others wait for: never blocks.
        case mustNotBlock = 2
    }

    // The role is kept as a tagged pointer value in a pthread key: no
    // allocation, no cleanup when the thread ends.
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        precondition(pthread_key_create(&key, nil) == 0, "pthread_key_create failed: out of thread-local keys")
        return key
    }()

    /// Gives the calling thread `role` for the rest of its life.
    public static func assign(_ role: Role) {
        _ = pthread_setspecific(key, UnsafeRawPointer(bitPattern: role.rawValue))
    }

    /// The calling thread's role, if it was given one.
    public static var current: Role? {
        pthread_getspecific(key).flatMap { Role(rawValue: Int(bitPattern: $0)) }
    }

    /// Whether the caller is a task running on a thread that was given no
    /// role: a thread of the cooperative pool.
    public static var onCooperativePool: Bool {
        current == nil && withUnsafeCurrentTask { $0 != nil }
    }

    /// Why a blocking call may not run here, or nil when it may.
    public static func refusal(_ what: String) -> String? {
        switch current {
        case .mayBlock: return nil
        case .mustNotBlock:
            return "\(what) would block a thread that must not block (the event loop or the renewal thread); give it a thread of its own"
        case nil:
            guard onCooperativePool else { return nil }
            return "\(what) would block a thread of Swift's cooperative pool; run it on BlockingExecutor (or a test on the .ownThreads trait)"
        }
    }

    /// Called before every call that blocks: a debug build stops when the
    /// calling thread may not block (see the table above).
    @inline(__always)
    public static func checkMayBlock(_ what: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
        #if DEBUG
        if let refusal = refusal(what()) {
            StandardError.write("tenure: \(refusal) (\(file):\(line))\n")
            preconditionFailure(refusal, file: file, line: line)
        }
        #endif
    }
}
