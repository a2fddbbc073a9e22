import CTenureSys
import Glibc
import TenureCore
import TenureSyscall

/// How a device's I/O reaches the kernel.
public enum IOEngine: String, Sendable, CaseIterable, CustomStringConvertible {
    /// libaio: many I/Os in flight, each with a deadline (``DirectDevice``).
    case aio
    /// pread/pwrite on the calling thread, without a deadline (``SyncDirectDevice``).
    case sync

    public var description: String { rawValue }
}

/// A block device that also counts its I/O, as both TenureIO devices do.
public protocol MeasuredBlockDevice: BlockDevice {
    /// Counters since the device was opened.
    var statistics: IOStatistics { get }
}

/// Counters of a device's I/O since it was opened.
public struct IOStatistics: Sendable, Equatable, CustomStringConvertible {
    /// I/Os handed to the kernel (io_submit, pread, pwrite). Refused I/O
    /// (misaligned, out of bounds, closed device) never counts here.
    public var submitted: UInt64 = 0
    /// Reads that completed in full.
    public var reads: UInt64 = 0
    /// Writes that completed in full.
    public var writes: UInt64 = 0
    public var bytesRead: UInt64 = 0
    public var bytesWritten: UInt64 = 0
    /// I/Os whose deadline passed before the kernel completed them.
    public var timeouts: UInt64 = 0
    /// I/Os the kernel completed with an error or a short transfer.
    public var failures: UInt64 = 0
    /// Timed-out I/Os the kernel still owns: their buffers stay allocated until reaped.
    public var abandonedInFlight: UInt64 = 0
    /// io_submit calls that carried them (DirectDevice batches concurrent I/O).
    public var batches: UInt64 = 0
    /// Time callers waited for their I/O, from the call to the answer
    /// (queue, kernel, device and the wake-up), summed over answered I/Os.
    public var waitNanoseconds: UInt64 = 0
    /// I/Os found by polling (``DirectDevice``'s solo poll): by their caller
    /// while its I/O was the only one in flight, or by the event loop at the
    /// end of a round with nothing else to run; the rest were answered by the
    /// reaper (its thread, or the loop woken by the eventfd).
    public var answeredByCaller: UInt64 = 0

    public init() {}

    public var description: String {
        "submitted \(submitted), reads \(reads) (\(bytesRead) B), writes \(writes) (\(bytesWritten) B), "
            + "timeouts \(timeouts), failures \(failures), abandoned in flight \(abandonedInFlight)"
    }
}

/// Opens `path` for lease I/O: O_RDWR | O_DIRECT | O_SYNC | O_CLOEXEC.
///
/// - Parameters:
///   - engine: `.aio` for ``DirectDevice`` (deadline per I/O), `.sync` for
///     ``SyncDirectDevice`` (no deadline).
///   - ioTimeout: how long one I/O may take before it fails with `.ioTimeout`
///     (`.aio` only; the sync engine cannot interrupt a blocked pread/pwrite).
/// - Throws: `TenureError` with `.notFound`, `.permissionDenied`,
///   `.directIOUnsupported`, `.invalidArgument` (not a regular file or block
///   device) or `.invalidGeometry` (a sector size other than 512 or 4096).
///   - access: `.readOnly` for commands that only read (`direct read`,
///     `dump`, `probe`): they need no write permission, and a write through
///     such a handle is refused before it reaches the kernel.
public func openBlockDevice(
    path: String, engine: IOEngine = .aio, ioTimeout: Duration, access: DeviceAccess = .readWrite, realtimePriority: Int32? = nil,
    loop: EventLoop? = nil
) throws -> any MeasuredBlockDevice {
    switch engine {
    case .aio: return try DirectDevice(path: path, ioTimeout: ioTimeout, access: access, realtimePriority: realtimePriority, loop: loop)
    case .sync: return try SyncDirectDevice(path: path, access: access)
    }
}

/// Whether a device handle may write.
public enum DeviceAccess: Sendable {
    case readWrite, readOnly

    var openFlags: Int32 {
        switch self {
        case .readWrite: DeviceOpener.openFlags
        case .readOnly: (DeviceOpener.openFlags & ~O_RDWR) | O_RDONLY
        }
    }

