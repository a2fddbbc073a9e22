import CTenureSys
import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// The watchdog: a timer that resets the host unless petted. The daemon pets
/// it only while every lockspace with lease holders is still valid, so a
/// host that cannot kill its holders in time is reset within W of its
/// lockspace's expiry — before any other host may take their leases.
///
/// A character device (/dev/watchdog) gets its fire time by
/// WDIOC_SETTIMEOUT and is petted by WDIOC_KEEPALIVE; a clean stop writes the
/// magic 'V' before closing, which disarms it. A regular file or a FIFO
/// (tests) gets one line per pet, `pet <monotonic nanoseconds>`, and `V` on a
/// clean stop.
public final class WatchdogDevice: Watchdog, @unchecked Sendable {
    public let path: String
    public let fireTime: Duration
    let fd: Int32
    let isDevice: Bool
    /// Whether it was closed; held while petting, so a pet never meets a closed descriptor.
    private let closed = Mutex(false)

    public init(path: String, fire: Duration) throws {
        self.path = path
        self.fireTime = fire
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw TenureError(.notFound, "The watchdog device \(path) does not exist.",
                              remedy: "Load a watchdog driver (e.g. `modprobe softdog`), give --watchdog another device, or --watchdog none on a test setup.")
        }
        let type = info.st_mode & S_IFMT
        isDevice = type == S_IFCHR
        guard isDevice || type == S_IFREG || type == S_IFIFO else {
            throw TenureError(.invalidArgument, "\(path) is not a watchdog device (nor a file or FIFO standing in for one).")
        }
        let flags = O_WRONLY | O_CLOEXEC | (isDevice ? 0 : O_APPEND)
        do {
            fd = try Syscall.run(SyscallContext("open", path: path)) { open(path, flags) }
        } catch {
            throw TenureError(error.code, "Cannot open the watchdog: \(error.message)",
                              remedy: "Run the daemon as root; only one program may hold a watchdog open.", errno: error.errno)
        }
        if isDevice {
            var seconds = Int32(fire.components.seconds)
            do {
                try Syscall.run(SyscallContext("ioctl(WDIOC_SETTIMEOUT)", path: path)) { [fd] in tenure_watchdog_set_timeout(fd, &seconds) }
            } catch {
                try? Syscall.close(FileDescriptor(rawValue: fd), path: path)
                throw TenureError(error.code, "Cannot set the fire time of the watchdog to \(fire): \(error.message)", remedy: error.remedy, errno: error.errno)
            }
        }
    }

    /// Pets the watchdog: its fire time starts again. Throws when the
    /// device refused (the caller logs and counts it).
    public func pet() throws(TenureError) {
        try closed.withLock { (isClosed: inout Bool) throws(TenureError) in
            guard !isClosed else { return }
            do throws(TenureError) {
                if isDevice {
                    try Syscall.run(SyscallContext("ioctl(WDIOC_KEEPALIVE)", path: path)) { tenure_watchdog_keepalive(fd) }
                } else {
                    let line = Array("pet \(SystemMonotonicClockReading.nanoseconds())\n".utf8)
                    let written = try Syscall.run(SyscallContext("write", path: path, length: line.count)) { line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } }
                    guard written == line.count else {
                        throw TenureError(.shortIO, "Petting the watchdog \(path) wrote \(written) of \(line.count) bytes.")
                    }
                }
            } catch {
                throw TenureError(error.code, "Petting the watchdog failed: \(error.message)",
                                  remedy: "Check the watchdog driver; unpetted, it resets this host within its fire time.", errno: error.errno)
            }
        }
    }

    /// A clean stop: the magic close disarms the watchdog.
    public func closeCleanly() {
        closed.withLock { isClosed in
            guard !isClosed else { return }
            isClosed = true
            // A failed magic close leaves the watchdog armed: the host is
            // reset unless petted, the safe side for a daemon that stops.
            _ = try? Syscall.run(SyscallContext("write", path: path, length: 1)) { "V".withCString { Glibc.write(fd, $0, 1) } }
            try? Syscall.close(FileDescriptor(rawValue: fd), path: path)
        }
    }
}

enum SystemMonotonicClockReading {
    static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
