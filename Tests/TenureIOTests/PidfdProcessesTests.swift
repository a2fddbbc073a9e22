import Glibc
import Testing
import TenureCore
import TenureIO

/// The daemon's local processes: a killpath program is reaped once it has
/// exited, by the fence loop's look at its pidfd — no thread waits for it,
/// and it leaves no zombie.
@Suite struct PidfdProcessesTests {
    @Test func aKillpathThatExitedIsReapedWithoutWaiting() async throws {
        let processes = PidfdProcesses(killPidVariable: "TENURE_KILL_PID")
        let me = getpid()
        processes.track(try LocalProcess.open(pid: me, uid: getuid(), gid: getgid()))
        #expect(processes.runKillpath(["/bin/true"], for: ProcessID(me)))
        let child = try #require(processes.unreapedChildren.first)
        var reaped = 0
        for _ in 0..<500 where reaped == 0 {
            reaped = processes.reapChildren()
            if reaped == 0 { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(reaped == 1 && processes.unreapedChildren.isEmpty, "the killpath was not reaped")
        // Reaped, not left a zombie: that child is no longer ours to wait for.
        var status: Int32 = 0
        #expect(waitpid(child, &status, WNOHANG) == -1 && errno == ECHILD)
    }

    @Test func aKillpathStillRunningIsLeftAlone() throws {
        let processes = PidfdProcesses(killPidVariable: "TENURE_KILL_PID")
        let me = getpid()
        processes.track(try LocalProcess.open(pid: me, uid: getuid(), gid: getgid()))
        #expect(processes.runKillpath(["/bin/sleep", "0.5"], for: ProcessID(me)))
        #expect(processes.reapChildren() == 0 && processes.unreapedChildren.count == 1)
    }
}
