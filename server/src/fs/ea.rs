//! Extended attributes ([MS-FSCC] 2.4.15 FILE_FULL_EA_INFORMATION) kept as
//! user xattrs, in the layout Samba uses with `ea support = yes`, so a file
//! keeps its EAs when the share moves between Duet and smbd and they show
//! locally with `getfattr`:
//!
//! ```text
//! // Format: EA NAME = xattr user.NAME = { value bytes as the client sent them }
//! ```
//!
//! - Names are ASCII, 1 to 255 bytes, without control characters or any of
//!   `"*+,/:;<=>?[\]|` (the list Windows refuses, as smbd's
//!   `is_invalid_windows_ea_name` probes it); a bad name is
//!   [`EaError::InvalidName`] (STATUS_INVALID_EA_NAME). Bytes above 0x7F
//!   are refused too: an xattr name is not in any code page.
//! - Names compare without case: setting `Foo` where `user.FOO` exists
//!   replaces `user.FOO`'s value and keeps its spelling (as smbd does);
//!   a value of length 0 deletes every spelling of the name.
//! - Names that are not the client's ([`reserved`]) are never listed and
//!   refused with [`EaError::Reserved`] (STATUS_ACCESS_DENIED): Duet's own
//!   `user.duet.*` (`uid`, `btime`, `attrib`, see [`super::uid`] and
//!   [`super::stat`]), and Samba's private names (`user.DOSATTRIB`,
//!   `user.SAMBA_PAI`, `user.SAMBA_STREAMS`, `user.SmbReparse`,
//!   `user.org.netatalk.Metadata` and the `user.DosStream.` streams), so
//!   that neither server lets a client overwrite the other's bookkeeping.
//! - An xattr outside `user.`, with a name a client could not send, with
//!   an empty value or a value over 65535 bytes is not an EA (smbd's
//!   `get_ea_list_from_fsp` leaves the same out).
//! - EA flags (FILE_NEED_EA) are not kept; queries answer 0.
//!
//! Without user xattrs on the share's file system every call is
//! [`EaError::NotSupported`] (STATUS_EAS_NOT_SUPPORTED) and sizes are 0.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::AsFd;

use protocol::NtStatus;

use super::error::io_err;
use super::sys::{self, XattrTarget};
use super::{FsError, Handle};

/// The longest EA name (EaNameLength is a byte).
pub const MAX_NAME_LEN: usize = 255;
/// The longest EA value (EaValueLength is 16 bits).
pub const MAX_VALUE_LEN: usize = 65535;

/// The xattr namespace EAs live in.
const PREFIX: &[u8] = b"user.";

/// Characters Windows refuses in an EA name (besides controls).
const BAD_CHARS: &[u8] = b"\"*+,/:;<=>?[\\]|";

/// EA names (the part after `user.`) that belong to the servers, compared
/// without case: prefixes, then whole names.
const RESERVED_PREFIXES: &[&[u8]] = &[b"duet.", b"DosStream."];
const RESERVED_NAMES: &[&[u8]] =
    &[b"DOSATTRIB", b"SAMBA_PAI", b"SAMBA_STREAMS", b"SmbReparse", b"org.netatalk.Metadata"];

/// One extended attribute: its name as stored (after `user.`) and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ea {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// Why an EA operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EaError {
    /// A name a client may not use ([`check_name`]).
    #[error("invalid EA name")]
    InvalidName,
    /// A name that maps onto a server's own xattr ([`reserved`]).
    #[error("reserved EA name")]
    Reserved,
    /// The share's file system has no user xattrs.
    #[error("EAs not supported")]
    NotSupported,
    /// The file system has no room for the value (`E2BIG`, `ENOSPC`,
    /// `ERANGE` from `fsetxattr`: ext4 keeps all of a file's xattrs in one
    /// block).
    #[error("EA too large")]
    TooLarge,
    #[error(transparent)]
    Fs(#[from] FsError),
}

impl EaError {
    /// The NTSTATUS a server returns for this error ([MS-ERREF] 2.3).
    pub fn status(&self) -> NtStatus {
        match self {
            EaError::InvalidName => NtStatus::INVALID_EA_NAME,
            EaError::Reserved => NtStatus::ACCESS_DENIED,
            EaError::NotSupported => NtStatus::EAS_NOT_SUPPORTED,
            EaError::TooLarge => NtStatus::EA_TOO_LARGE,
            EaError::Fs(e) => e.status(),
        }
    }
}

