import TenureCore

/// How `tenure daemon` hands its flags to `tenured`: `--config FILE` and
/// `--KEY VALUE` for each flag given, the keys being ``DaemonSettings/keys``.
/// Both sides read the config file the same way (``DaemonSettings/load(flags:configPath:)``).
public enum DaemonArguments {
    /// The flags given, as `tenured` takes them.
    public static func render(flags: [String: String], configPath: String) -> [String] {
        ["--config", configPath] + flags.sorted { $0.key < $1.key }.flatMap { ["--\($0.key)", $0.value] }
    }

    /// What `tenured` was given: the flags by key and the config file; nil
    /// for --help.
    public static func parse(_ arguments: [String]) throws -> (flags: [String: String], configPath: String)? {
        var flags: [String: String] = [:]
        var configPath = DaemonSettings.defaultConfigPath
        var rest = arguments[...]
        while let word = rest.popFirst() {
            if word == "--help" || word == "-h" { return nil }
            // tenured always stays in the foreground: detaching is tenure daemon's.
            if word == "--foreground" { continue }
            guard word.hasPrefix("--") else {
                throw TenureError(.invalidArgument, "tenured: \(word) is not a --KEY VALUE setting.", remedy: usageRemedy)
            }
            var key = String(word.dropFirst(2))
            var value: String?
            if let equals = key.firstIndex(of: "=") {
                value = String(key[key.index(after: equals)...])
                key = String(key[..<equals])
            }
            guard key == "config" || DaemonSettings.keys.contains(key) else {
                let nearest = Spelling.nearest(key, in: DaemonSettings.keys).map { "Did you mean --\($0)? " } ?? ""
                throw TenureError(.invalidArgument, "tenured: --\(key) is not a daemon setting.", remedy: nearest + usageRemedy)
            }
            guard let given = value ?? rest.popFirst() else {
                throw TenureError(.invalidArgument, "tenured: --\(key) needs a value.", remedy: usageRemedy)
            }
            if key == "config" { configPath = given } else { flags[key] = given }
        }
        return (flags, configPath)
    }

    static let usageRemedy = "Start the daemon with `tenure daemon`, whose --help lists the settings."

    /// What `tenured --help` prints.
    public static let help = """
        tenured: the Tenure daemon's own binary, without the command line's \
        libraries, so the daemon's locked memory is only what it runs.

        Start it with `tenure daemon` (see `tenure daemon --help`), which checks \
        the settings, detaches unless --foreground, and hands over to tenured \
        with the same pid. It takes the same settings, as --KEY VALUE:
          --config FILE \(DaemonSettings.keys.map { "--\($0)" }.joined(separator: " "))

        """
}
