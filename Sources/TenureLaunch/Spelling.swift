/// Names the known word nearest a misspelled one, for errors that say
/// "did you mean …": config keys, sanlock.conf keys.
public enum Spelling {
    /// The known word fewest edits away (ties: the first in `known`).
    public static func nearest(_ word: String, in known: [String]) -> String? {
        known.min { distance(word, $0) < distance(word, $1) }
    }

    /// Levenshtein distance: insertions, deletions and substitutions.
    public static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var previous = row[0]
            row[0] = i
            for j in 1...b.count {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] == b[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[b.count]
    }
}
