//! Alternate data streams ([MS-FSCC] 2.1.5 pathnames with a stream part,
//! 2.4.43 FILE_STREAM_INFORMATION), kept as user xattrs in the layout of
//! Samba's `streams_xattr` (4.17), so a file keeps its streams when the
//! share moves between Duet and smbd, and the streams follow the file
//! through renames, hard links and its deletion with nothing to do:
//!
//! ```text
//! // Format: stream NAME of a file = xattr user.DosStream.NAME:$DATA
//! //         = { the stream's bytes | 0x00 }
//! ```
//!
//! - The value carries one NUL after the data (as `streams_xattr` writes
//!   it): an empty stream is a one-byte xattr, and a stream's size is the
//!   value's length less one.
//! - **Size limit.** Linux keeps one xattr value to 64 KiB, so a stream
//!   holds at most [`MAX_SIZE`] (65535) bytes, as smbd's default `smbd max
//!   xattr size` allows; a write or end-of-file past it is
//!   [`FsError::Limitation`] (STATUS_FILE_SYSTEM_LIMITATION, smbd 4.17's
//!   answer, and ReFS's). The file system may allow less: ext4 without
//!   `ea_inode` keeps all of a file's xattrs (streams, EAs, Duet's own) in
//!   one block, about 4 KiB, and answers `ENOSPC` past that:
//!   [`FsError::NoSpace`], STATUS_DISK_FULL (smbd answers the same).
//! - Names: any characters but NUL, `\`, `/` and `:`, 1 to 255 UTF-16
//!   units and at most [`MAX_NAME_BYTES`] bytes of UTF-8 (an xattr name is
//!   at most 255 bytes with its prefix and suffix). A stream is found
//!   without regard to case; a new one keeps the client's spelling.
//! - The only stream type is `$DATA` (any case); `file::$DATA` is the file
//!   itself. Anything else is [`FsError::NameInvalid`].
//! - EAs never show `user.DosStream.*` (see [`super::ea`]), and a stream
//!   listing shows nothing else.
//! - `AFP_AfpInfo` (macOS's Finder info) keeps the rules of Apple's
//!   servers on reads, writes and end of file ([`super::afpinfo`]).
//!
//! A stream is reached only through an open handle of its file (an fd that
//! was opened confined to the share, see [`super`]): `fgetxattr`,
//! `fsetxattr` and friends on that fd, never a path. The stream part of a
//! name is never a path component.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use super::afpinfo;
use super::error::io_err;
use super::spill;
use super::sys::{self, XattrTarget};
use super::{FileUid, FsError, Handle};

/// The prefix and suffix of a stream's xattr name (`streams_xattr`'s
/// defaults, with the stream type stored).
pub const PREFIX: &str = "user.DosStream.";
pub const SUFFIX: &str = ":$DATA";

/// The most bytes a stream holds: one xattr value (64 KiB) less the NUL.
pub const MAX_SIZE: u64 = 65535;

/// The longest stream name in UTF-8 bytes: 255 (XATTR_NAME_MAX) less the
/// prefix and suffix.
pub const MAX_NAME_BYTES: usize = 255 - PREFIX.len() - SUFFIX.len();

/// Serialises the read-modify-write of stream values (a WRITE into the
/// middle of a stream rewrites the whole xattr).
static STREAM_IO: Mutex<()> = Mutex::new(());

/// Splits a CREATE name into the file's path and the stream it names
/// ([MS-FSCC] 2.1.5: `file:stream[:type]`): `None` for the file itself
/// (no stream part, or `file::$DATA`). The stream part may not hold a
/// separator (the whole name is split at its first `:`), nor a third
/// `:`; its type must be `$DATA`; an empty name with no type (`file:`)
/// or an empty type (`file:s:`) is [`FsError::NameInvalid`].
pub fn split(name: &str) -> Result<(&str, Option<&str>), FsError> {
    let Some(i) = name.find(':') else { return Ok((name, None)) };
    let (base, rest) = (&name[..i], &name[i + 1..]);
    if rest.contains(['\\', '/']) {
        return Err(FsError::NameInvalid);
    }
    let (sname, stype) = match rest.split_once(':') {
        Some((n, t)) => (n, Some(t)),
        None => (rest, None),
    };
    match stype {
        None => {}
        Some(t) if t.eq_ignore_ascii_case("$DATA") => {}
        Some(_) => return Err(FsError::NameInvalid),
    }
    if sname.is_empty() {
        return if stype.is_some() { Ok((base, None)) } else { Err(FsError::NameInvalid) };
    }
    check_name(sname)?;
    Ok((base, Some(sname)))
}

