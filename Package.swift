// swift-tools-version: 6.0
//
// Tenure: a cluster-wide lease manager on shared storage, on-disk compatible
// with sanlock 3.x. See docs/architecture.md for the module map.
import PackageDescription

let package = Package(
    name: "Tenure",
    products: [
        .executable(name: "tenure", targets: ["tenure"]),
        .executable(name: "tenured", targets: ["tenured"]),
        .executable(name: "tenure-sim", targets: ["tenure-sim"]),
        .library(name: "TenureCore", targets: ["TenureCore"]),
        .library(name: "TenureFormat", targets: ["TenureFormat"]),
        .library(name: "TenureIO", targets: ["TenureIO"]),
    ],
    dependencies: [
        // Command-line parsing with generated --help: the `tenure` command.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Leveled logging to stderr for the daemon (the Swift server ecosystem's logging API).
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C shims only: libaio, O_DIRECT flags, block-device ioctls, statfs. No logic.
        .target(
            name: "CTenureSys",
            path: "Sources/CTenureSys",
            linkerSettings: [.linkedLibrary("aio")]
        ),
        // Value types, timeouts, the error type and the seams (BlockDevice, MonotonicClock).
        .target(name: "TenureCore"),
        // Pure bytes: sanlock 3.x's on-disk structures, checksum, layout math, strings.
        .target(name: "TenureFormat", dependencies: ["TenureCore"]),
        // The algorithms: lease areas, delta leases, Disk Paxos. Talks to the world only through the seams.
        .target(name: "TenureEngine", dependencies: ["TenureCore", "TenureFormat"]),
        // The host core: every decision the daemon makes about local processes and their
        // leases, as events in and directives out. The daemon and the simulator drive it.
        .target(name: "TenureHost", dependencies: ["TenureCore", "TenureFormat", "TenureEngine"]),
        // Linux implementations of the seams: O_DIRECT + libaio device, sync fallback, clock.
        // The one path for system calls (errno policy, messages): the device,
        // the daemon, the client and the watchdog all call through it.
        .target(name: "TenureSyscall", dependencies: ["TenureCore"]),
        .target(name: "TenureIO", dependencies: ["TenureCore", "TenureSyscall", "CTenureSys"]),
        // The client protocol, declared once in C: the daemon, the Swift client and libtenure share it.
        .target(name: "CTenureProto", path: "Sources/CTenureProto"),
        // The Swift client API and the wire codec.
        .target(name: "TenureClient", dependencies: ["CTenureProto", "TenureCore", "TenureSyscall"]),
        // sanlock's client protocol: its messages, decoded into typed requests (the drop-in).
        .target(name: "TenureSanlockWire", dependencies: ["TenureCore", "TenureFormat"]),
        // The daemon: socket server, leases held for processes, fencing.
        .target(
            name: "TenureDaemon",
            dependencies: ["TenureClient", "TenureCore", "TenureFormat", "TenureEngine", "TenureHost", "TenureIO", "TenureSyscall", "TenureSanlockWire", "CTenureSys",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // Starting the daemon: settings (flags, config file), log, signals, the
        // hand-over to `tenured`. No ArgumentParser, no Foundation: tenured links it.
        .target(
            name: "TenureLaunch",
            dependencies: ["TenureClient", "TenureCore", "TenureDaemon", "TenureEngine", "TenureIO", "TenureSyscall",
                           .product(name: "Logging", package: "swift-log")]
        ),
        // In-memory device and manual clock for unit tests and the simulator.
        .target(name: "TenureTestKit", dependencies: ["TenureCore"]),
        // The `tenure` subcommands, as a library so tests can drive them in-process too.
        .target(
            name: "TenureCLI",
            dependencies: [
                "TenureCore", "TenureFormat", "TenureEngine", "TenureIO", "TenureSyscall", "TenureSanlockWire", "TenureClient", "TenureDaemon", "TenureLaunch", "CTenureSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "tenure", dependencies: ["TenureCLI", "TenureIO"], path: "Tools/tenure"),
        // The daemon's own binary: what `tenure daemon` hands over to, without
        // the command line's libraries (ArgumentParser, FoundationEssentials).
        .executableTarget(name: "tenured", dependencies: ["TenureLaunch", "TenureCore", "TenureIO", "TenureSyscall"], path: "Tools/tenured"),
        // The deterministic simulator: the real engine, many hosts, every fault, replayable by seed.
        .target(
            name: "TenureSimKit",
            dependencies: ["TenureCore", "TenureFormat", "TenureEngine", "TenureHost", "TenureTestKit"],
            path: "Simulations/TenureSimKit"
        ),
        .executableTarget(
            name: "tenure-sim",
            dependencies: ["TenureSimKit", "TenureCore", "TenureEngine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Simulations/TenureSim"
        ),

        // For tests only: the .ownThreads trait (test bodies that block run off the
        // cooperative pool) and the pool's watchdog.
        .target(name: "TenureTestSupport", dependencies: ["TenureIO", "TenureSyscall"], path: "Tests/TenureTestSupport"),

        .testTarget(name: "TenureFormatTests", dependencies: ["TenureTestSupport", "TenureFormat", "TenureCore"]),
        .testTarget(name: "TenureTestKitTests", dependencies: ["TenureTestSupport", "TenureTestKit", "TenureCore"]),
        .testTarget(name: "TenureEngineTests", dependencies: ["TenureTestSupport", "TenureEngine", "TenureTestKit", "TenureFormat", "TenureCore"]),
        .testTarget(name: "TenureClientTests", dependencies: ["TenureClient", "CTenureProto", "TenureCore"]),
        .testTarget(name: "TenureSanlockWireTests", dependencies: ["TenureTestSupport", "TenureSanlockWire", "TenureCore"]),
        .testTarget(name: "TenureHostTests", dependencies: ["TenureHost", "TenureEngine", "TenureFormat", "TenureCore"]),
        .testTarget(name: "TenureSimTests", dependencies: ["TenureTestSupport", "TenureSimKit", "TenureEngine", "TenureCore"]),
        .testTarget(name: "TenureIOTests", dependencies: ["TenureTestSupport", "TenureIO", "TenureSyscall", "TenureCore", "TenureTestKit"]),
        .testTarget(
            name: "TenureCLITests",
            dependencies: ["TenureTestSupport", "TenureCLI", "TenureClient", "TenureDaemon", "TenureEngine", "TenureFormat", "TenureIO", "TenureCore", "TenureLaunch", "TenureSanlockWire", "tenure", "tenured"]
        ),
    ]
)
