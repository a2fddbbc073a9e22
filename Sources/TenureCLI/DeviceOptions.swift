import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureEngine
import TenureFormat
import TenureIO

/// Layout options shared by `init` and `format`.
struct LayoutOptions: ParsableArguments {
    @Option(name: .customLong("sector-size"), help: ArgumentHelp("Sector size of the layout: 512 or 4096 (default: the device's).", valueName: "BYTES"))
    var sectorSize: String?

    @Option(help: ArgumentHelp("Size of each lease area: 1M, 2M, 4M or 8M (default: 1M for 512-byte sectors, 8M for 4096).", valueName: "SIZE"))
    var align: String?

    @Option(name: .customLong("max-hosts"), parsing: .unconditional, help: ArgumentHelp("Host slots in each resource lease (its num_hosts). Fewer slots mean less to read on every acquire; host ids above it cannot take the lease. Default: the most the layout holds.", valueName: "N"))
    var maxHosts: Int?

    @Option(name: .customLong("io-timeout"), parsing: .unconditional, help: ArgumentHelp("io_timeout recorded in the lockspace, in seconds (1...300). Every other timeout derives from it.", valueName: "SECONDS"))
    var ioTimeout: Int = 10

    /// Largest io_timeout accepted (sanlock's u16 field would allow more; nothing sane needs it).
    static let maxIOTimeoutSeconds = IOTimeout.maxSeconds

    func parsedSectorSize() throws -> SectorSize? {
        guard let sectorSize else { return nil }
        guard let s = SectorSize(parsing: sectorSize) else {
            throw TenureError(.invalidGeometry, "--sector-size \(sectorSize) is not a sector size Tenure supports.", remedy: "Use 512 or 4096.")
        }
        return s
    }

    func parsedAlignment() throws -> Alignment? {
        guard let align else { return nil }
        guard let a = Alignment(parsing: align) else {
            throw TenureError(.invalidGeometry, "--align \(align) is not a lease area size.", remedy: "Use 1M, 2M, 4M or 8M.")
        }
        return a
    }

    func parsedIOTimeout() throws -> IOTimeout {
        try IOTimeout(checking: ioTimeout)
    }

    func geometry(for device: any BlockDevice) throws -> LeaseGeometry {
        try LeaseAreas.geometry(sectorSize: parsedSectorSize(), alignment: parsedAlignment(), device: device)
    }

    func numHosts(for geometry: LeaseGeometry) -> Int { maxHosts ?? geometry.maxHosts }
}

/// How the command opens devices.
enum Devices {
    /// Deadline for each I/O the direct commands issue.
    static let ioDeadline: Duration = .seconds(10)

    static func open(_ path: String, access: DeviceAccess = .readWrite) throws -> any BlockDevice {
        try openBlockDevice(path: path, engine: .aio, ioTimeout: ioDeadline, access: access)
    }

    /// Runs `body` with the device open, closing it afterwards whatever happens.
    /// Read-only commands pass `.readOnly`: they need no write permission.
    static func with<T>(_ path: String, access: DeviceAccess = .readWrite, _ body: (any BlockDevice) async throws -> T) async throws -> T {
        let device = try open(path, access: access)
        do {
            let result = try await body(device)
            await device.close()
            return result
        } catch {
            await device.close()
            throw error
        }
    }
}