/// Checks a stream name (without `:` or type).
pub fn check_name(name: &str) -> Result<(), FsError> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.encode_utf16().count() > 255
        || name.contains(['\0', '\\', '/', ':'])
    {
        return Err(FsError::NameInvalid);
    }
    Ok(())
}

/// The xattr a stream name is kept in.
pub fn xattr_name(name: &str) -> Result<CString, FsError> {
    CString::new(format!("{PREFIX}{name}{SUFFIX}")).map_err(|_| FsError::NameInvalid)
}

/// The stream name an xattr holds, or `None` when it is no stream.
pub fn stream_name(xattr: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(xattr).ok()?;
    let name = s.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    check_name(name).is_ok().then_some(name)
}

/// The id a named stream is known by in the per-file table and the state
/// model: the file's id mixed with a hash of the name's upper-case form
/// (so every spelling of a name is one stream). A stream open is never
/// durable, so the id is never kept anywhere but in memory and the
/// journal of a run.
pub fn stream_uid(base: crate::model::FileUid, name: &str) -> crate::model::FileUid {
    let fnv = |seed: u64| {
        name.to_uppercase().bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
    };
    let h = (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x6c62_272e_07bb_0142));
    crate::model::FileUid(base.0 ^ h)
}

/// Two stream names are the same stream (case-insensitive).
pub fn same(a: &str, b: &str) -> bool {
    a == b || a.to_uppercase() == b.to_uppercase()
}

fn xattr_err(e: std::io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::E2BIG | libc::ENOSPC | libc::ERANGE | libc::EFBIG) => FsError::NoSpace,
        Some(libc::ENOTSUP) => FsError::NotSupported,
        _ => io_err(e),
    }
}

/// One stream of a file, as FileStreamInformation lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    /// The name as stored (without `:` or type).
    pub name: String,
    pub size: u64,
}

impl Handle {
    /// The named streams of this file or directory, in the order the file
    /// system lists them (none without user xattrs).
    pub fn streams(&self) -> Result<Vec<StreamInfo>, FsError> {
        if !self.xattrs() {
            return Ok(Vec::new());
        }
        let target = XattrTarget::Fd(self.as_fd());
        let list = sys::list_xattrs(target).map_err(xattr_err)?;
        let mut out = Vec::new();
        for x in list.split(|&b| b == 0) {
            let Some(name) = stream_name(x) else { continue };
            let Ok(cname) = CString::new(x) else { continue };
            if let Some(len) = sys::get_xattr(target, &cname, &mut []).map_err(xattr_err)? {
                out.push(StreamInfo { name: name.to_owned(), size: (len as u64).saturating_sub(1) });
            }
        }
        if let Some((area, uid)) = self.spill_key() {
            // A name no client could send is none of its streams.
            for s in area.list(uid)?.into_iter().filter(|s| check_name(&s.name).is_ok()) {
                // The sidecar is the stream (a move cut short by a crash).
                out.retain(|o| o.name != s.name);
                out.push(StreamInfo { name: s.name, size: s.size });
            }
        }
        Ok(out)
    }

    /// The xattr of this file's stream `name`, found without regard to
    /// case; `None` when there is no such stream.
    pub fn find_stream(&self, name: &str) -> Result<Option<CString>, FsError> {
        if !self.xattrs() {
            return Ok(None);
        }
        let exact = xattr_name(name)?;
        if sys::get_xattr(XattrTarget::Fd(self.as_fd()), &exact, &mut []).map_err(xattr_err)?.is_some() {
            return Ok(Some(exact));
        }
        Ok(self.streams()?.into_iter().find(|s| same(&s.name, name)).and_then(|s| xattr_name(&s.name).ok()))
    }

