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
//! The matcher runs the expression as a nondeterministic automaton over
//! the name, one character at a time, keeping the set of pattern positions
//! that are still alive (as `FsRtlIsNameInExpression` does): time is
//! O(name length × pattern length) and memory O(pattern length), whatever
//! the pattern. A backtracking matcher (this module's first version) is
//! exponential in the number of `*`s, which let one QUERY_DIRECTORY stall a
//! worker thread for minutes.

/// The longest expression QUERY_DIRECTORY takes, in UTF-16 units: a file
/// name component is at most 255 ([MS-FSCC] 2.1.5.2), and a longer
/// expression could only match by its wildcards matching nothing.
pub const MAX_PATTERN: usize = 255;

/// True when `name` matches the [MS-FSA] expression `pattern`, ignoring case.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    Expr::new(pattern).matches(name)
}

/// An expression compiled once for matching many names (a directory
/// listing).
#[derive(Debug, Clone)]
pub struct Expr {
    /// Case-folded, with runs of `*` collapsed to one (same meaning).
    p: Vec<char>,
    /// Characters every match consumes at least: literals and `?`. A name
    /// shorter than this fails without running the automaton.
    min_len: usize,
}

impl Expr {
    pub fn new(pattern: &str) -> Expr {
        let mut p: Vec<char> = Vec::with_capacity(pattern.len());
        for c in pattern.chars().map(fold) {
            if c == '*' && p.last() == Some(&'*') {
                continue;
            }
            p.push(c);
        }
        let min_len = p.iter().filter(|c| !matches!(c, '*' | '<' | '>' | '"')).count();
        Expr { p, min_len }
    }

    /// True when `name` matches, ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        let p = &self.p;
        if p.len() == 1 && p[0] == '*' {
            return true;
        }
        let n: Vec<char> = name.chars().map(fold).collect();
        if n.len() < self.min_len {
            return false;
        }
        let last_dot = n.iter().rposition(|&c| c == '.');
        // Alive pattern positions before the next name character. `done`
        // marks positions at a `<` that has just swallowed the last dot and
        // may take nothing more.
        let mut alive = States::new(p.len() + 1);
        let mut next = States::new(p.len() + 1);
        alive.insert(0, false);
        for ni in 0..=n.len() {
            self.close(&mut alive, &n, ni);
            if ni == n.len() {
                break;
            }
            next.clear();
            let c = n[ni];
            for k in 0..alive.list.len() {
                let (pi, done) = alive.list[k];
                let Some(&pc) = p.get(pi) else { continue };
                match pc {
                    '*' => next.insert(pi, false),
                    '<' if !done => {
                        // Up to, and including, the last dot; anything when
                        // the dot is behind us.
                        if Some(ni) == last_dot {
                            next.insert(pi, true);
                        } else {
                            next.insert(pi, false);
                        }
                    }
                    '<' => {}
                    '?' => next.insert(pi + 1, false),
                    '>' => {
                        // One character; at a dot only when it is the
                        // name's last character.
                        if c != '.' || ni + 1 == n.len() {
                            next.insert(pi + 1, false);
                        }
                    }
                    '"' => {
                        if c == '.' {
                            next.insert(pi + 1, false);
                        }
                    }
                    lit => {
                        if lit == c {
                            next.insert(pi + 1, false);
                        }
                    }
                }
            }
            std::mem::swap(&mut alive, &mut next);
            if alive.list.is_empty() {
                return false;
            }
        }
        alive.contains(p.len())
    }

    /// Adds the positions reachable without consuming a character at name
    /// position `ni`. Moves only go forward, so one pass in list order
    /// (which grows as it goes) reaches them all.
    fn close(&self, s: &mut States, n: &[char], ni: usize) {
        let p = &self.p;
        let at_end = ni == n.len();
        let at_dot = !at_end && n[ni] == '.';
        let mut k = 0;
        while k < s.list.len() {
            let (pi, _) = s.list[k];
            k += 1;
            let skip = match p.get(pi) {
                // Zero characters.
                Some('*') | Some('<') => true,
                // Nothing before a dot or at the end.
                Some('>') => at_dot || at_end,
                // Nothing at the end.
                Some('"') => at_end,
                _ => false,
            };
            if skip {
                s.insert(pi + 1, false);
            }
        }
    }
}

/// A set of automaton states `(pattern position, done)`, as a list (to
/// walk) and a bitmap (to test), both bounded by the pattern's length.
struct States {
    list: Vec<(usize, bool)>,
    seen: Vec<u8>,
}

impl States {
    fn new(positions: usize) -> States {
        States { list: Vec::with_capacity(positions), seen: vec![0; positions] }
    }

    fn insert(&mut self, pi: usize, done: bool) {
        let bit = if done { 2 } else { 1 };
        if self.seen[pi] & bit == 0 {
            self.seen[pi] |= bit;
            self.list.push((pi, done));
        }
    }

    fn contains(&self, pi: usize) -> bool {
        self.seen[pi] != 0
    }

    fn clear(&mut self) {
        for &(pi, _) in &self.list {
            self.seen[pi] = 0;
        }
        self.list.clear();
    }
}

/// Upper-cases one character when that gives exactly one character.
pub(crate) fn fold(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
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

    /// The backtracking matcher this module used to have (after Samba's
    /// `ms_fnmatch_core`): exponential, but simple; the automaton must
    /// agree with it.
    mod backtrack {
        pub fn matches(pattern: &str, name: &str) -> bool {
            use super::super::fold;
            let p: Vec<char> = pattern.chars().map(fold).collect();
            let n: Vec<char> = name.chars().map(fold).collect();
            let last_dot = n.iter().rposition(|&c| c == '.');
            core(&p, &n, 0, last_dot)
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

    }

    /// Every pattern of up to 5 characters from a small alphabet against
    /// every name of up to 5 characters: the automaton agrees with the
    /// backtracking matcher.
    #[test]
    fn agrees_with_backtracking_on_all_small_cases() {
        const P: [char; 8] = ['*', '?', '<', '>', '"', '.', 'a', 'b'];
        const N: [char; 3] = ['.', 'a', 'b'];
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max {
                let mut next = Vec::new();
                for s in &layer {
                    for &c in alphabet {
                        next.push(format!("{s}{c}"));
                    }
                }
                out.extend(next.iter().cloned());
                layer = next;
            }
            out
        }
        let names = all(&N, 5);
        let mut checked = 0;
        for p in all(&P, 4) {
            let e = Expr::new(&p);
            for n in &names {
                assert_eq!(e.matches(n), backtrack::matches(&p, n), "pattern {p:?} name {n:?}");
                checked += 1;
            }
        }
        assert!(checked > 1_000_000);
    }

    /// Patterns that make backtracking take exponential time (this test
    /// ran for hours with the old matcher, until nextest killed it) are
    /// answered by the automaton in at most name × pattern steps.
    #[test]
    fn pathological_patterns_are_linear() {
        let name = "a".repeat(250);
        let pattern = format!("{}b", "*a".repeat(60));
        assert!(!wildcard_match(&pattern, &name));
        let pattern = format!("{}b", "<a".repeat(60));
        assert!(!wildcard_match(&pattern, &name));
        let pattern = "*a".repeat(60);
        assert!(wildcard_match(&pattern, &name));
    }

}
