import CTenureSys
import Foundation
import TenureCore

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
public final class WatchdogDevice: @unchecked Sendable {
    public let path: String
    let fd: Int32
    let isDevice: Bool
    let lock = NSLock()
    private var closed = false

    public init(path: String, fire: Duration) throws {
        self.path = path
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
        fd = open(path, O_WRONLY | O_CLOEXEC | (isDevice ? 0 : O_APPEND))
        guard fd >= 0 else {
            throw TenureError(.permissionDenied, "Cannot open the watchdog \(path): \(String(cString: strerror(errno))).",
                              remedy: "Run the daemon as root; only one program may hold a watchdog open.", errno: errno)
        }
        if isDevice {
            var seconds = Int32(fire.components.seconds)
            guard tenure_watchdog_set_timeout(fd, &seconds) == 0 else {
                let e = errno
                Glibc.close(fd)
                throw TenureError(.ioFailed, "Cannot set the fire time of \(path) to \(fire): \(String(cString: strerror(e))).", errno: e)
            }
        }
    }

    /// Pets the watchdog: its fire time starts again. Throws when the
    /// device refused (the caller logs and counts it).
    public func pet() throws {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        let ok: Bool
        if isDevice {
            ok = tenure_watchdog_keepalive(fd) == 0
        } else {
            let line = "pet \(SystemMonotonicClockReading.nanoseconds())\n"
            ok = line.withCString { Glibc.write(fd, $0, strlen($0)) } == strlen(line)
        }
        guard ok else {
            let e = errno
            throw TenureError(.ioFailed, "Petting the watchdog \(path) failed: \(String(cString: strerror(e))).",
                              remedy: "Check the watchdog driver; unpetted, it resets this host within its fire time.", errno: e)
        }
    }

    /// A clean stop: the magic close disarms the watchdog.
    public func closeCleanly() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        _ = "V".withCString { Glibc.write(fd, $0, 1) }
        Glibc.close(fd)
    }
}

enum SystemMonotonicClockReading {
    static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