    /// Makes the empty stream `name` (which must not exist yet, in any
    /// case) and returns its xattr. Without user xattrs
    /// [`FsError::NotSupported`].
    pub fn create_stream(&self, name: &str) -> Result<CString, FsError> {
        self.may_change()?;
        if !self.xattrs() {
            return Err(FsError::NotSupported);
        }
        let x = xattr_name(name)?;
        sys::set_xattr_flags(self.as_fd(), &x, &[0], libc::XATTR_CREATE).map_err(|e| match e.raw_os_error() {
            Some(libc::EEXIST) => FsError::Exists,
            _ => xattr_err(e),
        })?;
        Ok(x)
    }

    /// Removes every named stream (a CREATE that overwrites or supersedes
    /// the file, [MS-FSA] 2.1.5.1.2.1).
    pub fn remove_streams(&self) -> Result<(), FsError> {
        self.may_change()?;
        for s in self.streams()? {
            sys::remove_xattr(self.as_fd(), &xattr_name(&s.name)?).map_err(xattr_err)?;
        }
        if let Some((area, uid)) = self.spill_key() {
            area.remove_all(uid)?;
        }
        Ok(())
    }

    /// A handle on the stream kept in `xattr` of this file: the same
    /// file (a `dup` of its fd), whose reads, writes and size are the
    /// stream's.
    pub fn open_stream(&self, xattr: CString) -> Result<Handle, FsError> {
        let mut h = self.try_clone()?;
        h.set_stream(Some(xattr));
        Ok(h)
    }

