//! 8.3 short names for FileBothDirectoryInformation and friends.
//!
//! A name that is already a valid 8.3 name (ASCII, no spaces, a 1-8 character
//! base, at most one dot and a 0-3 character extension, only the characters
//! FAT allows) is its own short name, uppercased. Any other name gets
//! `PPPP~HHH.EEE`: up to four valid characters of the base, `~`, three
//! base-36 digits of a hash of the whole long name, and up to three valid
//! characters of the extension. The result depends only on the long name, so
//! both nodes of a pair give the same answer without keeping a table;
//! collisions within a directory are possible (1 in 46,656 per prefix) and are
//! not detected. [`Share::resolve`](super::Share::resolve) accepts short names.

/// The 8.3 name of `name`.
pub fn short_name(name: &str) -> String {
    if let Some(valid) = as_8dot3(name) {
        return valid;
    }
    let (base, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
        _ => (name, ""),
    };
    let mut out: String = base.chars().filter_map(short_char).take(4).collect();
    if out.is_empty() {
        out.push('_');
    }
    out.push('~');
    let mut h = fnv1a(name.as_bytes()) % (36 * 36 * 36);
    let mut digits = [0u8; 3];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(h % 36) as usize];
        h /= 36;
    }
    out.extend(digits.iter().map(|&b| b as char));
    let ext: String = ext.chars().filter_map(short_char).take(3).collect();
    if !ext.is_empty() {
        out.push('.');
        out.push_str(&ext);
    }
    out
}

/// True when `name` is itself a valid 8.3 name (case ignored). Windows and
/// Samba send an empty ShortName for such names in
/// FileBothDirectoryInformation and FileIdBothDirectoryInformation.
pub fn is_8dot3(name: &str) -> bool {
    name != "." && name != ".." && as_8dot3(name).is_some()
}

/// `name` uppercased if it is a valid 8.3 name.
fn as_8dot3(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(name.to_owned());
    }
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (name, None),
    };
    if base.is_empty() || base.len() > 8 || ext.is_some_and(|e| e.is_empty() || e.len() > 3) {
        return None;
    }
    let all_valid = |s: &str| s.chars().all(|c| short_char(c) == Some(c.to_ascii_uppercase()));
    if !all_valid(base) || !ext.into_iter().all(all_valid) {
        return None;
    }
    Some(name.to_ascii_uppercase())
}

/// The character as it may appear in a short name, uppercased, or `None`.
fn short_char(c: char) -> Option<char> {
    match c {
        'a'..='z' => Some(c.to_ascii_uppercase()),
        'A'..='Z' | '0'..='9' => Some(c),
        '!' | '#' | '$' | '%' | '&' | '\'' | '(' | ')' | '-' | '@' | '^' | '_' | '`' | '{' | '}' | '~' => Some(c),
        _ => None,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// True when `name` has the shape of a generated short name (for lookups).
pub(crate) fn looks_mangled(name: &str) -> bool {
    name.contains('~') && as_8dot3(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept() {
        assert_eq!(short_name("readme.txt"), "README.TXT");
        assert_eq!(short_name("FILE"), "FILE");
        assert_eq!(short_name("a_b-c.c"), "A_B-C.C");
        assert_eq!(short_name("12345678.123"), "12345678.123");
        assert!(is_8dot3("readme.txt") && is_8dot3("A") && is_8dot3("x.y"));
        for n in ["longfilename.txt", "a b", "a.b.c", ".bashrc", "x.abcd", "", "."] {
            assert!(!is_8dot3(n), "{n:?}");
        }
    }

    #[test]
    fn long_names_are_mangled() {
        for long in ["longfilename.txt", "a b.txt", "x.tar.gz", ".bashrc", "file.html", "日本語.txt", "a+b", "123456789"] {
            let s = short_name(long);
            assert!(as_8dot3(&s).is_some(), "{long:?} -> {s:?}");
            assert!(looks_mangled(&s), "{s}");
            assert_eq!(s, short_name(long), "deterministic");
        }
        let s = short_name("longfilename.txt");
        assert!(s.starts_with("LONG~") && s.ends_with(".TXT"), "{s}");
        assert!(short_name("x.tar.gz").ends_with(".GZ"));
        assert!(short_name(".bashrc").starts_with("BASH~"), "{}", short_name(".bashrc"));
        assert!(short_name("file.html").ends_with(".HTM"));
        assert!(short_name("日本語.txt").starts_with("_~"));
        assert_ne!(short_name("longfilename1.txt"), short_name("longfilename2.txt"));
    }
}
