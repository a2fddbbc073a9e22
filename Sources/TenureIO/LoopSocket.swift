import Glibc
import TenureCore
import TenureSyscall

/// A connected stream socket served by an ``EventLoop``: its reads and
/// writes never block the loop's thread. A read takes what the socket has
/// (up to ``receiveChunk`` bytes at once, so requests sent together are read
/// together) and, when that is not enough, suspends the calling task until
/// the loop sees more; a write sends what the socket takes and suspends
/// until it takes the rest.
///
/// Only tasks running on the loop use it (requests' tasks run there by
/// their executor preference); its state is the loop thread's alone.
public final class LoopSocket: @unchecked Sendable {
    /// The most bytes one read takes from the socket.
    public static let receiveChunk = 64 * 1024

    public let fd: FileDescriptor
    /// The socket's path, for messages.
    public let path: String
    private let loop: EventLoop
    private var watch: EventLoop.WatchID?
    /// Bytes read and not yet taken: `input[start...]`.
    private var input: [UInt8] = []
    private var start = 0
    /// The socket may have bytes to read (or an end, or an error) that
    /// this side has not seen: edge-triggered, so only a read that finds
    /// none clears it.
    private var mayRead = true
    private var mayWrite = true
    private var peerClosed = false
    private var failure: TenureError?
    private var waiter: CheckedContinuation<Void, Never>?
    private var deadlinePassed = false

    /// Watches `fd` on `loop` (edge-triggered); the socket is this object's to close.
    public init(_ fd: FileDescriptor, path: String, loop: EventLoop) throws(TenureError) {
        self.fd = fd
        self.path = path
        self.loop = loop
        watch = try loop.watch(fd, events: EventLoop.readable | EventLoop.writable | EventLoop.hungUp | EventLoop.edgeTriggered,
                               path: path) { [weak self] events in self?.ready(events) }
    }

    /// Bytes read and not yet taken.
    public var buffered: Int { input.count - start }

    /// Waits until a read would not wait (bytes, the peer's end, or an
    /// error), or until `deadline`: false when the deadline came first.
    public func waitReadable(until deadline: MonotonicInstant?) async -> Bool {
        while true {
            if buffered > 0 || peerClosed || failure != nil { return true }
            if mayRead {
                fill()
                continue
            }
            if await !waitForEvent(until: deadline) { return false }
        }
    }

    /// Reads exactly `count` bytes. nil when the peer closed before the
    /// first byte and `eofAllowed` (it left between messages); a peer that
    /// hangs up part-way is a `.protocolError`, and one that has not sent
    /// them all by `deadline` a `.protocolError` too (a client that stops part-way
    /// must not hold its connection, and its place, for ever).
    public func receiveExactly(_ count: Int, eofAllowed: Bool = false, deadline: MonotonicInstant? = nil) async throws(TenureError) -> [UInt8]? {
        while buffered < count {
            if let failure { throw failure }
            if peerClosed {
                if buffered == 0 && eofAllowed { return nil }
                throw TenureError(.protocolError, "The peer on \(path) hung up after \(buffered) of \(count) bytes of a message.")
            }
            if mayRead {
                fill()
            } else if await !waitForEvent(until: deadline) {
                throw TenureError(.protocolError, "The peer on \(path) sent \(buffered) of \(count) bytes of a message and no more by its deadline.",
                                  remedy: "A client must send a whole message at once; the connection is closed.")
            }
        }
        let bytes = Array(input[start ..< start + count])
        start += count
        return bytes
    }

    /// Sends all of `bytes`, waiting for the peer to read when its buffer
    /// is full — until `deadline`, then a `.protocolError`.
    public func sendAll(_ bytes: [UInt8], deadline: MonotonicInstant? = nil) async throws(TenureError) {
        var sent = 0
        while sent < bytes.count {
            let n = try UnixSocket.sendAvailable(bytes[sent...], to: fd, path: path)
            sent += n
            if n == 0 {
                mayWrite = false
                while !mayWrite {
                    if await !waitForEvent(until: deadline) {
                        throw TenureError(.protocolError, "The peer on \(path) took \(sent) of \(bytes.count) bytes of a reply and no more by its deadline.",
                                          remedy: "A client must read its replies; the connection is closed.")
                    }
                }
            }
        }
    }

    /// Stops watching and closes the socket.
    public func close() {
        if let watch { loop.unwatch(watch) }
        watch = nil
        try? Syscall.close(fd, path: path)
        resumeWaiter()
    }

    // MARK: Internals

    /// One read of what the socket has.
    private func fill() {
        if start == input.count {
            input.removeAll(keepingCapacity: true)
            start = 0
        } else if start > Self.receiveChunk {
            input.removeFirst(start)
            start = 0
        }
        do {
            switch try UnixSocket.receiveAvailable(into: &input, count: Self.receiveChunk, from: fd, path: path) {
            case nil: mayRead = false
            case 0?: peerClosed = true
            case _?: break
            }
        } catch {
            failure = error
        }
    }

    /// Suspends until the loop reports the socket, or `deadline` passes
    /// (false).
    private func waitForEvent(until deadline: MonotonicInstant?) async -> Bool {
        assert(loop.isCurrent, "a LoopSocket is used only on its loop")
        deadlinePassed = false
        let timer = deadline.map { at in
            loop.schedule(at: at) { [weak self] in
                guard let self, self.waiter != nil else { return }
                self.deadlinePassed = true
                self.resumeWaiter()
            }
        }
        await withCheckedContinuation { waiter = $0 }
        if let timer { loop.cancel(timer) }
        return !deadlinePassed
    }

    private func ready(_ events: UInt32) {
        if events & (EventLoop.readable | EventLoop.hungUp | EventLoop.failed) != 0 { mayRead = true }
        if events & (EventLoop.writable | EventLoop.hungUp | EventLoop.failed) != 0 { mayWrite = true }
        resumeWaiter()
    }

    private func resumeWaiter() {
        guard let waiter else { return }
        self.waiter = nil
        waiter.resume()
    }
}