    /// The stream's bytes, for a stream handle (with the NUL dropped).
    pub(super) fn stream_value(&self, xattr: &CStr) -> Result<Vec<u8>, FsError> {
        let target = XattrTarget::Fd(self.as_fd());
        for _ in 0..4 {
            let Some(len) = sys::get_xattr(target, xattr, &mut []).map_err(xattr_err)? else {
                return Ok(Vec::new());
            };
            let mut buf = vec![0u8; len];
            match sys::get_xattr(target, xattr, &mut buf) {
                Ok(Some(n)) => {
                    buf.truncate(n.saturating_sub(1));
                    return Ok(buf);
                }
                Ok(None) => return Ok(Vec::new()),
                // It grew meanwhile: ask again.
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) => return Err(xattr_err(e)),
            }
        }
        Err(FsError::NoSpace)
    }

    fn store_stream(&self, xattr: &CStr, mut data: Vec<u8>) -> Result<(), FsError> {
        if data.len() as u64 > MAX_SIZE {
            return Err(FsError::Limitation);
        }
        data.push(0);
        sys::set_xattr(self.as_fd(), xattr, &data).map_err(xattr_err)
    }

    /// The sidecar area and the file's stored id that keys its sidecar
    /// streams ([`spill`]); `None` when the file cannot have any.
    fn spill_key(&self) -> Option<(&spill::Area, FileUid)> {
        if !self.xattrs() {
            return None;
        }
        let area = self.spill()?;
        Some((area, super::uid::stored(self)?))
    }

    /// The sidecar file of the stream kept under `xattr`'s name, if it is
    /// in one (looked up each time).
    fn find_sidecar(&self, xattr: &CStr) -> Result<Option<File>, FsError> {
        let Some(name) = stream_name(xattr.to_bytes()) else { return Ok(None) };
        let Some((area, uid)) = self.spill_key() else { return Ok(None) };
        area.open(uid, name)
    }

    /// [`Handle::find_sidecar`] of this handle's own stream, remembered
    /// once found (a stream never moves back into its xattr).
    pub(super) fn stream_sidecar(&self, xattr: &CStr) -> Result<Option<Arc<File>>, FsError> {
        if let Some(f) = self.cached_sidecar() {
            return Ok(Some(f));
        }
        let f = self.find_sidecar(xattr)?.map(Arc::new);
        if f.is_some() {
            self.cache_sidecar(f.clone());
        }
        Ok(f)
    }

    /// Where this handle's stream is now: its sidecar file, or else its
    /// bytes, read from the xattr under [`STREAM_IO`] (so a move to a
    /// sidecar is never seen half done).
    fn stream_place(&self, xattr: &CStr) -> Result<Place, FsError> {
        if let Some(f) = self.cached_sidecar() {
            return Ok(Place::Sidecar(f));
        }
        let _g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = self.stream_sidecar(xattr)? {
            return Ok(Place::Sidecar(f));
        }
        Ok(Place::Xattr(self.stream_value(xattr)?))
    }

    /// Moves the stream kept in `xattr` into a sidecar file (with
    /// [`STREAM_IO`] held): `None` when the file can have none.
    fn spill_stream(&self, xattr: &CStr) -> Result<Option<Arc<File>>, FsError> {
        let Some(name) = stream_name(xattr.to_bytes()) else { return Ok(None) };
        let Some((area, uid)) = self.spill_key() else { return Ok(None) };
        let v = self.stream_value(xattr)?;
        let f = Arc::new(area.spill(uid, name, &v)?);
        sys::remove_xattr(self.as_fd(), xattr).map_err(xattr_err)?;
        self.cache_sidecar(Some(f.clone()));
        Ok(Some(f))
    }

    /// [`Handle::read_append`] of a stream: no more than [`MAX_SIZE`]
    /// from an xattr.
    pub(super) fn stream_read_append(
        &self,
        xattr: &CStr,
        buf: &mut bytes::BytesMut,
        len: usize,
        offset: u64,
    ) -> Result<usize, FsError> {
        if !is_afpinfo(xattr) {
            if let Some(f) = self.stream_sidecar(xattr)? {
                let at = i64::try_from(offset).map_err(|_| FsError::InvalidParameter)?;
                return Ok(sys::pread_append(f.as_fd(), buf, len, at)?);
            }
        }
        let len = len.min(MAX_SIZE as usize);
        let at = buf.len();
        buf.resize(at + len, 0);
        let n = self.stream_read(xattr, &mut buf[at..], offset);
        buf.truncate(at + *n.as_ref().unwrap_or(&0));
        n
    }

    /// `pread` of a stream; `AFP_AfpInfo` by its rules ([`afpinfo`]).
    pub(super) fn stream_read(&self, xattr: &CStr, buf: &mut [u8], offset: u64) -> Result<usize, FsError> {
        if is_afpinfo(xattr) {
            let v = self.stream_value(xattr)?;
            let v = if v.is_empty() { &afpinfo::EMPTY[..] } else { &v[..] };
            let r = afpinfo::read_range(v.len(), offset, buf.len());
            buf[..r.len()].copy_from_slice(&v[r.clone()]);
            return Ok(r.len());
        }
        let v = match self.stream_place(xattr)? {
            Place::Sidecar(f) => return pread_full(&f, buf, offset),
            Place::Xattr(v) => v,
        };
        let Ok(at) = usize::try_from(offset) else { return Ok(0) };
        if at >= v.len() {
            return Ok(0);
        }
        let n = buf.len().min(v.len() - at);
        buf[..n].copy_from_slice(&v[at..at + n]);
        Ok(n)
    }

    /// `pwrite` into a stream: in its xattr the whole value is read,
    /// changed and written back; past what an xattr holds the stream moves
    /// to a sidecar file ([`spill`]), or without one
    /// [`FsError::Limitation`] (past [`MAX_SIZE`]) or [`FsError::NoSpace`].
    pub(super) fn stream_write(&self, xattr: &CStr, data: &[u8], offset: u64) -> Result<usize, FsError> {
        if is_afpinfo(xattr) {
            let _g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
            match afpinfo::write(data, offset)? {
                afpinfo::Write::Nothing => {}
                afpinfo::Write::Store(v) => self.store_stream(xattr, v.to_vec())?,
                afpinfo::Write::Delete => {
                    sys::remove_xattr(self.as_fd(), xattr).map_err(xattr_err)?;
                }
            }
            return Ok(data.len());
        }
        let end = offset.checked_add(data.len() as u64).ok_or(FsError::Limitation)?;
        if let Some(f) = self.cached_sidecar() {
            return pwrite_all(&f, data, offset);
        }
        let g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = self.stream_sidecar(xattr)? {
            drop(g);
            return pwrite_all(&f, data, offset);
        }
        if end <= MAX_SIZE {
            let mut v = self.stream_value(xattr)?;
            let (at, end) = (offset as usize, end as usize);
            if v.len() < end {
                v.resize(end, 0);
            }
            v[at..end].copy_from_slice(data);
            match self.store_stream(xattr, v) {
                Err(FsError::NoSpace) => {}
                r => return r.map(|()| data.len()),
            }
        }
        let Some(f) = self.spill_stream(xattr)? else {
            return Err(if end > MAX_SIZE { FsError::Limitation } else { FsError::NoSpace });
        };
        drop(g);
        pwrite_all(&f, data, offset)
    }

    /// Sets a stream's end of file (moving it to a sidecar file as
    /// [`Handle::stream_write`] does).
    pub(super) fn stream_set_len(&self, xattr: &CStr, len: u64) -> Result<(), FsError> {
        if is_afpinfo(xattr) {
            return afpinfo::set_len(len);
        }
        let g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = self.stream_sidecar(xattr)? {
            drop(g);
            return f.set_len(len).map_err(xattr_err);
        }
        if len <= MAX_SIZE {
            let mut v = self.stream_value(xattr)?;
            v.resize(len as usize, 0);
            match self.store_stream(xattr, v) {
                Err(FsError::NoSpace) => {}
                r => return r,
            }
        }
        let Some(f) = self.spill_stream(xattr)? else {
            return Err(if len > MAX_SIZE { FsError::Limitation } else { FsError::NoSpace });
        };
        drop(g);
        f.set_len(len).map_err(xattr_err)
    }

    /// The stream's size.
    pub(super) fn stream_size(&self, xattr: &CStr) -> Result<u64, FsError> {
        if let Some(f) = self.cached_sidecar() {
            return Ok(f.metadata().map_err(io_err)?.len());
        }
        let _g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
        self.size_of(xattr)
    }

    /// The size of this file's stream kept under `xattr`'s name (which
    /// need not be this handle's), in its sidecar or its xattr.
    fn size_of(&self, xattr: &CStr) -> Result<u64, FsError> {
        if let Some(f) = self.find_sidecar(xattr)? {
            return Ok(f.metadata().map_err(io_err)?.len());
        }
        Ok(sys::get_xattr(XattrTarget::Fd(self.as_fd()), xattr, &mut [])
            .map_err(xattr_err)?
            .map_or(0, |n| (n as u64).saturating_sub(1)))
    }

    /// Removes this file's stream kept under `xattr`'s name: its xattr and
    /// its sidecar file.
    fn drop_stream(&self, xattr: &CStr) -> Result<(), FsError> {
        sys::remove_xattr(self.as_fd(), xattr).map_err(xattr_err)?;
        if let (Some(name), Some((area, uid))) = (stream_name(xattr.to_bytes()), self.spill_key()) {
            area.remove(uid, name)?;
        }
        Ok(())
    }

    /// Deletes this handle's stream (delete-on-close of a stream open):
    /// only the stream goes, the file stays.
    pub fn remove_stream(&self) -> Result<(), FsError> {
        self.may_change()?;
        let Some(x) = self.stream() else { return Err(FsError::InvalidParameter) };
        let _g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
        self.drop_stream(&x)?;
        self.cache_sidecar(None);
        Ok(())
    }

    /// Renames this handle's stream to `new` ([MS-FSA] 2.1.5.15.11.1):
    /// an existing stream of that name (in any case) is
    /// [`FsError::Exists`] without `replace`, and replaced with it only
    /// when it is empty (else [`FsError::InvalidParameter`]). The handle
    /// follows the stream. Renaming to its own name (in any case) changes
    /// nothing. A stream in a sidecar file is renamed there.
    pub fn rename_stream(&self, new: &str, replace: bool) -> Result<(), FsError> {
        self.may_change()?;
        let Some(old) = self.stream() else { return Err(FsError::InvalidParameter) };
        check_name(new)?;
        let _g = STREAM_IO.lock().unwrap_or_else(|e| e.into_inner());
        let existing = self.find_stream(new)?;
        if existing.as_ref() == Some(&old) {
            return Ok(());
        }
        let target = match existing {
            Some(_) if !replace => return Err(FsError::Exists),
            Some(x) if self.size_of(&x)? != 0 => return Err(FsError::InvalidParameter),
            Some(x) => {
                self.drop_stream(&x)?;
                x
            }
            None => xattr_name(new)?,
        };
        if self.stream_sidecar(&old)?.is_some() {
            let (Some(from), Some(to), Some((area, uid))) =
                (stream_name(old.to_bytes()), stream_name(target.to_bytes()), self.spill_key())
            else {
                return Err(FsError::InvalidParameter);
            };
            area.rename(uid, from, to)?;
        } else {
            let v = self.stream_value(&old)?;
            self.store_stream(&target, v)?;
            sys::remove_xattr(self.as_fd(), &old).map_err(xattr_err)?;
        }
        self.restream(target);
        Ok(())
    }
}

