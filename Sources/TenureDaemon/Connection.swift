import Logging
import TenureClient
import TenureCore
import TenureIO

/// One wire protocol at the edge of a connection: bytes to a request, a
/// request to its answer's bytes. The loop around it (``DaemonServer/serve``)
/// is the same for both sockets — idle close, the message deadline, the
/// request-stage metrics, the count of replies in flight.
protocol ConnectionCodec: Sendable {
    associatedtype Wire: Sendable
    /// Which protocol, for the log.
    var name: String { get }
    /// One message, whole by `deadline`; nil when the peer closed between messages.
    func read(from socket: LoopSocket, deadline: MonotonicInstant) async throws(TenureError) -> Wire?
    /// What to send before closing a connection whose message could not be
    /// read (nil: close at once, as sanlock's daemon does).
    func unreadable(_ error: TenureError) -> [UInt8]?
    /// What to send a connection turned away for too many clients (nil:
    /// close at once, as sanlock's daemon does).
    func refusal(_ error: TenureError) -> [UInt8]?
    /// Whether the request makes the connection one the daemon keeps however
    /// long it idles (it registered, or holds leases, or listens for events).
    func keepsConnection(_ request: Wire) -> Bool
    /// Carries the request out through the daemon's one admission and handler.
    func answer(_ request: Wire, from peer: Peer, on socket: LoopSocket) async -> ConnectionAnswer
    /// The reply went out.
    func replied(_ request: Wire, _ answer: ConnectionAnswer, peer: Peer) async
}

/// A request's answer, encoded.
struct ConnectionAnswer: Sendable {
    /// nil: no reply (sanlock's register).
    var bytes: [UInt8]?
    /// Close the connection once it is written.
    var close = false
    /// Whether the request was answered with success (sanlock's reg_event
    /// becomes a listener only then).
    var succeeded = true
}

/// Tenure's own protocol (docs/protocol.md).
struct TenureCodec: ConnectionCodec {
    let daemon: Daemon
    let log: Logger
    var name: String { "Tenure" }

    func read(from socket: LoopSocket, deadline: MonotonicInstant) async throws(TenureError) -> Message? {
        try await DaemonServer.readMessage(from: socket, deadline: deadline)
    }

    func unreadable(_ error: TenureError) -> [UInt8]? {
        try? Message.reply(to: Message(command: 0, seq: 0, fields: []), error: error).encoded()
    }

    /// One reply, to command 0, seq 0 (docs/protocol.md).
    func refusal(_ error: TenureError) -> [UInt8]? { unreadable(error) }

    func keepsConnection(_ request: Message) -> Bool {
        request.command == Command.register.rawValue || request.command == Command.acquire.rawValue
    }

    func answer(_ request: Message, from peer: Peer, on socket: LoopSocket) async -> ConnectionAnswer {
        var reply = await respond(to: request, from: peer, socket: socket.fd.rawValue)
        if let bytes = try? reply.encoded() {
            return ConnectionAnswer(bytes: bytes, close: reply.text(0) == String(ResultCode.unknownCommand.rawValue))
        }
        // Too large for the protocol: say so instead of closing silently.
        log.error("the reply to command \(request.command) of process \(peer.pid) exceeds the protocol's limits")
        reply = Message.reply(to: request, error: TenureError(.limitReached, "The reply exceeds the protocol's limit of \(TenureClient.Wire.maxPayloadBytes) bytes.",
                                                               remedy: "Ask for less at once (e.g. inquire one process)."))
        return ConnectionAnswer(bytes: (try? reply.encoded()) ?? [], close: false)
    }

    /// The message decoded into the one request, handled, and its reply
    /// (or the refusal) encoded: failures become error replies.
    private func respond(to message: Message, from peer: Peer, socket: Int32) async -> Message {
        let request: Request
        do {
            request = try TenureWire.decode(message)
        } catch {
            let code: ResultCode = Command(rawValue: message.command) == nil ? .unknownCommand : ResultCode(error.code)
            return .reply(to: message, code, [error.code.rawValue, error.message, error.remedy])
        }
        do {
            return TenureWire.encode(try await daemon.handle(request, from: peer, socket: socket), to: message)
        } catch let error as TenureError {
            return .reply(to: message, error: error)
        } catch {
            return .reply(to: message, error: TenureError(.cancelled, "The request was cancelled: \(error)."))
        }
    }

