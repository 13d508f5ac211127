//! SMB path names from the wire, parsed into checked components.
//!
//! Rules, after [MS-FSCC] 2.1.5 and [MS-FSA] 2.1.5.1, with Samba's handling
//! of `..` (`check_path_syntax`):
//! - `\` and `/` both separate components; leading separators are stripped
//!   (a CREATE name with a leading `\` is for the server to refuse, if it wants
//!   Windows' STATUS_INVALID_PARAMETER); one trailing separator is allowed and
//!   remembered ([`SmbPath::trailing_separator`]).
//! - `..` removes the previous component; one that would climb above the
//!   share root is [`FsError::PathSyntaxBad`].
//! - An empty component (`a\\b`), a dot-only component (`.`, `...`), a NUL
//!   or any character below 0x20, `"` `*` `:` `<` `>` `?` `|` (wildcards and
//!   stream names), or a component longer than 255 UTF-16 units or 255 UTF-8
//!   bytes (Linux's NAME_MAX) is [`FsError::NameInvalid`].
//!
//! Errors are reported left to right, as Windows and Samba do.

use super::FsError;

/// A checked, normalised path relative to a share root. The empty path is the
/// root. Components are never empty, `.` or `..` and contain no separator,
/// NUL or Windows-invalid character, so they can be handed to `*at` calls.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SmbPath {
    components: Vec<String>,
    trailing_separator: bool,
}

/// Longest component, in UTF-16 units (Windows) and in bytes (Linux NAME_MAX).
const MAX_COMPONENT: usize = 255;

impl SmbPath {
    /// Parses a path as it came off the wire (already decoded from UTF-16).
    pub fn parse(smb_path: &str) -> Result<SmbPath, FsError> {
        let trimmed = smb_path.trim_start_matches(['\\', '/']);
        let mut components: Vec<String> = Vec::new();
        let mut trailing_separator = false;
        if trimmed.is_empty() {
            return Ok(SmbPath { components, trailing_separator: false });
        }
        let parts: Vec<&str> = trimmed.split(['\\', '/']).collect();
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                if i == last {
                    trailing_separator = true;
                    continue;
                }
                return Err(FsError::NameInvalid);
            }
            if *part == ".." {
                if components.pop().is_none() {
                    return Err(FsError::PathSyntaxBad);
                }
                continue;
            }
            check_component(part)?;
            components.push((*part).to_owned());
        }
        Ok(SmbPath { components, trailing_separator })
    }

    /// The root of the share.
    pub fn root() -> SmbPath {
        SmbPath::default()
    }

    /// True for the share root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The final component (`None` for the root).
    pub fn leaf(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// The path ended with a separator: the object must be a directory.
    pub fn trailing_separator(&self) -> bool {
        self.trailing_separator
    }
}

impl std::fmt::Display for SmbPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\\{}", self.components.join("\\"))
    }
}

/// Checks one component against the Windows naming rules.
pub(crate) fn check_component(part: &str) -> Result<(), FsError> {
    // ".", and "...", "....": dot-only names are refused.
    if part.bytes().all(|b| b == b'.') {
        return Err(FsError::NameInvalid);
    }
    if part.len() > MAX_COMPONENT || part.encode_utf16().count() > MAX_COMPONENT {
        return Err(FsError::NameInvalid);
    }
    if part
        .chars()
        .any(|c| (c as u32) < 0x20 || matches!(c, '"' | '*' | ':' | '<' | '>' | '?' | '|' | '\\' | '/'))
    {
        return Err(FsError::NameInvalid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> Vec<String> {
        SmbPath::parse(p).unwrap_or_else(|e| panic!("{p:?}: {e}")).components().to_vec()
    }

    fn err(p: &str) -> FsError {
        SmbPath::parse(p).expect_err(p)
    }

    #[test]
    fn separators_and_root() {
        assert!(ok("").is_empty());
        assert!(ok("\\").is_empty());
        assert!(ok("/").is_empty());
        assert_eq!(ok("a\\b/c"), ["a", "b", "c"]);
        assert_eq!(ok("\\a\\b"), ["a", "b"]);
        let p = SmbPath::parse("dir\\").unwrap();
        assert_eq!(p.components(), ["dir"]);
        assert!(p.trailing_separator());
        assert!(!SmbPath::parse("dir").unwrap().trailing_separator());
        assert_eq!(p.to_string(), "\\dir");
        assert_eq!(ok("a b.txt"), ["a b.txt"]);
        assert_eq!(ok("ünïcødé\\日本"), ["ünïcødé", "日本"]);
        assert_eq!(ok(".hidden\\a.\\a..b"), [".hidden", "a.", "a..b"]);
    }

    #[test]
    fn dot_dot() {
        assert_eq!(ok("a\\..\\b"), ["b"]);
        assert_eq!(ok("a\\b\\..\\..\\c"), ["c"]);
        assert!(ok("a\\..").is_empty());
        assert!(matches!(err(".."), FsError::PathSyntaxBad));
        assert!(matches!(err("\\..\\..\\etc\\passwd"), FsError::PathSyntaxBad));
        assert!(matches!(err("a\\..\\..\\b"), FsError::PathSyntaxBad));
        assert!(matches!(err("/../etc"), FsError::PathSyntaxBad));
    }

    #[test]
    fn invalid_names() {
        for p in [
            ".", "...", "a\\....\\b", "a\\.\\b", "a\\.", "a\\\\b", "a:b", "file.txt:stream", "C:\\Windows", "a*", "a?", "a<b", "a>b",
            "a\"b", "a|b", "nul\0x", "tab\t", "\u{1f}",
        ] {
            assert!(matches!(err(p), FsError::NameInvalid), "{p:?}");
        }
        let long = "x".repeat(256);
        assert!(matches!(err(&long), FsError::NameInvalid));
        assert_eq!(ok(&"x".repeat(255)).len(), 1);
        // 200 UTF-16 units but 400 bytes: too long for Linux.
        assert!(matches!(err(&"é".repeat(200)), FsError::NameInvalid));
        // Errors are reported left to right.
        assert!(matches!(err("..\\a*"), FsError::PathSyntaxBad));
        assert!(matches!(err("a*\\..\\.."), FsError::NameInvalid));
    }
}
