//! Name matching for QUERY_DIRECTORY: [MS-FSA] 2.1.4.4, case-insensitive.
//!
//! - `*` matches zero or more characters.
//! - `?` matches exactly one character.
//! - `<` (DOS_STAR) matches zero or more characters up to, and not past, the
//!   last `.` in the name.
//! - `>` (DOS_QM) matches one character; at a `.` or at the end of the name
//!   it matches nothing (so `>>>` matches names of up to three characters).
//! - `"` (DOS_DOT) matches a `.`, or nothing at the end of the name.
//!
//! No translation is applied: `*.*` requires a dot, as with
//! `FsRtlIsNameInExpression` (Windows clients send `*` to list everything).
//! The algorithm follows Samba's `ms_fnmatch_core`.

/// True when `name` matches the [MS-FSA] expression `pattern`, ignoring case.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<char> = pattern.chars().map(fold).collect();
    let n: Vec<char> = name.chars().map(fold).collect();
    let last_dot = n.iter().rposition(|&c| c == '.');
    core(&p, &n, 0, last_dot)
}

/// Upper-cases one character when that gives exactly one character.
pub(crate) fn fold(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

/// The rest of the pattern can match an empty name.
fn null_match(p: &[char]) -> bool {
    p.iter().all(|c| matches!(c, '*' | '<' | '"' | '>'))
}

fn core(p: &[char], n: &[char], mut ni: usize, last_dot: Option<usize>) -> bool {
    let mut pi = 0;
    while pi < p.len() {
        let c = p[pi];
        pi += 1;
        match c {
            '*' => {
                return (ni..n.len()).any(|i| core(&p[pi..], n, i, last_dot)) || null_match(&p[pi..]);
            }
            '<' => {
                for i in ni..n.len() {
                    if core(&p[pi..], n, i, last_dot) {
                        return true;
                    }
                    if Some(i) == last_dot {
                        // May swallow the last dot itself, but nothing after it.
                        return core(&p[pi..], n, i + 1, last_dot);
                    }
                }
                return null_match(&p[pi..]);
            }
            '?' => {
                if ni >= n.len() {
                    return false;
                }
                ni += 1;
            }
            '>' => {
                if ni < n.len() && n[ni] == '.' {
                    if ni + 1 == n.len() && null_match(&p[pi..]) {
                        return true;
                    }
                    // Matches nothing before a dot.
                    continue;
                }
                if ni >= n.len() {
                    return null_match(&p[pi..]);
                }
                ni += 1;
            }
            '"' => {
                if ni >= n.len() && null_match(&p[pi..]) {
                    return true;
                }
                if ni >= n.len() || n[ni] != '.' {
                    return false;
                }
                ni += 1;
            }
            _ => {
                if ni >= n.len() || n[ni] != c {
                    return false;
                }
                ni += 1;
            }
        }
    }
    ni == n.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("*", "", true),
            ("*", "noext", true),
            ("*.txt", "a.txt", true),
            ("*.txt", "A.TXT", true),
            ("*.txt", "a.txt.bak", false),
            ("*.txt", "txt", false),
            ("*.*", "a.b", true),
            ("*.*", "noext", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("A?C", "aXc", true),
            ("exact", "EXACT", true),
            ("exact", "exactly", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            // DOS_STAR: up to the last dot.
            ("<.txt", "file.txt", true),
            ("<.txt", "a.b.txt", true),
            ("<.txt", "file.doc", false),
            ("<", "file.txt", false),
            ("<", "noext", true),
            ("<.*", "file.txt", true),
            ("<.<", "a.b", true),
            ("<.<", "a.b.c", true),
            ("<", "", true),
            // DOS_QM: one char, or nothing at a dot / the end.
            (">", "a", true),
            (">", "", true),
            (">", "ab", false),
            (">>>", "ab", true),
            (">>>", "abcd", false),
            (">>>.>>>", "ab.c", true),
            (">>>.>>>", "abcd.c", false),
            ("a>", "a", true),
            ("a>", "a.", true),
            ("a>.txt", "a.txt", true),
            ("a>.txt", "ab.txt", true),
            // DOS_DOT: a dot, or nothing at the end.
            ("a\"", "a", true),
            ("a\"", "a.", true),
            ("a\"txt", "a.txt", true),
            ("a\"txt", "atxt", false),
            ("a\"", "ab", false),
            ("<\"*", "abc", true),
            ("*\"", "abc", true),
            // Unicode case folding.
            ("ÄBC*", "äbcdef", true),
            ("日本*", "日本語", true),
        ];
        for &(p, n, want) in cases {
            assert_eq!(wildcard_match(p, n), want, "pattern {p:?} name {n:?}");
        }
    }
}
