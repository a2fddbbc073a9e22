import Glibc
import Dispatch
import TenureCore
import TenureSyscall

/// Blocking message I/O on a Unix stream socket, for the client and the
/// daemon's connection threads. EINTR is retried; any other failure, and a
/// peer that hangs up mid-message, is a `TenureError`.
public enum MessageSocket {
    /// Connects to `path`.
    public static func connect(to path: String) throws(TenureError) -> Int32 {
        do {
            return try UnixSocket.connect(to: path).rawValue
        } catch where error.code == .invalidArgument {
            throw error
        } catch {
            throw TenureError(.daemonUnavailable, "Cannot reach the Tenure daemon at \(path): \(error.message)",
                              remedy: "Start it with `tenure daemon`, or point \(Wire.runDirEnvironment) (or --run-dir) at its run dir.", errno: error.errno)
        }
    }

    public static func write(_ message: Message, to fd: Int32) throws(TenureError) {
        try writeAll(try message.encoded(), to: fd)
    }

    /// Sends a message already encoded (`Message.encoded()`).
    public static func write(encoded bytes: [UInt8], to fd: Int32) throws(TenureError) {
        try writeAll(bytes, to: fd)
    }

    /// Reads one message; nil when the peer closed cleanly between messages.
    public static func read(from fd: Int32) throws(TenureError) -> Message? {
        ThreadRole.checkMayBlock("waiting for the daemon's reply")
        guard let headerBytes = try readExactly(Wire.headerBytes, from: fd, eofAllowed: true) else { return nil }
        let header = try Message.decodeHeader(headerBytes)
        let payload = header.length == 0 ? [] : try readExactly(header.length, from: fd, eofAllowed: false)!
        return Message(command: header.command, seq: header.seq, fields: try Message.decodeFields(payload))
    }

    /// What a socket's failure is to the client: the daemon is unavailable.
    static func unavailable(_ error: TenureError, _ doing: String) -> TenureError {
        TenureError(.daemonUnavailable, "\(doing) the Tenure socket failed: \(error.message)", errno: error.errno)
    }

    static func writeAll(_ bytes: [UInt8], to fd: Int32) throws(TenureError) {
        do {
            try UnixSocket.sendAll(bytes, to: FileDescriptor(rawValue: fd), path: "the Tenure socket")
        } catch {
            throw unavailable(error, "Sending to")
        }
    }

    static func readExactly(_ count: Int, from fd: Int32, eofAllowed: Bool) throws(TenureError) -> [UInt8]? {
        do {
            return try UnixSocket.receiveExactly(count, from: FileDescriptor(rawValue: fd), path: "the Tenure socket", eofAllowed: eofAllowed)
        } catch {
            // A peer gone mid-message is the protocol's failure; the rest is the socket's.
            if error.code == .protocolError { throw error }
            throw unavailable(error, "Reading from")
        }
    }
}

/// A connection to the daemon. The connection is the registration: while
/// it is open the daemon holds this process's leases; when it closes (the
/// process exits, or execs without it) they are released.
public final class TenureConnection {
    public let fd: Int32
    private var seq: UInt32 = 0

    /// Connects to the daemon of `runDir` (default: TENURE_RUN_DIR, else /run/tenure).
    public init(runDir: String? = nil) throws(TenureError) {
        let dir = runDir ?? Wire.runDir
        fd = try MessageSocket.connect(to: dir + "/" + Wire.socketName)
    }

    deinit { try? Syscall.close(FileDescriptor(rawValue: fd), path: "the Tenure socket") }

    /// Sends a request and waits for its reply; a failed reply throws its error.
    @discardableResult
    public func call(_ command: Command, _ fields: [String]) throws(TenureError) -> [String] {
        seq &+= 1
        try MessageSocket.write(Message(command, seq: seq, fields), to: fd)
        guard let reply = try MessageSocket.read(from: fd) else {
            throw TenureError(.daemonUnavailable, "The Tenure daemon closed the connection without replying.",
                              remedy: "Check the daemon's log; it may have stopped.")
        }
        // A reply to command 0, seq 0 is the daemon refusing the connection
        // itself (too many clients) or a message it could not read: its error stands.
        let refusal = reply.command == Wire.replyFlag && reply.seq == 0
        guard reply.command == command.rawValue | Wire.replyFlag && reply.seq == seq || refusal,
              let first = reply.text(0), let raw = Int32(first), let result = ResultCode(rawValue: raw) else {
            throw TenureError(.protocolError, "The daemon's reply does not match the request (command \(reply.command), seq \(reply.seq)).")
        }
        let rest = (1..<max(reply.fields.count, 1)).compactMap { reply.text($0) }
        guard result == .ok else {
            let message = rest.count > 1 ? rest[1] : "The daemon refused the request (result \(raw))."
            throw TenureError(result.errorCode, message, remedy: rest.count > 2 ? rest[2] : "")
        }
        return rest
    }

    public func register() throws(TenureError) { try call(.register, []) }