    func replied(_ request: Message, _ answer: ConnectionAnswer, peer: Peer) async {}
}

extension DaemonServer {
    /// One connection of either socket, a task on the daemon's loop: its
    /// registration lasts as long as it is open. Turned away when the
    /// daemon has too many (the last places are kept for root).
    func converse<Codec: ConnectionCodec>(_ socket: LoopSocket, _ peer: Peer, pidfd: Int32, codec: Codec) async {
        defer { socket.close() }
        let daemon = self.daemon
        guard await daemon.connected(peer, pidfd: pidfd) else {
            log.warning("refused a \(codec.name) connection of process \(peer.pid) (user \(peer.uid)): too many clients")
            let error = TenureError(.limitReached, "Too many clients are connected to the Tenure daemon (its limit is \(config.maxConnections), \(Limits.reservedAdminConnections) of them kept for root).",
                                    remedy: "Retry later, close idle clients, or raise --max-connections.")
            if let bytes = codec.refusal(error) {
                try? await socket.sendAll(bytes, deadline: SystemMonotonicClock.shared.now() + Timeouts.messageArrival)
                // The client sends its request before it reads: closed now, its
                // send would fail (EPIPE) before it read why. Wait for it first.
                _ = await socket.waitReadable(until: SystemMonotonicClock.shared.now() + Timeouts.refusalLinger)
            }
            return
        }
        await serve(socket, peer, codec: codec)
        await daemon.disconnected(peer)
    }

    /// Reads, answers and replies to a connection's requests, one at a
    /// time, in either protocol, until it closes, idles out, or sends what
    /// cannot be read. A connection that never registered and holds
    /// nothing is closed after ``Timeouts/idleConnection`` without a
    /// request; once a message begins, all of it must come within
    /// ``Timeouts/messageArrival``, and its reply be taken within as long.
    func serve<Codec: ConnectionCodec>(_ socket: LoopSocket, _ peer: Peer, codec: Codec) async {
        let daemon = self.daemon
        let clock = SystemMonotonicClock.shared
        var mayIdleOut = true
        while true {
            if mayIdleOut, await !socket.waitReadable(until: clock.now() + Timeouts.idleConnection) {
                if await daemon.mayCloseIdle(peer) {
                    log.notice("closing the idle \(codec.name) connection of process \(peer.pid): no request for \(Timeouts.idleConnection)")
                    return
                }
                mayIdleOut = false
            }
            // A kept connection may wait for ever between messages.
            _ = await socket.waitReadable(until: nil)
            let reading = clock.now()
            let request: Codec.Wire
            do {
                guard let read = try await codec.read(from: socket, deadline: reading + Timeouts.messageArrival) else { return }
                request = read
            } catch {
                log.notice("closing the \(codec.name) connection of process \(peer.pid): \(error)")
                if let bytes = codec.unreadable(error) { try? await socket.sendAll(bytes, deadline: clock.now() + Timeouts.messageArrival) }
                return
            }
            if codec.keepsConnection(request) { mayIdleOut = false }
            // Counted, so that a shutdown waits for this reply to be written.
            inFlight.withLock { $0 += 1 }
            let stages = daemon.requestStages
            let read = clock.now()
            let answer = await codec.answer(request, from: peer, on: socket)
            let done = clock.now()
            stages.add(.read, read - reading)
            stages.add(.handle, done - read)
            var written = true
            if let bytes = answer.bytes {
                do { try await socket.sendAll(bytes, deadline: clock.now() + Timeouts.messageArrival) } catch { written = false }
                written = written && !bytes.isEmpty
            }
            stages.add(.reply, clock.now() - done)
            inFlight.withLock { $0 -= 1 }
            guard written else { return }
            await codec.replied(request, answer, peer: peer)
            if answer.close { return }
        }
    }
}
