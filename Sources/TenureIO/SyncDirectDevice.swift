import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// A lease device opened O_DIRECT | O_SYNC, with pread/pwrite on the calling thread.
///
/// The fallback for hosts without usable libaio, and a baseline for the bench.
/// It has **no deadline**: a pread or pwrite blocked in the kernel cannot be
/// interrupted, so an I/O to hung storage blocks its caller (and the
/// cooperative thread it runs on) until the storage answers. Use
/// ``DirectDevice`` wherever a late I/O must fail in time, as lease renewal needs.
///
/// Same opening, validation, errors and statistics as ``DirectDevice``.
public final class SyncDirectDevice: MeasuredBlockDevice {
    /// The largest single I/O.
    public static let maxIOBytes = AlignedBuffer.maxByteCount

    public let path: String
    public let sectorSize: SectorSize
    public let sizeBytes: UInt64

    private struct State {
        /// Nil once closed.
        var fd: FileDescriptor?
        var closing = false
        var inFlight = 0
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        var statistics = IOStatistics()
    }

    private let state: Mutex<State>
    private let access: DeviceAccess

    /// Opens `path` (see ``DeviceOpener/open(path:)``).
    public init(path: String, access: DeviceAccess = .readWrite) throws {
        let opened = try DeviceOpener.open(path: path, access: access)
        self.access = access
        self.path = path
        self.sectorSize = opened.sectorSize
        self.sizeBytes = opened.sizeBytes
        self.state = Mutex(State(fd: opened.fd))
    }

    deinit {
        // No I/O can be in flight: each one holds a reference to the device.
        if let fd = state.withLock({ $0.fd }) {
            // The data is durable already (O_SYNC); a close error adds nothing.
            try? Syscall.close(fd, path: path)
        }
    }

    public func read(at offset: UInt64, length: Int) async throws -> [UInt8] {
        try checkRequest(offset: offset, length: length, limit: Self.maxIOBytes)
        let buffer = AlignedBuffer(count: length)
        try transfer(.read, buffer, at: offset) { fd in
            pread(fd.rawValue, buffer.pointer, length, off_t(offset))
        }
        return buffer.bytes
    }

    public func write(_ bytes: [UInt8], at offset: UInt64) async throws {
        try access.checkWrite(path)
        try checkRequest(offset: offset, length: bytes.count, limit: Self.maxIOBytes)
        let buffer = AlignedBuffer(copying: bytes)
        try transfer(.write, buffer, at: offset) { fd in
            pwrite(fd.rawValue, buffer.pointer, buffer.count, off_t(offset))
        }
    }

    /// Refuses new I/O and closes the descriptor once the I/O already running
    /// has returned (which, without a deadline, may take as long as the storage does).
    public func close() async {
        await withCheckedContinuation { continuation in
            let (closeNow, resumeNow): (FileDescriptor?, Bool) = state.withLock { state in
                guard let fd = state.fd else { return (nil, true) }
                state.closing = true
                if state.inFlight > 0 {
                    state.closeWaiters.append(continuation)
                    return (nil, false)
                }
                state.fd = nil
                return (fd, true)
            }
            if let closeNow {
                // The data is durable already (O_SYNC); a close error adds nothing.
                try? Syscall.close(closeNow, path: path)
            }
            if resumeNow { continuation.resume() }
        }
    }

    public var statistics: IOStatistics { state.withLock { $0.statistics } }

    /// Any I/O still running (a pwrite returns only once it has landed or
    /// failed; a running read is counted too, to stay simple and safe).
    public var writesMayStillLand: Bool { state.withLock { $0.inFlight > 0 } }

    // MARK: - One I/O

    /// Runs one pread or pwrite with the descriptor held open, and counts it.
    private func transfer(
        _ kind: IORequest.Kind, _ buffer: AlignedBuffer, at offset: UInt64,
        _ call: (FileDescriptor) -> Int
    ) throws {
        let fd = try begin(kind, offset: offset, length: buffer.count)
        defer { end() }
        let context = SyscallContext(kind == .read ? "pread" : "pwrite", path: path, offset: offset,
                                     length: buffer.count)
        do {
            let transferred = try Syscall.run(context, { call(fd) })
            guard transferred == buffer.count else {
                throw TenureError(.shortIO, "\(context) transferred only \(transferred) bytes.",
                                  remedy: "The file or device may have shrunk; check its size.")
            }
        } catch {
            state.withLock { $0.statistics.failures += 1 }
            throw error
        }
        state.withLock { $0.statistics.recordCompleted(kind, bytes: buffer.count) }
    }

    /// Counts an I/O in flight and returns the descriptor, or refuses if closed.
    private func begin(_ kind: IORequest.Kind, offset: UInt64, length: Int) throws(TenureError) -> FileDescriptor {
        let fd: FileDescriptor? = state.withLock { state in
            guard let fd = state.fd, !state.closing else { return nil }
            state.inFlight += 1
            state.statistics.submitted += 1
            return fd
        }
        guard let fd else {
            throw TenureError(.deviceClosed, "\(kind.rawValue) of \(length) bytes at offset \(offset) on \(path) refused: the device is closed.",
                              remedy: "Open the device again.")
        }
        return fd
    }

    /// Ends an I/O; the last one out after close() closes the descriptor.
    private func end() {
        let (closeNow, waiters): (FileDescriptor?, [CheckedContinuation<Void, Never>]) = state.withLock { state in
            state.inFlight -= 1
            guard state.closing, state.inFlight == 0, let fd = state.fd else { return (nil, []) }
            state.fd = nil
            defer { state.closeWaiters = [] }
            return (fd, state.closeWaiters)
        }
        if let closeNow {
            // The data is durable already (O_SYNC); a close error adds nothing.
            try? Syscall.close(closeNow, path: path)
        }
        waiters.forEach { $0.resume() }
    }
}