    /// Joins a lockspace; returns the generation.
    /// Joins a lockspace; returns the generation, or "joining" when `async`
    /// (the join goes on in the daemon; `status` lists it under "joining").
    public func addLockspace(_ lockspace: String, hostName: String = "", ioTimeoutSeconds: Int = 0, async: Bool = false) throws(TenureError) -> String {
        try call(.addLockspace, [lockspace, hostName, String(ioTimeoutSeconds)] + (async ? ["async"] : [])).first ?? ""
    }

    public func removeLockspace(_ name: String) throws(TenureError) { try call(.remLockspace, [name]) }

    /// Acquires `resources` for `pid` (0: this process); returns each lease's state string.
    public func acquire(_ resources: [String], pid: Int32 = 0, shared: Bool = false, flags: UInt32 = 0) throws(TenureError) -> [String] {
        try call(.acquire, [String(pid), String((shared ? Wire.acquireShared : 0) | flags)] + resources)
    }

    /// Releases leases of `pid` by resource name, or all with "*".
    public func release(_ names: [String], pid: Int32 = 0) throws(TenureError) {
        try call(.release, [String(pid)] + names)
    }

    /// The state string of `pid`'s leases: resource strings with lvers, joined by spaces.
    public func inquire(pid: Int32 = 0) throws(TenureError) -> String {
        try call(.inquire, [String(pid)]).first ?? ""
    }

    public func status() throws(TenureError) -> String { try call(.status, []).first ?? "" }

    public func request(_ resource: String, force: Bool) throws(TenureError) {
        try call(.request, [resource, force ? "1" : "2"])
    }

    public func shutdown(force: Bool) throws(TenureError) { try call(.shutdown, [force ? "1" : "0"]) }

    /// A program the daemon runs instead of SIGTERM when it must stop this
    /// process (it finds the pid in TENURE_KILL_PID); SIGKILL follows after the grace.
    public func killpath(_ program: String, arguments: [String] = []) throws(TenureError) {
        try call(.killpath, [program] + arguments)
    }

    /// Restricts this connection (no further requests) and how the daemon may stop this process.
    public func restrict(_ flags: UInt32) throws(TenureError) { try call(.restrict, [String(flags)]) }

    /// Converts a held lease to shared or exclusive; returns its state string.
    public func convert(_ name: String, shared: Bool, pid: Int32 = 0) throws(TenureError) -> String {
        try call(.convert, [String(pid), name, shared ? "shared" : "exclusive"]).first ?? ""
    }

    /// A line per recent renewal of `lockspace`: timestamp, read and write times, failures after it.
    public func renewal(_ lockspace: String) throws(TenureError) -> String {
        try call(.renewal, [lockspace]).first ?? ""
    }

    /// The daemon's recent log, debug lines included.
    public func logDump() throws(TenureError) -> String { try call(.logDump, []).first ?? "" }

    /// Sets the lock value block of `name`, held by `pid` (0: the caller), acquired with an LVB.
    public func setLVB(_ name: String, _ bytes: [UInt8], pid: Int32 = 0) throws(TenureError) {
        _ = try call(.setLVB, [String(pid), name, Hex.encode(bytes)])
    }

    /// The lock value block of `name`, as hex.
    public func getLVB(_ name: String, pid: Int32 = 0) throws(TenureError) -> String {
        try call(.getLVB, [String(pid), name]).first ?? ""
    }

    /// Releases the orphans of `lockspace` named (or "*" for all). Root only.
    public func releaseOrphans(_ lockspace: String, _ names: [String]) throws(TenureError) {
        _ = try call(.releaseOrphans, [lockspace] + (names.isEmpty ? ["*"] : names))
    }

    /// Sends `event` with `data` to host `host` of `lockspace` (nil: every other host). Root only.
    public func setEvent(_ lockspace: String, host: UInt64?, event: UInt64, data: UInt64) throws(TenureError) {
        _ = try call(.setEvent, [lockspace, host.map(String.init) ?? "all", String(event), String(data)])
    }

    /// A resource index (`LOCKSPACE:PATH:OFFSET`): `action` is "lookup"
    /// (by name, by offset, or neither: the first free area), "create" (a
    /// new lease named `name` in the first free area) or "delete"; answers
    /// the entry's name and offset. create and delete are for administrators.
    public func index(_ action: String, _ index: String, name: String, offset: UInt64 = 0) throws(TenureError) -> (name: String, offset: UInt64) {
        let fields = try call(.index, [action, index, name, String(offset)])
        guard fields.count == 2, let at = UInt64(fields[1]) else {
            throw TenureError(.protocolError, "The daemon's answer to an index request is not a name and an offset.", remedy: "Use a client of the same Tenure release.")
        }
        return (fields[0], at)
    }

    /// The daemon's metrics, in Prometheus's text exposition format.
    public func metrics() throws(TenureError) -> String { try call(.metrics, []).first ?? "" }

    /// JSON: every host slot of a lockspace in use and its state as this host sees it.
    public func hostStatus(_ lockspace: String) throws(TenureError) -> String {
        try call(.hostStatus, [lockspace]).first ?? ""
    }
}
