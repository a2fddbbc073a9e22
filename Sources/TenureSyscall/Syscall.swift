import Glibc
import TenureCore

/// An `errno` value, with its symbolic name and meaning for messages.
public struct Errno: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's current `errno`; read it right after the failed call.
    static var current: Errno { Errno(rawValue: Glibc.errno) }

    public static let interrupted = Errno(rawValue: EINTR)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let badAddress = Errno(rawValue: EFAULT)
    public static let invalidArgument = Errno(rawValue: EINVAL)

    /// The symbolic name (`EINVAL`), or `errno N` for one this table lacks.
    public var name: String { Errno.names[rawValue] ?? "errno \(rawValue)" }

    /// What the C library says the value means (strerror).
    public var meaning: String { String(cString: strerror(rawValue)) }

    /// "Invalid argument (EINVAL)".
    public var description: String { "\(meaning) (\(name))" }

    private static let names: [Int32: String] = [
        EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", ENXIO: "ENXIO",
        EBADF: "EBADF", EAGAIN: "EAGAIN", ENOMEM: "ENOMEM", EACCES: "EACCES",
        EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST", ENODEV: "ENODEV",
        ENOTDIR: "ENOTDIR", EISDIR: "EISDIR", EINVAL: "EINVAL", ENFILE: "ENFILE",
        EMFILE: "EMFILE", ENOTTY: "ENOTTY", ETXTBSY: "ETXTBSY", EFBIG: "EFBIG",
        ENOSPC: "ENOSPC", EROFS: "EROFS", ENAMETOOLONG: "ENAMETOOLONG",
        ENOSYS: "ENOSYS", ELOOP: "ELOOP", EOPNOTSUPP: "EOPNOTSUPP",
        ETIMEDOUT: "ETIMEDOUT", EDQUOT: "EDQUOT", ECANCELED: "ECANCELED",
        EINPROGRESS: "EINPROGRESS", EOVERFLOW: "EOVERFLOW", ENOMEDIUM: "ENOMEDIUM",
    ]
}

/// What a system call was doing, so a failure can name it.
public struct SyscallContext: Sendable, CustomStringConvertible {
    /// The call, as a person would look it up: "open", "pread", "io_submit".
    public var call: String
    /// The file or device path involved.
    public var path: String
    /// The byte offset of the I/O, if the call is one.
    public var offset: UInt64?
    /// The byte count of the I/O, if the call is one.
    public var length: Int?

    public init(_ call: String, path: String, offset: UInt64? = nil, length: Int? = nil) {
        self.call = call
        self.path = path
        self.offset = offset
        self.length = length
    }

    /// "pread of 512 bytes at offset 4096 on /dev/sdb".
    public var description: String {
        var text = call
        if let length { text += " of \(length) bytes" }
        if let offset { text += " at offset \(offset)" }
        return text + " on \(path)"
    }
}

/// The one path by which Tenure makes system calls (the device, the daemon,
/// the client, the watchdog), with its policy written once.
///
/// Policy:
/// - `EINTR` is retried, always, except for `close(2)` (see ``close(_:path:)``).
/// - `errno` is read right after the failing call and becomes a ``TenureError``
///   whose message names the call, the path, the offset and the errno's
///   meaning, with a remedy (``error(_:_:)``).
/// - `EBADF` and `EFAULT` can only mean a bug in Tenure (a closed descriptor,
///   a bad pointer); they stop the process with `preconditionFailure`.
///
/// Three return conventions exist: the C library's (-1 and `errno`) through
/// ``run(_:_:)``, libaio's (the negated errno as the result) through
/// ``runAIO(_:_:)``, and pthreads' (the errno as the result) through
/// ``runReturningErrno(_:_:)``.
public enum Syscall {
    /// Runs a C-library call that returns -1 and sets `errno` on failure.
    @discardableResult
    public static func run<Result: BinaryInteger>(
        _ context: @autoclosure () -> SyscallContext,
        _ call: () -> Result
    ) throws(TenureError) -> Result {
        while true {
            let result = call()
            if result != -1 { return result }
            let errno = Errno.current
            if errno == .interrupted { continue }
            throw error(errno, context())
        }
    }

