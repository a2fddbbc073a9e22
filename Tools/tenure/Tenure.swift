import Glibc
import TenureCLI
import TenureIO

/// The `tenure` executable: everything lives in TenureCLI so tests can drive
/// the same commands in-process.
@main
enum Tenure {
    static func main() async {
        // Before the runtime starts its threads: 512 KiB stacks, not 8 MiB.
        DetachedThread.useSmallStacksByDefault()
        // Every command runs on threads that may block: a command waits on
        // the daemon's socket, on child processes and on sleeps, which on the
        // cooperative pool would stall the command's other tasks (ThreadRole).
        await withTaskExecutorPreference(BlockingExecutor.shared) {
            // Run as `sanlock` (a link to this binary): sanlock's command line.
            if SanlockCLI.invokedAsSanlock(CommandLine.arguments[0]) {
                exit(await SanlockCLI.main(Array(CommandLine.arguments.dropFirst())))
            }
            await TenureCommand.main(nil)
        }
    }
}
