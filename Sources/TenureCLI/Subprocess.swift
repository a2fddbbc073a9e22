import CTenureSys
import Glibc
import TenureCore
import TenureSyscall

/// A child process the CLI starts with posix_spawn (the detached daemon,
/// the demo's hosts and holders): what it needs of one, without Foundation.
final class Subprocess: @unchecked Sendable {
    /// Where one of the child's standard streams goes.
    enum Stream {
        case inherit
        case null
        /// Appended to the file (created 0640).
        case file(String)
        /// A descriptor of this process's (dup2'd into the child).
        case descriptor(Int32)
    }

    let processIdentifier: Int32
    let path: String
    let arguments: [String]?
    private var status: Int32?

    /// Starts `path` with `arguments` (argv[0] is `path`) and this process's
    /// environment. The child inherits no descriptor but its three standard
    /// streams (one left open could keep a pipe or a socket of this
    /// process's alive for as long as the child runs). With `newSession`
    /// it leads a session of its own (a detached daemon).
    init(_ path: String, _ arguments: [String], stdin: Stream = .inherit, stdout: Stream = .inherit, stderr: Stream = .inherit,
         newSession: Bool = false) throws(TenureError) {
        self.path = path
        self.arguments = arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (stream, target) in [(stdin, STDIN_FILENO), (stdout, STDOUT_FILENO), (stderr, STDERR_FILENO)] {
            switch stream {
            case .inherit: break
            case .null: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
            case .file(let file): posix_spawn_file_actions_addopen(&actions, target, file, O_WRONLY | O_APPEND | O_CREAT, 0o640)
            case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            }
        }
        try Syscall.runReturningErrno(SyscallContext("posix_spawn_file_actions_addclosefrom_np", path: path)) {
            tenure_spawn_actions_close_from(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        if newSession {
            try Syscall.runReturningErrno(SyscallContext("posix_spawnattr_setflags(POSIX_SPAWN_SETSID)", path: path)) {
                tenure_spawn_attributes_new_session(&attributes)
            }
        }
        let argv = ([path] + arguments).map { strdup($0) }
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        try Syscall.runReturningErrno(SyscallContext("posix_spawn", path: path)) {
            (argv + [nil]).withUnsafeBufferPointer { pointers in
                posix_spawn(&pid, path, &actions, &attributes, UnsafeMutablePointer(mutating: pointers.baseAddress!), environ)
            }
        }
        processIdentifier = pid
    }

    /// Whether the child still runs (reaps it once it has exited).
    var isRunning: Bool {
        if status != nil { return false }
        var raw: Int32 = 0
        let reaped = waitpid(processIdentifier, &raw, WNOHANG)
        guard reaped == processIdentifier else { return reaped == 0 }
        status = raw
        return false
    }

    /// Waits for the child to exit.
    func waitUntilExit() {
        guard status == nil else { return }
        ThreadRole.checkMayBlock("waitpid of \(processIdentifier)")
        var raw: Int32 = 0
        while waitpid(processIdentifier, &raw, 0) < 0 {
            guard errno == EINTR else { status = -1; return }
        }
        status = raw
    }

    /// The exit status, or 128 + the signal that ended it (once exited).
    var terminationStatus: Int32 {
        guard let status else { return -1 }
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    /// Runs `path` to completion: its exit status and what it wrote.
    static func run(_ path: String, _ arguments: [String]) throws(TenureError) -> (status: Int32, stdout: String, stderr: String) {
        var out: [Int32] = [0, 0], err: [Int32] = [0, 0]
        try Syscall.run(SyscallContext("pipe", path: path)) { pipe(&out) }
        try Syscall.run(SyscallContext("pipe", path: path)) { pipe(&err) }
        for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let child: Subprocess
        do {
            child = try Subprocess(path, arguments, stdout: .descriptor(out[1]), stderr: .descriptor(err[1]))
        } catch {
            for fd in out + err { close(fd) }
            throw error
        }
        close(out[1])
        close(err[1])
        ThreadRole.checkMayBlock("reading the output of \(path)")
        let (stdout, stderr) = drain(out[0], err[0])
        close(out[0])
        close(err[0])
        child.waitUntilExit()
        return (child.terminationStatus, stdout, stderr)
    }

    /// Reads both pipes to their ends, whichever has something.
    private static func drain(_ first: Int32, _ second: Int32) -> (String, String) {
        var texts: [[UInt8]] = [[], []]
        var open = [true, true]
        var chunk = [UInt8](repeating: 0, count: 4096)
        while open[0] || open[1] {
            var fds = [pollfd(fd: open[0] ? first : -1, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: open[1] ? second : -1, events: Int16(POLLIN), revents: 0)]
            if poll(&fds, 2, -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for index in 0 ..< 2 where open[index] && fds[index].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[index].fd, $0.baseAddress, $0.count) }
                if n > 0 { texts[index] += chunk[..<n] } else if n == 0 || errno != EINTR { open[index] = false }
            }
        }
        return (String(decoding: texts[0], as: UTF8.self), String(decoding: texts[1], as: UTF8.self))
    }
}

/// This program's own executable (/proc/self/exe, resolved), to start
/// another `tenure` with.
func selfExecutable() -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return CommandLine.arguments[0] }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
