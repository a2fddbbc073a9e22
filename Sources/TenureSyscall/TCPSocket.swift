import Glibc
import TenureCore

/// TCP, for the one thing the daemon serves over it: the metrics endpoint
/// (`--metrics-listen`). IPv4 only, through the ``Syscall`` path.
public enum TCPSocket {
    /// `HOST:PORT` (an IPv4 address, or `localhost`) as an address; refuses anything else.
    public static func address(_ text: String) throws(TenureError) -> sockaddr_in {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let port = UInt16(parts[1]), port > 0 else {
            throw TenureError(.invalidArgument, "\(text) is not HOST:PORT.", remedy: "For example 127.0.0.1:9464.")
        }
        let host = parts[0] == "localhost" ? "127.0.0.1" : String(parts[0])
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else {
            throw TenureError(.invalidArgument, "\(host) in \(text) is not an IPv4 address.", remedy: "Give one, such as 127.0.0.1 (local only) or 0.0.0.0 (every interface).")
        }
        return address
    }

    /// Listens on `text` (`HOST:PORT`), close-on-exec, the address reusable at once.
    public static func listen(_ text: String, backlog: Int32) throws(TenureError) -> FileDescriptor {
        var address = try address(text)
        let fd = FileDescriptor(rawValue: try Syscall.run(SyscallContext("socket", path: text)) {
            socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        })
        do {
            var on: Int32 = 1
            try Syscall.run(SyscallContext("setsockopt(SO_REUSEADDR)", path: text)) {
                setsockopt(fd.rawValue, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            }
            try Syscall.run(SyscallContext("bind", path: text)) {
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd.rawValue, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
            try Syscall.run(SyscallContext("listen", path: text)) { Glibc.listen(fd.rawValue, backlog) }
        } catch {
            try? Syscall.close(fd, path: text)
            throw error
        }
        return fd
    }
}
