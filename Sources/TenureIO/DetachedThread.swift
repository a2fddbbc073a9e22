import CTenureSys
import Glibc
import TenureCore
import TenureSyscall

/// The daemon's own threads (each device's I/O reaper, the renewal
/// thread): detached pthreads, named for ps, top and gdb, that keep what
/// they run alive until it returns.
enum DetachedThread {
    private final class Body {
        let name: String
        let run: () -> Void
        init(name: String, run: @escaping () -> Void) {
            self.name = name
            self.run = run
        }
    }

    /// Starts a thread named `name` (at most 15 bytes) running `run`.
    /// - Parameter path: what the thread serves, for a failure's message.
    static func start(name: String, for path: String, _ run: @escaping () -> Void) throws(TenureError) {
        let retained = Unmanaged.passRetained(Body(name: name, run: run))
        var thread = pthread_t()
        do {
            try Syscall.runReturningErrno(SyscallContext("pthread_create", path: path), {
                pthread_create(&thread, nil, { argument in
                    let body = Unmanaged<Body>.fromOpaque(argument!).takeRetainedValue()
                    // Fails only for a name over 15 bytes; the name is for ps and gdb only.
                    _ = tenure_name_current_thread(body.name)
                    body.run()
                    return nil
                }, retained.toOpaque())
            })
        } catch {
            retained.release()
            throw error
        }
        // Fails only for a thread id that is not ours: a bug, and a harmless one.
        _ = pthread_detach(thread)
    }
}