/// Where a stream's bytes are ([`Handle::stream_place`]).
enum Place {
    Sidecar(Arc<File>),
    Xattr(Vec<u8>),
}

/// `pread` of a sidecar file until `buf` is full or the end of file.
fn pread_full(f: &File, buf: &mut [u8], offset: u64) -> Result<usize, FsError> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], offset.saturating_add(n as u64)) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(xattr_err(e)),
        }
    }
    Ok(n)
}

/// `pwrite` of all of `data` into a sidecar file.
fn pwrite_all(f: &File, data: &[u8], offset: u64) -> Result<usize, FsError> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(data, offset).map_err(xattr_err)?;
    Ok(data.len())
}

/// Is `xattr` the one of the `AFP_AfpInfo` stream?
fn is_afpinfo(xattr: &CStr) -> bool {
    stream_name(xattr.to_bytes()).is_some_and(afpinfo::is)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split() {
        assert_eq!(split("a\\b.txt").unwrap(), ("a\\b.txt", None));
        assert_eq!(split("f:s").unwrap(), ("f", Some("s")));
        assert_eq!(split("d\\f:Zone.Identifier:$DATA").unwrap(), ("d\\f", Some("Zone.Identifier")));
        assert_eq!(split("f:s:$dAtA").unwrap(), ("f", Some("s")));
        assert_eq!(split("f::$DATA").unwrap(), ("f", None));
        assert_eq!(split("f:\u{5}Stream\n One").unwrap(), ("f", Some("\u{5}Stream\n One")));
        assert_eq!(split("f:?Stream*:$DATA").unwrap(), ("f", Some("?Stream*")));
        for bad in ["f:", "f::", "f:s:", "f:s:$FOO", "f:s:?D*a", "f:a\\b", "f:a/b", "f:a:b:c", "f:..\\..\\x", "f::x"] {
            assert!(matches!(split(bad), Err(FsError::NameInvalid)), "{bad:?}");
        }
        // A colon in a directory part puts separators in the stream part.
        assert!(matches!(split("d:x\\f"), Err(FsError::NameInvalid)));
        let long = "s".repeat(MAX_NAME_BYTES);
        assert!(split(&format!("f:{long}")).is_ok());
        assert!(matches!(split(&format!("f:{long}s")), Err(FsError::NameInvalid)));
        assert_eq!(xattr_name("Zone.Identifier").unwrap().as_bytes(), b"user.DosStream.Zone.Identifier:$DATA");
        assert_eq!(stream_name(b"user.DosStream.x:$DATA"), Some("x"));
        assert_eq!(stream_name(b"user.DosStream.x"), None);
        assert_eq!(stream_name(b"user.x:$DATA"), None);
        assert!(same("StreamName", "STREAMNAME") && !same("a", "b"));
    }

    fn file_handle() -> Option<(tempfile::TempDir, Handle)> {
        let (dir, share) = super::super::tests::share();
        if !share.supports_xattrs() {
            return None;
        }
        let rel = share.resolve(&crate::fs::SmbPath::parse("f").ok()?).ok()?;
        let h = share.create_file(&rel, 0o644).ok()?;
        Some((dir, h))
    }

    /// A stream's data is an xattr, metadata: its FLUSH must be an `fsync`,
    /// which `fdatasync` (enough for a file's data) is not.
    #[test]
    fn stream_sync_is_a_full_fsync() {
        let Some((_dir, h)) = file_handle() else { return };
        assert!(!h.full_sync(false) && h.full_sync(true));
        let s = h.open_stream(h.create_stream("Zone.Identifier").unwrap()).unwrap();
        assert!(s.full_sync(false));
        s.write_at(b"x", 0).unwrap();
        s.sync().unwrap();
        s.sync_full().unwrap();
        h.sync_full().unwrap();
    }

    #[test]
    fn stream_io_round_trip() {
        let Some((_dir, h)) = file_handle() else { return };
        h.write_at(b"base data", 0).unwrap();
        assert!(h.streams().unwrap().is_empty());
        let x = h.create_stream("Zone.Identifier").unwrap();
        assert!(matches!(h.create_stream("Zone.Identifier"), Err(FsError::Exists)));
        assert_eq!(h.find_stream("ZONE.IDENTIFIER").unwrap(), Some(x.clone()));
        assert_eq!(h.find_stream("other").unwrap(), None);
        let s = h.open_stream(x).unwrap();
        assert!(s.is_stream());
        assert_eq!(s.size().unwrap(), 0);
        assert_eq!(s.write_at(b"hello", 3).unwrap(), 5);
        let mut buf = [0xffu8; 16];
        assert_eq!(s.read_at(&mut buf, 0).unwrap(), 8);
        assert_eq!(&buf[..8], b"\0\0\0hello");
        assert_eq!(s.read_at(&mut buf, 100).unwrap(), 0);
        assert_eq!(s.stat().unwrap().size, 8);
        s.set_len(4).unwrap();
        assert_eq!(s.size().unwrap(), 4);
        // The base file is untouched.
        assert_eq!(h.size().unwrap(), 9);
        assert_eq!(h.streams().unwrap(), vec![StreamInfo { name: "Zone.Identifier".into(), size: 4 }]);
        // Samba's layout: the bytes and a NUL.
        let mut raw = [0u8; 8];
        let n = sys::get_xattr(XattrTarget::Fd(h.as_fd()), c"user.DosStream.Zone.Identifier:$DATA", &mut raw);
        assert_eq!(n.unwrap(), Some(5));
        assert_eq!(&raw[..5], b"\0\0\0h\0");
        // Streams are no EAs.
        assert!(h.eas().unwrap().is_empty());
        // Too large for one xattr: FILE_SYSTEM_LIMITATION, and nothing
        // changes; too large for this file system (ext4: one block):
        // DISK_FULL.
        assert!(matches!(s.write_at(b"x", MAX_SIZE), Err(FsError::Limitation)));
        assert_eq!(FsError::Limitation.status(), protocol::NtStatus::FILE_SYSTEM_LIMITATION);
        assert!(matches!(s.set_len(MAX_SIZE + 1), Err(FsError::Limitation)));
        assert_eq!(s.size().unwrap(), 4);
        match s.write_at(&[1u8; 60_000], 0) {
            Ok(n) => {
                assert_eq!(n, 60_000);
                s.set_len(4).unwrap();
            }
            Err(e) => assert!(matches!(e, FsError::NoSpace), "{e}"),
        }
        assert_eq!(FsError::NoSpace.status(), protocol::NtStatus::DISK_FULL);
        // Rename: the handle follows; onto an empty stream only with
        // replace, never onto one with data.
        s.rename_stream("Renamed", false).unwrap();
        assert_eq!(h.streams().unwrap(), vec![StreamInfo { name: "Renamed".into(), size: 4 }]);
        assert_eq!(s.size().unwrap(), 4);
        h.create_stream("Other").unwrap();
        assert!(matches!(s.rename_stream("OTHER", false), Err(FsError::Exists)));
        s.rename_stream("other", true).unwrap();
        assert_eq!(h.streams().unwrap(), vec![StreamInfo { name: "Other".into(), size: 4 }]);
        let full = h.open_stream(h.create_stream("Full").unwrap()).unwrap();
        full.write_at(b"x", 0).unwrap();
        assert!(matches!(s.rename_stream("full", true), Err(FsError::InvalidParameter)));
        s.rename_stream("OTHER", false).unwrap();
        assert_eq!(s.read_at(&mut buf, 0).unwrap(), 4);
        full.remove_stream().unwrap();
        h.remove_streams().unwrap();
        assert!(h.streams().unwrap().is_empty());
        assert_eq!(h.size().unwrap(), 9);
    }
}
