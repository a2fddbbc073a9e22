import Glibc
import TenureCore

/// Unix stream sockets through the ``Syscall`` path: the daemon's listening
/// socket and connections, and the client's connection. Every call retries
/// `EINTR` and fails with a ``TenureError`` that names the call and the
/// socket's path; callers that know better (the client: "is the daemon
/// running?") wrap it with their own message and keep its errno.
public enum UnixSocket {
    /// The most bytes a socket path may have (sun_path, less its NUL).
    public static let maxPathBytes = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// `path` as a socket address; refuses one too long for sun_path.
    public static func address(_ path: String) throws(TenureError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count <= maxPathBytes else {
            throw TenureError(.invalidArgument, "The socket path \(path) is \(bytes.count) bytes, longer than the \(maxPathBytes) a Unix socket allows.",
                              remedy: "Use a shorter run dir.")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    /// A new stream socket, close-on-exec.
    static func stream(_ path: String) throws(TenureError) -> FileDescriptor {
        FileDescriptor(rawValue: try Syscall.run(SyscallContext("socket", path: path)) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
    }

    /// Connects to the socket at `path`.
    public static func connect(to path: String) throws(TenureError) -> FileDescriptor {
        var address = try address(path)
        let fd = try stream(path)
        do {
            try Syscall.run(SyscallContext("connect", path: path)) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
        } catch {
            try? Syscall.close(fd, path: path)
            throw error
        }
        return fd
    }

    /// Binds a new socket at `path` (replacing whatever is there: the
    /// caller must know no live server uses it) and listens.
    public static func listen(at path: String, backlog: Int32) throws(TenureError) -> FileDescriptor {
        var address = try address(path)
        let fd = try stream(path)
        do {
            try Syscall.removeIfPresent(path)
            try Syscall.run(SyscallContext("bind", path: path)) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
            try Syscall.run(SyscallContext("listen", path: path)) { Glibc.listen(fd.rawValue, backlog) }
        } catch {
            try? Syscall.close(fd, path: path)
            throw error
        }
        return fd
    }

    /// Why ``accept(_:path:)`` returned no connection.
    public enum AcceptOutcome {
        case connection(FileDescriptor)
        /// The peer left before it was accepted: accept again.
        case peerGone
        /// The listener was shut down: stop accepting.
        case listenerClosed
        /// A non-blocking listener has no connection waiting.
        case noneWaiting
    }

    /// Accepts one connection and marks it close-on-exec (Glibc's module
    /// lacks accept4; the daemon forks nothing between the two calls but
    /// killpaths, which close every descriptor above 2). A listener shut
    /// down by another thread (EINVAL, EBADF) ends accepting instead of
    /// stopping the process.
    public static func accept(_ listener: FileDescriptor, path: String) throws(TenureError) -> AcceptOutcome {
        while true {
            let fd = Glibc.accept(listener.rawValue, nil, nil)
            if fd >= 0 {
                let connection = FileDescriptor(rawValue: fd)
                do {
                    try Syscall.run(SyscallContext("fcntl(F_SETFD)", path: path)) { fcntl(fd, F_SETFD, FD_CLOEXEC) }
                } catch {
                    try? Syscall.close(connection, path: path)
                    throw error
                }
                return .connection(connection)
            }
            let errno = Errno.current
            switch errno.rawValue {
            case EINTR: continue
            case ECONNABORTED: return .peerGone
            case EINVAL, EBADF: return .listenerClosed
            case EAGAIN: return .noneWaiting
            default: throw Syscall.error(errno, SyscallContext("accept4", path: path))
            }
        }
    }

    /// Sends all of `bytes` (no SIGPIPE: a peer gone is an error, not a signal).
    public static func sendAll(_ bytes: [UInt8], to fd: FileDescriptor, path: String) throws(TenureError) {
        var sent = 0
        while sent < bytes.count {
            sent += try Syscall.run(SyscallContext("send", path: path, length: bytes.count - sent)) {
                bytes[sent...].withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    /// Sends `bytes` at once or not at all (a full socket buffer is a peer
    /// that does not read): false when the send failed or fell short.
    public static func sendWithoutWaiting(_ bytes: [UInt8], to fd: FileDescriptor) -> Bool {
        while true {
            let n = bytes.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            if n < 0 && Errno.current == .interrupted { continue }
            return n == bytes.count
        }
    }

    /// Tells the service manager something (systemd's notify protocol, as
    /// `Type=notify` units expect: "READY=1" once serving, "STOPPING=1"):
    /// one datagram to $NOTIFY_SOCKET, a path or an abstract name ("@…").
    /// Does nothing when the variable is unset (not started by systemd).
    public static func notifyServiceManager(_ state: String, socket path: String?) throws(TenureError) {
        guard let path, !path.isEmpty else { return }
        var address = try self.address(path.hasPrefix("@") ? "\0" + path.dropFirst() : path)
        // An abstract name is counted by its length, not up to a NUL.
        let length = path.hasPrefix("@") ? MemoryLayout<sa_family_t>.size + path.utf8.count : MemoryLayout<sockaddr_un>.size
        let fd = FileDescriptor(rawValue: try Syscall.run(SyscallContext("socket", path: path)) {
            socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        defer { try? Syscall.close(fd, path: path) }
        let bytes = Array(state.utf8)
        _ = try Syscall.run(SyscallContext("sendto", path: path, length: bytes.count)) {
            bytes.withUnsafeBytes { buffer in
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        Glibc.sendto(fd.rawValue, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL), $0, socklen_t(length))
                    }
                }
            }
        }
    }

    /// Reads up to `count` bytes into `buffer` from `offset`; 0 means the peer closed.
    public static func receive(into buffer: inout [UInt8], at offset: Int, count: Int, from fd: FileDescriptor, path: String) throws(TenureError) -> Int {
        try Syscall.run(SyscallContext("read", path: path, length: count)) {
            buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress! + offset, count) }
        }
    }

    /// Reads what is there, without waiting: up to `count` bytes appended
    /// to `buffer`. The count read; 0 when the peer closed; nil when nothing
    /// is there yet (EAGAIN).
    public static func receiveAvailable(into buffer: inout [UInt8], count: Int, from fd: FileDescriptor, path: String) throws(TenureError) -> Int? {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: count))
        let result: Int
        do {
            result = try Syscall.run(SyscallContext("recv", path: path, length: count)) {
                buffer.withUnsafeMutableBytes { Glibc.recv(fd.rawValue, $0.baseAddress! + start, count, Int32(MSG_DONTWAIT)) }
            }
        } catch where error.errno == EAGAIN {
            buffer.removeLast(count)
            return nil
        }
        buffer.removeLast(count - result)
        return result
    }

    /// Sends what the socket takes now, without waiting: the count sent
    /// (0 when its buffer is full). No SIGPIPE: a peer gone is an error.
    public static func sendAvailable(_ bytes: ArraySlice<UInt8>, to fd: FileDescriptor, path: String) throws(TenureError) -> Int {
        do {
            return try Syscall.run(SyscallContext("send", path: path, length: bytes.count)) {
                bytes.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
            }
        } catch where error.errno == EAGAIN {
            return 0
        }
    }

    /// Makes a listener's accept return at once when no connection waits
    /// (``AcceptOutcome/noneWaiting``), for an event loop.
    public static func setNonBlocking(_ fd: FileDescriptor, path: String) throws(TenureError) {
        let flags = try Syscall.run(SyscallContext("fcntl(F_GETFL)", path: path)) { fcntl(fd.rawValue, F_GETFL) }
        try Syscall.run(SyscallContext("fcntl(F_SETFL)", path: path)) { fcntl(fd.rawValue, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Reads exactly `count` bytes. nil when the peer closed before the first
    /// byte and `eofAllowed` (it left between messages); a peer that hangs
    /// up part-way is a `.protocolError`.
    public static func receiveExactly(_ count: Int, from fd: FileDescriptor, path: String,
                                      eofAllowed: Bool = false) throws(TenureError) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = try receive(into: &buffer, at: got, count: count - got, from: fd, path: path)
            if n == 0 {
                if got == 0 && eofAllowed { return nil }
                throw TenureError(.protocolError, "The peer on \(path) hung up after \(got) of \(count) bytes of a message.")
            }
            got += n
        }
        return buffer
    }

    /// Whether `fd` has something to read (or was closed) within `timeout`.
    public static func waitReadable(_ fd: FileDescriptor, within timeout: Duration, path: String) throws(TenureError) -> Bool {
        var p = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
        let ms = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        return try Syscall.run(SyscallContext("poll", path: path)) { poll(&p, 1, ms) } != 0
    }

    /// Stops both directions: a thread blocked in accept or read returns.
    public static func shutdown(_ fd: FileDescriptor, path: String) {
        // ENOTCONN for a listener is expected; nothing else can fail here.
        _ = Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR))
    }
}

extension Syscall {
    /// Removes `path`; one already gone is not an error.
    public static func removeIfPresent(_ path: String) throws(TenureError) {
        guard unlink(path) != 0 else { return }
        let errno = Errno.current
        if errno.rawValue == ENOENT { return }
        throw error(errno, SyscallContext("unlink", path: path))
    }
}