    /// The refusal of a write through a read-only handle.
    func checkWrite(_ path: String) throws(TenureError) {
        guard self == .readWrite else {
            throw TenureError(.permissionDenied, "\(path) was opened read-only; this command does not write.",
                              remedy: "This is a bug in the command that tried to write; report it.")
        }
    }
}

/// An open O_DIRECT descriptor with the geometry read from it. The receiver
/// owns `fd` and must close it.
public struct OpenedDevice: Sendable {
    public enum Kind: Sendable { case regularFile, blockDevice }

    public let fd: FileDescriptor
    public let path: String
    public let kind: Kind
    public let sectorSize: SectorSize
    public let sizeBytes: UInt64
}

/// Opens files and block devices for direct I/O and explains every refusal.
public enum DeviceOpener {
    /// The flags of every lease device: read-write, bypassing the page cache
    /// (O_DIRECT, so other hosts' writes are seen), each write durable (O_SYNC).
    public static let openFlags: Int32 = O_RDWR | tenure_O_DIRECT | O_SYNC | O_CLOEXEC

    /// The filesystem magic of tmpfs (statfs f_type).
    public static let tmpfsMagic = Int64(TMPFS_MAGIC)
    /// The filesystem magic of ramfs (statfs f_type).
    public static let ramfsMagic = Int64(RAMFS_MAGIC)

    /// Opens `path` and reads its sector size and size.
    ///
    /// The path is checked with stat(2) before it is opened, so a character
    /// device (say /dev/watchdog, which opening would arm) or a FIFO is
    /// refused without being opened.
    public static func open(path: String, access: DeviceAccess = .readWrite) throws(TenureError) -> OpenedDevice {
        let before = try status(of: path)
        try requireFileOrBlockDevice(before, path: path)
        let fd = try openDirect(path: path, flags: access.openFlags)
        do {
            return try describe(fd: fd, path: path)
        } catch {
            // The descriptor is unusable; its close error has nothing to add.
            try? Syscall.close(fd, path: path)
            throw error
        }
    }

    /// Checks that files in `directory` can be opened with O_DIRECT, by
    /// creating, opening and removing a probe file there.
    /// - Throws: `.directIOUnsupported` naming the filesystem when it refuses.
    public static func checkDirectIO(inDirectory directory: String) throws(TenureError) {
        let probe = directory + "/.tenure-direct-io-probe-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let context = SyscallContext("open", path: probe)
        let created = try Syscall.run(context, { Glibc.open(probe, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600) })
        let createdFD = FileDescriptor(rawValue: created)
        defer {
            // Best effort: the probe is empty and its name is unique.
            try? Syscall.close(createdFD, path: probe)
            _ = try? Syscall.run(SyscallContext("unlink", path: probe), { unlink(probe) })
        }
        let direct = try openDirect(path: probe)
        try? Syscall.close(direct, path: probe)
    }

    /// The error for a filesystem that refused O_DIRECT, naming tmpfs when
    /// that is the filesystem (`fileSystemType` is statfs's f_type, if known).
    public static func directIOUnsupportedError(path: String, fileSystemType: Int64?) -> TenureError {
        if fileSystemType == tmpfsMagic {
            return TenureError(
                .directIOUnsupported,
                "\(path) is on tmpfs, which does not support O_DIRECT.",
                remedy: "Put lease files on a disk-backed filesystem such as ext4 or xfs (e.g. under /var/tmp).",
                errno: EINVAL)
        }
        let type = fileSystemType.map { " (filesystem type 0x\(String($0, radix: 16)))" } ?? ""
        return TenureError(
            .directIOUnsupported,
            "The filesystem holding \(path)\(type) does not support O_DIRECT.",
            remedy: "Put lease files on a disk-backed filesystem such as ext4 or xfs, or use a block device.",
            errno: EINVAL)
    }

    /// statfs(2)'s f_type for the filesystem holding `path`, or nil if statfs fails.
    public static func fileSystemType(of path: String) -> Int64? {
        var type: Int64 = 0
        // A failing statfs only loses a detail of an error message being built.
        guard (try? Syscall.run(SyscallContext("statfs", path: path), { tenure_statfs_type(path, &type) })) != nil
        else { return nil }
        return type
    }

    // MARK: - Steps

