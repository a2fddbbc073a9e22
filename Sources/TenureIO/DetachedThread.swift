import CTenureSys
import Glibc
import TenureCore
import TenureSyscall

/// The daemon's own threads (each device's I/O reaper, the renewal
/// thread, the event loop, the metrics endpoint): detached pthreads with
/// small stacks, named for ps, top and gdb, that keep what
/// they run alive until it returns.
public enum DetachedThread {
    private final class Body {
        let name: String
        let run: () -> Void
        init(name: String, run: @escaping () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// Each thread's stack. Swift's async code keeps its frames on the
    /// heap, so a thread's own stack holds only synchronous calls; 512 KiB
    /// is what Apple's platforms give every secondary thread. With memory
    /// locked (``Starvation``) a stack is resident whole, so its size counts.
    public static let stackBytes = 512 * 1024

    /// Starts a thread named `name` (at most 15 bytes) running `run`.
    /// - Parameter path: what the thread serves, for a failure's message.
    public static func start(name: String, for path: String, _ run: @escaping () -> Void) throws(TenureError) {
        let retained = Unmanaged.passRetained(Body(name: name, run: run))
        do {
            try Syscall.runReturningErrno(SyscallContext("pthread_create", path: path), {
                tenure_start_thread(stackBytes, { argument in
                    let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
                    // Fails only for a name over 15 bytes; the name is for ps and gdb only.
                    _ = tenure_name_current_thread(body.name)
                    // A thread of its own may wait; the loop and the renewal thread say they must not.
                    ThreadRole.assign(.mayBlock)
                    body.run()
                    return nil
                }, retained.toOpaque())
            })
        } catch {
            retained.release()
            throw error
        }
    }

    /// Gives every thread created from now on without a stack size of its
    /// own (the Swift runtime's pool, Dispatch's workers) ``stackBytes``:
    /// the default, 8 MiB from RLIMIT_STACK, would be resident whole in a
    /// daemon that locks its memory. Call it first thing in `main`.
    public static func useSmallStacksByDefault() {
        // Fails only for a size below PTHREAD_STACK_MIN: not ours.
        _ = tenure_set_default_thread_stack(stackBytes)
    }
}