    /// Runs a libaio call, which returns `-errno` on failure instead of setting `errno`.
    @discardableResult
    public static func runAIO(
        _ context: @autoclosure () -> SyscallContext,
        _ call: () -> Int32
    ) throws(TenureError) -> Int32 {
        while true {
            let result = call()
            if result >= 0 { return result }
            let errno = Errno(rawValue: -result)
            if errno == .interrupted { continue }
            throw error(errno, context())
        }
    }

    /// Runs a call that returns 0 or an errno value (pthread_create and kin).
    public static func runReturningErrno(
        _ context: @autoclosure () -> SyscallContext,
        _ call: () -> Int32
    ) throws(TenureError) {
        while true {
            let result = call()
            if result == 0 { return }
            let errno = Errno(rawValue: result)
            if errno == .interrupted { continue }
            throw error(errno, context())
        }
    }

    /// Closes `fd`. `EINTR` is not retried: on Linux the descriptor is released
    /// even when close is interrupted, and a retry could close a descriptor
    /// another thread has just been given.
    public static func close(_ fd: FileDescriptor, path: String) throws(TenureError) {
        if Glibc.close(fd.rawValue) == 0 { return }
        let errno = Errno.current
        if errno == .interrupted { return }
        throw error(errno, SyscallContext("close", path: path))
    }

    /// The ``TenureError`` for a failed call, or a stop for errnos that mean a Tenure bug.
    ///
    /// Used for failed calls and for failed asynchronous completions alike,
    /// so every errno reads the same wherever it surfaces.
    public static func error(_ errno: Errno, _ context: SyscallContext) -> TenureError {
        if errno == .badFileDescriptor || errno == .badAddress {
            preconditionFailure("\(context) failed with \(errno): a bug in Tenure, not an operating error.")
        }
        let (code, remedy) = classify(errno, context)
        return TenureError(code, "\(context) failed: \(errno).", remedy: remedy, errno: errno.rawValue)
    }

    private static func classify(_ errno: Errno, _ context: SyscallContext) -> (TenureError.Code, String) {
        switch errno.rawValue {
        case ENOENT, ENOTDIR:
            return (.notFound, "Check the path \(context.path); create the file or attach the device first.")
        case ENXIO, ENODEV, ENOMEDIUM:
            return (.notFound, "The device behind \(context.path) is not present; check that it is attached.")
        case EACCES, EPERM:
            return (.permissionDenied,
                    "Run as a user that may read and write \(context.path) (root, or the group that owns it), and check that the file is not immutable (lsattr).")
        case EROFS:
            return (.permissionDenied, "\(context.path) is on a read-only filesystem or device; put it on writable storage.")
        case ETXTBSY, EBUSY:
            return (.permissionDenied, "\(context.path) is held exclusively by another program; stop it first.")
        case EISDIR, ELOOP, ENAMETOOLONG:
            return (.invalidArgument, "Give the path of a regular file or a block device.")
        case ENOSPC, EDQUOT, EFBIG:
            return (.ioFailed, "Free space on the filesystem holding \(context.path), or raise the quota.")
        case EMFILE, ENFILE:
            return (.ioFailed, "Too many open files: raise the open-file limit (ulimit -n, LimitNOFILE).")
        case EAGAIN where context.call == "io_setup":
            return (.ioFailed, "The system's asynchronous I/O limit is reached: raise fs.aio-max-nr (sysctl), or use the sync engine.")
        case ENOMEM, EAGAIN:
            return (.ioFailed, "The kernel is short of memory or resources; retry, and check the host's memory.")
        case ENOSYS:
            return (.ioFailed, "This kernel lacks the call; use the sync engine.")
        case EIO:
            return (.ioFailed, "The storage reported an error; check the device and the kernel log (dmesg).")
        default:
            return (.ioFailed, "Check the device and the kernel log (dmesg).")
        }
    }
}

/// An open file descriptor number. Owned by whoever opened it; not closed on deinit.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public var description: String { "fd \(rawValue)" }
}