    private static func status(of path: String) throws(TenureError) -> stat {
        var info = stat()
        do {
            try Syscall.run(SyscallContext("stat", path: path), { stat(path, &info) })
        } catch where error.code == .notFound {
            throw TenureError(
                .notFound, "\(path) does not exist.",
                remedy: "Create the lease file first (`tenure direct format --create SIZE` makes one, or `truncate -s 64M PATH`), or attach the device.",
                errno: error.errno)
        }
        return info
    }

    private static func requireFileOrBlockDevice(_ info: stat, path: String) throws(TenureError) {
        let type = info.st_mode & S_IFMT
        guard type != S_IFREG && type != S_IFBLK else { return }
        throw TenureError(
            .invalidArgument,
            "\(path) is \(describeFileType(type)), not a regular file or a block device.",
            remedy: "Give the path of a lease file or of a block device (a disk, partition, LV or loop device).")
    }

    private static func describeFileType(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "a file of type 0o\(String(type, radix: 8))"
        }
    }

    private static func openDirect(path: String, flags: Int32 = openFlags) throws(TenureError) -> FileDescriptor {
        do {
            let fd = try Syscall.run(SyscallContext("open", path: path), { Glibc.open(path, flags) })
            return FileDescriptor(rawValue: fd)
        } catch where error.errno == EINVAL {
            // open(2) says EINVAL for O_DIRECT when the filesystem has no direct I/O.
            throw directIOUnsupportedError(path: path, fileSystemType: fileSystemType(of: path))
        } catch where error.code == .permissionDenied {
            throw TenureError(
                .permissionDenied,
                "Cannot open \(path) for \(flags & O_ACCMODE == O_RDONLY ? "reading" : "reading and writing"): \(Errno(rawValue: error.errno ?? EACCES)).",
                remedy: error.remedy, errno: error.errno)
        }
    }

    /// Refuses a lease file in memory (tmpfs, ramfs). Kernels before 6.6
    /// refuse O_DIRECT there (open fails with EINVAL); later ones accept it,
    /// but such a file is never shared storage and does not survive a reboot,
    /// so a lease in it protects nothing.
    private static func refuseMemoryFileSystem(path: String) throws(TenureError) {
        guard let type = fileSystemType(of: path), type == tmpfsMagic || type == ramfsMagic else { return }
        throw TenureError(
            .directIOUnsupported,
            "\(path) is on \(type == tmpfsMagic ? "tmpfs" : "ramfs"): memory, not storage. Other hosts cannot see it, it is gone after a reboot, and O_DIRECT there is not direct I/O (kernels before 6.6 refuse it).",
            remedy: "Put lease files on a disk-backed filesystem such as ext4 or xfs (e.g. under /var/tmp), or use a shared block device.",
            errno: EINVAL)
    }

    private static func describe(fd: FileDescriptor, path: String) throws(TenureError) -> OpenedDevice {
        var info = stat()
        try Syscall.run(SyscallContext("fstat", path: path), { fstat(fd.rawValue, &info) })
        // Checked again on the descriptor: the path may have changed since stat.
        try requireFileOrBlockDevice(info, path: path)
        if info.st_mode & S_IFMT == S_IFREG {
            try refuseMemoryFileSystem(path: path)
            return OpenedDevice(fd: fd, path: path, kind: .regularFile, sectorSize: .bytes512,
                                sizeBytes: UInt64(info.st_size))
        }
        var logical: Int32 = 0
        try Syscall.run(SyscallContext("ioctl BLKSSZGET", path: path), {
            tenure_blk_logical_sector_size(fd.rawValue, &logical)
        })
        guard let sectorSize = SectorSize(rawValue: Int(logical)) else {
            throw TenureError(
                .invalidGeometry,
                "\(path) has \(logical)-byte logical sectors; Tenure, like sanlock, supports 512 and 4096.",
                remedy: "Use a device with 512- or 4096-byte logical sectors.")
        }
        var size: UInt64 = 0
        try Syscall.run(SyscallContext("ioctl BLKGETSIZE64", path: path), { tenure_blk_size_bytes(fd.rawValue, &size) })
        return OpenedDevice(fd: fd, path: path, kind: .blockDevice, sectorSize: sectorSize, sizeBytes: size)
    }
}