/// Checks a name a client sent: [`EaError::InvalidName`] for a name
/// Windows refuses (or one not ASCII), [`EaError::Reserved`] for a
/// server's own.
pub fn check_name(name: &[u8]) -> Result<(), EaError> {
    if !valid_name(name) {
        return Err(EaError::InvalidName);
    }
    if reserved(name) {
        return Err(EaError::Reserved);
    }
    Ok(())
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.iter().all(|&b| (0x20..0x80).contains(&b) && !BAD_CHARS.contains(&b))
}

/// True for an EA name (after `user.`) that maps onto a server's own
/// xattr: never listed, never set.
pub fn reserved(name: &[u8]) -> bool {
    RESERVED_PREFIXES.iter().any(|p| name.len() >= p.len() && name[..p.len()].eq_ignore_ascii_case(p))
        || RESERVED_NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The EA name an xattr shows as, or `None` when it is not an EA.
pub fn ea_name(xattr: &[u8]) -> Option<&[u8]> {
    let name = xattr.strip_prefix(PREFIX)?;
    (valid_name(name) && !reserved(name)).then_some(name)
}

/// The xattr an EA name is kept in.
fn xattr_name(name: &[u8]) -> Result<CString, EaError> {
    let mut x = PREFIX.to_vec();
    x.extend_from_slice(name);
    CString::new(x).map_err(|_| EaError::InvalidName)
}

/// Size of the EAs as FILE_FULL_EA_INFORMATION ([MS-FSCC] 2.4.15): each
/// entry's 8 header bytes, name, NUL and value, padded to 4 bytes except
/// the last. This is the EaSize smbd reports over SMB2 (its
/// `estimate_ea_size`), 0 for none.
pub fn list_size(eas: &[Ea]) -> u32 {
    let mut total = 0usize;
    for (i, ea) in eas.iter().enumerate() {
        let len = 8 + ea.name.len() + 1 + ea.value.len();
        total += if i + 1 == eas.len() { len } else { len.next_multiple_of(4) };
    }
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The EA names among a `listxattr` answer, with the xattr name of each.
fn names(list: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    list.split(|&b| b == 0).filter_map(|x| ea_name(x).map(|n| (x, n)))
}

/// Reads every EA of `target`, in the order the file system lists them.
fn read_all(target: XattrTarget<'_>) -> Result<Vec<Ea>, EaError> {
    let list = sys::list_xattrs(target).map_err(xattr_err)?;
    let mut out = Vec::new();
    for (xattr, name) in names(&list) {
        let Ok(cname) = CString::new(xattr) else { continue };
        if let Some(value) = read_value(target, &cname)? {
            out.push(Ea { name: name.to_vec(), value });
        }
    }
    Ok(out)
}

/// One xattr's value; `None` when it vanished, is empty or is too long to
/// be an EA.
fn read_value(target: XattrTarget<'_>, name: &CStr) -> Result<Option<Vec<u8>>, EaError> {
    let mut buf = vec![0u8; 256];
    let n = match sys::get_xattr(target, name, &mut buf) {
        Err(e) if e.raw_os_error() == Some(libc::ERANGE) => {
            buf = vec![0u8; MAX_VALUE_LEN];
            match sys::get_xattr(target, name, &mut buf) {
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => return Ok(None),
                r => r.map_err(xattr_err)?,
            }
        }
        r => r.map_err(xattr_err)?,
    };
    Ok(n.filter(|&n| n > 0).map(|n| {
        buf.truncate(n);
        buf
    }))
}

fn xattr_err(e: std::io::Error) -> EaError {
    match e.raw_os_error() {
        Some(libc::ENOTSUP) => EaError::NotSupported,
        Some(libc::E2BIG | libc::ENOSPC | libc::ERANGE) => EaError::TooLarge,
        _ => EaError::Fs(io_err(e)),
    }
}

impl Handle {
    /// The file's EAs ([MS-FSA] 2.1.5.12.x FileFullEaInformation), in
    /// the order the file system lists them.
    pub fn eas(&self) -> Result<Vec<Ea>, EaError> {
        if !self.xattrs() {
            return Err(EaError::NotSupported);
        }
        read_all(XattrTarget::Fd(self.as_fd()))
    }

    /// FileEaInformation's EaSize ([MS-FSCC] 2.4.13): [`list_size`] of
    /// the EAs; 0 when there are none or they cannot be read.
    pub fn ea_size(&self) -> u32 {
        self.eas().map_or(0, |eas| list_size(&eas))
    }

    /// [`Handle::ea_size`] of the entry `name` of this directory (one
    /// on-disk component, symlinks not followed), for directory listings.
    pub fn child_ea_size(&self, name: &str) -> u32 {
        if !self.xattrs() || !self.is_dir() {
            return 0;
        }
        let Ok(cname) = CString::new(name) else { return 0 };
        read_all(XattrTarget::At(self.as_fd(), &cname)).map_or(0, |eas| list_size(&eas))
    }

    /// Sets EAs ([MS-FSA] 2.1.5.14.x FileFullEaInformation): each
    /// `(name, value)` in order, an empty value deleting the EA (deleting
    /// one that is not there succeeds). Every name is checked before
    /// anything is written, so a list with one bad name changes nothing.
    pub fn set_eas(&self, eas: &[(&[u8], &[u8])]) -> Result<(), EaError> {
        self.may_change()?;
        if !self.xattrs() {
            return Err(EaError::NotSupported);
        }
        for (name, value) in eas {
            check_name(name)?;
            if value.len() > MAX_VALUE_LEN {
                return Err(EaError::TooLarge);
            }
        }
        let fd = self.as_fd();
        // The xattr names there now, by EA name without case, kept current
        // as the list is applied (a map: a list may hold thousands).
        let list = sys::list_xattrs(XattrTarget::Fd(fd)).map_err(xattr_err)?;
        let mut existing: HashMap<Vec<u8>, Vec<CString>> = HashMap::new();
        for (x, n) in names(&list) {
            if let Ok(c) = CString::new(x) {
                existing.entry(n.to_ascii_lowercase()).or_default().push(c);
            }
        }
        for (name, value) in eas {
            let key = name.to_ascii_lowercase();
            if value.is_empty() {
                for x in existing.remove(&key).unwrap_or_default() {
                    sys::remove_xattr(fd, &x).map_err(xattr_err)?;
                }
                continue;
            }
            let spellings = existing.entry(key).or_default();
            if spellings.is_empty() {
                spellings.push(xattr_name(name)?);
            }
            let cname = &spellings[0];
            sys::set_xattr(fd, cname, value).map_err(xattr_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_onto_user_xattrs() {
        assert_eq!(xattr_name(b"Foo.Bar").unwrap().as_bytes(), b"user.Foo.Bar");
        assert_eq!(ea_name(b"user.Foo.Bar"), Some(&b"Foo.Bar"[..]));
        // Other namespaces are not EAs.
        for x in [&b"security.NTACL"[..], b"trusted.x", b"system.posix_acl_access", b"user.", b"userfoo", b"USER.foo"] {
            assert_eq!(ea_name(x), None, "{}", String::from_utf8_lossy(x));
        }
    }

    #[test]
    fn server_names_are_hidden_and_refused() {
        for n in [
            &b"duet.uid"[..],
            b"duet.btime",
            b"duet.attrib",
            b"DUET.UID",
            b"Duet.anything",
            b"DOSATTRIB",
            b"dosattrib",
            b"SAMBA_PAI",
            b"SAMBA_STREAMS",
            b"SmbReparse",
            b"org.netatalk.Metadata",
            b"DosStream.x",
        ] {
            assert!(reserved(n), "{}", String::from_utf8_lossy(n));
            assert!(matches!(check_name(n), Err(EaError::Reserved)));
            let mut x = b"user.".to_vec();
            x.extend_from_slice(n);
            assert_eq!(ea_name(&x), None);
        }
        // Near misses are the client's.
        for n in [&b"duet"[..], b"duetx.uid", b"myduet.uid", b"DOSATTRIB2", b"DosStream"] {
            assert!(!reserved(n), "{}", String::from_utf8_lossy(n));
            assert!(check_name(n).is_ok());
        }
        assert!(matches!(check_name(b"duet.uid").map_err(|e| e.status()), Err(NtStatus::ACCESS_DENIED)));
    }

    #[test]
    fn invalid_names() {
        for n in [
            &b""[..],
            b"a*",
            b"a:b",
            b"a/b",
            b"a\\b",
            b"a\"",
            b"a+",
            b"a,",
            b"a;",
            b"a<",
            b"a=",
            b"a>",
            b"a?",
            b"a[",
            b"a]",
            b"a|",
            b"a\x01",
            b"\x1f",
            b"caf\xc3\xa9",
        ] {
            assert!(matches!(check_name(n), Err(EaError::InvalidName)), "{n:?}");
            let mut x = b"user.".to_vec();
            x.extend_from_slice(n);
            assert_eq!(ea_name(&x), None);
        }
        assert!(check_name(&[b'a'; 255]).is_ok());
        assert!(matches!(check_name(&[b'a'; 256]), Err(EaError::InvalidName)));
        for n in [&b"a b"[..], b"x.y-z_1", b"A~!@#$%^&()'{}`.", b"\x7f"] {
            assert!(check_name(n).is_ok(), "{n:?}");
        }
        assert_eq!(EaError::InvalidName.status(), NtStatus::INVALID_EA_NAME);
    }

    #[test]
    fn listing_filters_and_keeps_order() {
        let list = b"user.duet.uid\0user.B\0security.selinux\0user.DOSATTRIB\0user.a*b\0user.c\0";
        let got: Vec<&[u8]> = names(list).map(|(_, n)| n).collect();
        assert_eq!(got, vec![&b"B"[..], b"c"]);
    }

    #[test]
    fn size_is_the_chained_list_length() {
        let ea = |n: &[u8], v: &[u8]| Ea { name: n.to_vec(), value: v.to_vec() };
        assert_eq!(list_size(&[]), 0);
        // smbtorture's complex file: EAONE=VALUE1, SECONDEA=ValueTwo.
        // 8+5+1+6 = 20; 8+8+1+8 = 25 (last, unpadded).
        assert_eq!(list_size(&[ea(b"EAONE", b"VALUE1"), ea(b"SECONDEA", b"ValueTwo")]), 45);
        // 8+1+1+1 = 11 -> 12, then 11.
        assert_eq!(list_size(&[ea(b"a", b"1"), ea(b"b", b"2")]), 23);
    }

    /// A file on a share with user xattrs, or `None` where the test file
    /// system has none.
    fn file_handle() -> Option<(tempfile::TempDir, Handle)> {
        let (dir, share) = super::super::tests::share();
        if !share.supports_xattrs() {
            return None;
        }
        let path = crate::fs::SmbPath::parse("f").ok()?;
        let rel = share.resolve(&path).ok()?;
        let h = share.create_file(&rel, 0o644).ok()?;
        Some((dir, h))
    }

    #[test]
    fn set_query_delete_round_trip() {
        let Some((dir, h)) = file_handle() else { return };
        assert_eq!(h.eas().unwrap(), vec![]);
        assert_eq!(h.ea_size(), 0);
        h.set_eas(&[(b"One", b"1"), (b"two", b"22")]).unwrap();
        let names: Vec<Vec<u8>> = h.eas().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec![b"One".to_vec(), b"two".to_vec()]);
        // Duet's own xattrs (the uid, attributes) stay hidden.
        assert!(h.eas().unwrap().iter().all(|e| !e.name.starts_with(b"duet.")));
        // Case-insensitive replace keeps the stored spelling.
        h.set_eas(&[(b"ONE", b"111")]).unwrap();
        assert_eq!(h.eas().unwrap()[0], Ea { name: b"One".to_vec(), value: b"111".to_vec() });
        // An empty value deletes; deleting again succeeds.
        h.set_eas(&[(b"TWO", b"")]).unwrap();
        h.set_eas(&[(b"two", b"")]).unwrap();
        assert_eq!(h.eas().unwrap().len(), 1);
        assert_eq!(h.ea_size(), 8 + 3 + 1 + 3);
        // A bad or reserved name anywhere in the list changes nothing.
        assert!(matches!(h.set_eas(&[(b"new", b"x"), (b"bad?", b"x")]), Err(EaError::InvalidName)));
        assert!(matches!(h.set_eas(&[(b"new", b"x"), (b"duet.uid", b"x")]), Err(EaError::Reserved)));
        assert_eq!(h.eas().unwrap().len(), 1);
        // Stored as user.NAME, where getfattr would see it.
        let mut buf = [0u8; 16];
        let n = sys::get_xattr(XattrTarget::Fd(h.as_fd()), c"user.One", &mut buf).unwrap();
        assert_eq!(n, Some(3));
        drop(dir);
    }

    /// Where the file system has no user xattrs: EAS_NOT_SUPPORTED, sizes 0.
    #[test]
    fn without_user_xattrs_eas_are_not_supported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let fd: std::os::fd::OwnedFd = std::fs::File::open(dir.path().join("f")).unwrap().into();
        let h = Handle::new(fd, false, false);
        assert!(matches!(h.eas(), Err(EaError::NotSupported)));
        assert_eq!(h.set_eas(&[(b"a", b"1")]).map_err(|e| e.status()), Err(NtStatus::EAS_NOT_SUPPORTED));
        assert_eq!(h.ea_size(), 0);
        let d: std::os::fd::OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        assert_eq!(Handle::new(d, true, false).child_ea_size("f"), 0);
    }
}
