import Glibc
import Dispatch
import Logging
import TenureCore
import TenureSyscall

/// The metrics over HTTP (`--metrics-listen HOST:PORT`, off by default):
/// `GET /metrics` answers Prometheus's text; anything else 404. One
/// connection at a time on a thread of its own: a scraper is one client,
/// and nothing here may take the daemon's attention from renewals.
final class MetricsListener: @unchecked Sendable {
    let address: String
    /// The endpoint's thread's name in ps, top and gdb.
    static let threadName = "tenure-metrics"
    let listener: FileDescriptor
    let log: Logger

    /// The most a request may send before its blank line.
    static let maxRequestBytes = 8192

    init(address: String, log: Logger) throws {
        self.address = address
        self.log = log
        listener = try Self.listen(address)
        log.info("serving metrics on http://\(address)/metrics")
    }

    /// The listening socket, or an error that says what is wrong with the address.
    static func listen(_ address: String) throws(TenureError) -> FileDescriptor {
        do throws(TenureError) {
            return try TCPSocket.listen(address, backlog: 16)
        } catch {
            let reasons: [Int32: String] = [EADDRINUSE: "another program listens on it", EACCES: "this user may not bind that port",
                                             EADDRNOTAVAIL: "no interface of this host has that address"]
            guard let errno = error.errno, let why = reasons[errno] else { throw error }
            throw TenureError(.invalidArgument, "--metrics-listen \(address): cannot listen there: \(why).",
                              remedy: "Give a free HOST:PORT (ss -ltnp shows who holds one), or leave metrics-listen out.", errno: errno)
        }
    }

    /// Accepts scrapes until ``close()``.
    func serve(_ server: DaemonServer) {
        while true {
            let connection: FileDescriptor
            do {
                switch try UnixSocket.accept(listener, path: address) {
                case .connection(let fd): connection = fd
                case .peerGone: continue
                case .listenerClosed: return
                case .noneWaiting: continue
                }
            } catch {
                log.error("accepting a metrics connection failed: \(error)")
                usleep(100_000)
                continue
            }
            answer(connection, server)
            try? Syscall.close(connection, path: address)
        }
    }

    /// Reads the request head and answers it. The whole head must come
    /// within ``Timeouts/metricsRequest``: a peer trickling bytes cannot
    /// hold the endpoint.
    func answer(_ fd: FileDescriptor, _ server: DaemonServer) {
        var head: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        let deadline = ContinuousClock.now + Timeouts.metricsRequest
        while head.count < Self.maxRequestBytes, !head.ends(with: Array("\r\n\r\n".utf8)) {
            let left = deadline - ContinuousClock.now
            guard left > .zero, (try? UnixSocket.waitReadable(fd, within: left, path: address)) == true,
                  let n = try? UnixSocket.receive(into: &chunk, at: 0, count: chunk.count, from: fd, path: address), n > 0 else { return }
            head += chunk[..<n]
        }
        let requestLine = String(decoding: head.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let response: String
        if requestLine.count >= 2, requestLine[0] == "GET", requestLine[1] == "/metrics" || requestLine[1].hasPrefix("/metrics?") {
            let daemon = server.daemon
            let body = server.wait { await daemon.metricsText() }
            response = "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        } else {
            let body = "Tenure serves its metrics at /metrics only.\n"
            response = "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n" + body
        }
        try? UnixSocket.sendAll(Array(response.utf8), to: fd, path: address)
    }

    func close() {
        UnixSocket.shutdown(listener, path: address)
        try? Syscall.close(listener, path: address)
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
