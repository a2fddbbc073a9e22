/// The one error type of Tenure.
///
/// Every failure a user can meet is a `TenureError` with a stable ``Code``
/// (for scripts and wire replies), a message that says what was wrong, a
/// remedy that says what to do about it, and, where there is one, the
/// underlying cause (an errno, a decoding failure).
///
/// Programmer errors (a broken invariant inside Tenure) are assertions and
/// preconditions, never a `TenureError`.
public struct TenureError: Error, Sendable, CustomStringConvertible, Equatable {
    /// Stable identifiers, grouped by where the failure arises.
    public enum Code: String, Sendable, CaseIterable {
        // Input given by a user or a caller.
        case invalidArgument = "invalid-argument"
        case nameTooLong = "name-too-long"
        case invalidGeometry = "invalid-geometry"
        case misaligned = "misaligned"
        case outOfBounds = "out-of-bounds"
        // The device and the operating system.
        case notFound = "not-found"
        case permissionDenied = "permission-denied"
        case directIOUnsupported = "direct-io-unsupported"
        case ioFailed = "io-failed"
        case ioTimeout = "io-timeout"
        case shortIO = "short-io"
        case deviceClosed = "device-closed"
        // What was found on disk.
        case badMagic = "bad-magic"
        case unsupportedVersion = "unsupported-version"
        case checksumMismatch = "checksum-mismatch"
        case nameMismatch = "name-mismatch"
        case badRecord = "bad-record"
        // Lease state.
        case leaseInUse = "lease-in-use"
        case hostIDBusy = "host-id-busy"
        case heldByLiveHost = "held-by-live-host"
        case ballotAborted = "ballot-aborted"
        case lverMismatch = "lver-mismatch"
        case notOwner = "not-owner"
        case lockspaceLost = "lockspace-lost"
        case cancelled = "cancelled"
        // The daemon and its clients.
        case daemonUnavailable = "daemon-unavailable"
        case protocolError = "protocol-error"
        case notRegistered = "not-registered"
        case noLockspace = "no-lockspace"
        case alreadyExists = "already-exists"
        case shuttingDown = "shutting-down"
        case limitReached = "limit-reached"
    }

    public var code: Code
    /// What was wrong, in a sentence, naming the path, offset or value involved.
    public var message: String
    /// What the user can do about it; may be empty when there is nothing to do.
    public var remedy: String
    /// The errno behind an operating-system failure, if any.
    public var errno: Int32?

    public init(_ code: Code, _ message: String, remedy: String = "", errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.remedy = remedy
        self.errno = errno
    }

    public var description: String {
        remedy.isEmpty ? message : "\(message) \(remedy)"
    }
}
