//! The srvsvc interface ([MS-SRVS] 3.1.4): NetrShareEnum (opnum 15),
//! NetrShareGetInfo (opnum 16), NetrServerGetInfo (opnum 21) and
//! NetrShareEnumSticky (opnum 36).
//!
//! Each call parses its `[in]` parameters from the request stub and encodes
//! its `[out]` parameters, in NDR 2.0, for the response stub. Errors the
//! interface defines (unknown share, unknown level) are WERROR return
//! values inside a normal response; only stub data that cannot be
//! unmarshalled becomes a fault. The resume handle and preferred maximum
//! length are honoured simply: every share is returned at once.

use super::ndr::{NdrReader, NdrWriter};
use super::pdu::{fault, FaultStatus};
use super::{Caller, PipeBackend, ServerInfo, ShareInfo, STYPE_IPC, STYPE_SPECIAL};
use crate::error::{ParseError, ParseResult};

/// NetrShareEnum ([MS-SRVS] 3.1.4.8).
pub const OP_NETR_SHARE_ENUM: u16 = 15;
/// NetrShareGetInfo ([MS-SRVS] 3.1.4.10).
pub const OP_NETR_SHARE_GET_INFO: u16 = 16;
/// NetrServerGetInfo ([MS-SRVS] 3.1.4.17).
pub const OP_NETR_SERVER_GET_INFO: u16 = 21;
/// NetrShareEnumSticky ([MS-SRVS] 3.1.4.9).
pub const OP_NETR_SHARE_ENUM_STICKY: u16 = 36;
/// NetrShareCheck ([MS-SRVS] 3.1.4, opnum 20).
pub const OP_NETR_SHARE_CHECK: u16 = 20;
/// NetrServerDiskEnum ([MS-SRVS] 3.1.4, opnum 23).
pub const OP_NETR_SERVER_DISK_ENUM: u16 = 23;
/// NetrRemoteTOD ([MS-SRVS] 3.1.4, opnum 28).
pub const OP_NETR_REMOTE_TOD: u16 = 28;

/// Win32 error codes used as NET_API_STATUS ([MS-ERREF] 2.2).
pub const WERR_OK: u32 = 0x0000_0000;
/// ERROR_ACCESS_DENIED.
pub const WERR_ACCESS_DENIED: u32 = 0x0000_0005;
/// ERROR_INVALID_LEVEL.
pub const WERR_INVALID_LEVEL: u32 = 0x0000_007C;
/// ERROR_NOT_SUPPORTED.
pub const WERR_NOT_SUPPORTED: u32 = 0x0000_0032;
/// NERR_DeviceNotShared.
pub const WERR_DEVICE_NOT_SHARED: u32 = 0x0000_0907;
/// NERR_NetNameNotFound.
pub const WERR_NET_NAME_NOT_FOUND: u32 = 0x0000_0906;

/// PLATFORM_ID_NT ([MS-SRVS] 2.2.2, Platform IDs).
pub const PLATFORM_ID_NT: u32 = 500;

/// Runs one srvsvc call for an authenticated caller: the response stub, or the fault to send.
pub fn call(opnum: u16, stub: &[u8], backend: &dyn PipeBackend) -> Result<Vec<u8>, FaultStatus> {
    call_as(opnum, stub, backend, Caller::Authenticated)
}

/// NetrShareEnum levels an anonymous caller may not see (as Samba, and smbtorture's rpc.srvsvc, expect).
const PRIVILEGED_ENUM_LEVELS: [u32; 3] = [2, 501, 502];

/// Share-info levels that disclose local paths: an anonymous caller gets
/// ERROR_ACCESS_DENIED for them. Windows opens NetShareEnum levels 2 and 502
/// to authenticated users only ("Requirements for Network Management
/// Functions on Servers and Workstations"); Samba does the same, and
/// smbtorture's rpc.srvsvc checks it.
const PRIVILEGED_LEVELS: [u32; 2] = [2, 502];

/// Runs one srvsvc call on behalf of `caller`.
pub fn call_as(opnum: u16, stub: &[u8], backend: &dyn PipeBackend, caller: Caller) -> Result<Vec<u8>, FaultStatus> {
    let bad_stub = |_: ParseError| FaultStatus(fault::NDR);
    let denied = |level: u32| caller == Caller::Anonymous && PRIVILEGED_LEVELS.contains(&level);
    match opnum {
        OP_NETR_SHARE_ENUM | OP_NETR_SHARE_ENUM_STICKY => {
            let req = ShareEnumRequest::parse(stub).map_err(bad_stub)?;
            let enum_all_denied =
                opnum == OP_NETR_SHARE_ENUM && caller == Caller::Anonymous && PRIVILEGED_ENUM_LEVELS.contains(&req.level);
            if denied(req.level) || enum_all_denied {
                return Ok(req.fail(WERR_ACCESS_DENIED));
            }
            if opnum == OP_NETR_SHARE_ENUM {
                return Ok(req.respond(&backend.shares()));
            }
            // Sticky shares are the persistent ones: not IPC$ or the
            // administrative shares. Level 501 is not allowed here.
            let shares: Vec<ShareInfo> = backend
                .shares()
                .into_iter()
                .filter(|s| s.share_type & STYPE_SPECIAL == 0 && s.share_type & 0xFF != STYPE_IPC)
                .collect();
            Ok(req.respond_levels(&shares, &STICKY_LEVELS))
        }
        OP_NETR_SHARE_GET_INFO => {
            let req = ShareGetInfoRequest::parse(stub).map_err(bad_stub)?;
            if denied(req.level) {
                return Ok(req.fail(WERR_ACCESS_DENIED));
            }
            Ok(req.respond(&backend.shares()))
        }
        OP_NETR_SERVER_GET_INFO => {
            let req = ServerGetInfoRequest::parse(stub).map_err(bad_stub)?;
            Ok(req.respond(&backend.server_info()))
        }
        OP_NETR_SHARE_CHECK => {
            let req = ShareCheckRequest::parse(stub).map_err(bad_stub)?;
            Ok(req.respond(&backend.shares()))
        }
        OP_NETR_REMOTE_TOD => {
            let mut r = NdrReader::new(stub);
            r.unique_string("ServerName").map_err(bad_stub)?;
            Ok(remote_tod(backend.now()))
        }
        OP_NETR_SERVER_DISK_ENUM => disk_enum(stub).map_err(bad_stub),
        _ => match EMPTY_ENUMS.iter().find(|e| e.opnum == opnum) {
            Some(e) => e.call(stub).map_err(bad_stub),
            None => Err(FaultStatus(fault::OP_RNG_ERROR)),
        },
    }
}

/// The share-info levels NetrShareEnum and NetrShareGetInfo return
/// (SHARE_INFO_0, _1, _2, _501, _502_I: [MS-SRVS] 2.2.4).
const ENUM_LEVELS: [u32; 5] = [0, 1, 2, 501, 502];
/// The levels NetrShareEnumSticky returns ([MS-SRVS] 3.1.4.9: all but 501).
const STICKY_LEVELS: [u32; 4] = [0, 1, 2, 502];

/// Every arm of SHARE_ENUM_UNION and SHARE_INFO, in [MS-SRVS] 2.2.3.5 and
/// 2.2.3.6 or in Samba's IDL (which adds 1007 and, for the container,
/// 1004-1501). Each arm is a unique pointer, so a level we do not serve but
/// the client's stubs know gets a NULL pointer on the wire; a level outside
/// the union gets the empty `[default]` arm.
const SHARE_ARMS: [u32; 11] = [0, 1, 2, 501, 502, 503, 1004, 1005, 1006, 1007, 1501];

/// Every arm of SERVER_INFO ([MS-SRVS] 2.2.3.7) or of Samba's srvsvc_NetSrvInfo.
pub(crate) const SERVER_INFO_ARMS: [u32; 60] = [
    100, 101, 102, 103, 402, 403, 502, 503, 599, 1005, 1010, 1016, 1017, 1018, 1107, 1501, 1502, 1503, 1506, 1509,
    1510, 1511, 1512, 1513, 1514, 1515, 1516, 1518, 1520, 1521, 1522, 1523, 1524, 1525, 1528, 1529, 1530, 1533, 1534,
    1535, 1536, 1537, 1538, 1539, 1540, 1541, 1542, 1543, 1544, 1545, 1546, 1547, 1548, 1549, 1550, 1552, 1553, 1554,
    1555, 1556,
];

/// `[in]` parameters of NetrShareEnum ([MS-SRVS] 3.1.4.8).
///
/// ```text
/// [in, string, unique] SRVSVC_HANDLE ServerName,
/// [in, out] LPSHARE_ENUM_STRUCT InfoStruct,     // Level, union switch, unique pointer to container (2.2.4.38)
/// [in] DWORD PreferedMaximumLength,
/// [in, out, unique] DWORD* ResumeHandle
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareEnumRequest {
    pub server_name: Option<String>,
    pub level: u32,
    pub prefered_maximum_length: u32,
    /// `None` when the client passed a NULL pointer (then the reply's is NULL too).
    pub resume_handle: Option<u32>,
}

impl ShareEnumRequest {
    /// Parses the stub. The container the client sends ([MS-SRVS] 2.2.4.38,
    /// SHARE_ENUM_STRUCT) is normally empty; a non-empty one is refused.
    pub fn parse(stub: &[u8]) -> ParseResult<ShareEnumRequest> {
        let mut r = NdrReader::new(stub);
        let server_name = r.unique_string("ServerName")?;
        let level = r.u32("Level")?;
        let switch = r.u32("ShareInfo switch")?;
        if switch != level {
            return Err(ParseError::Invalid("ShareInfo switch"));
        }
        if SHARE_ARMS.contains(&level) && r.pointer("ShareInfo container")? {
            let _entries_read = r.u32("EntriesRead")?;
            if r.pointer("Buffer")? && r.u32("Buffer max_count")? != 0 {
                return Err(ParseError::Invalid("non-empty input Buffer"));
            }
        }
        let prefered_maximum_length = r.u32("PreferedMaximumLength")?;
        let resume_handle = if r.pointer("ResumeHandle")? { Some(r.u32("ResumeHandle")?) } else { None };
        Ok(ShareEnumRequest { server_name, level, prefered_maximum_length, resume_handle })
    }

    /// Encodes the `[out]` parameters: InfoStruct, TotalEntries, ResumeHandle, return value.
    pub fn respond(&self, shares: &[ShareInfo]) -> Vec<u8> {
        self.respond_levels(shares, &ENUM_LEVELS)
    }

    /// The `[out]` parameters of a failed call: no entries and `werr`. A
    /// level of the union gets a NULL container; any other level the empty
    /// `[default]` arm.
    pub fn fail(&self, werr: u32) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.u32(self.level);
        w.u32(self.level);
        if SHARE_ARMS.contains(&self.level) {
            w.null();
        }
        w.u32(0); // TotalEntries
        self.resume_handle_out(&mut w);
        w.u32(werr);
        w.into_bytes()
    }

    /// `[in, out, unique] DWORD* ResumeHandle`: NULL if the client sent NULL, else 0 (all returned).
    fn resume_handle_out(&self, w: &mut NdrWriter) {
        match self.resume_handle {
            Some(_) => {
                w.pointer();
                w.u32(0);
            }
            None => w.null(),
        }
    }

    /// As [`ShareEnumRequest::respond`], answering WERR_INVALID_LEVEL for levels not in `levels`.
    pub fn respond_levels(&self, shares: &[ShareInfo], levels: &[u32]) -> Vec<u8> {
        if !levels.contains(&self.level) {
            return self.fail(WERR_INVALID_LEVEL);
        }
        let mut w = NdrWriter::new();
        w.u32(self.level);
        w.u32(self.level);
        let total = {
            w.pointer(); // SHARE_INFO_n_CONTAINER*
            let count = u32::try_from(shares.len()).unwrap_or(u32::MAX);
            w.u32(count); // EntriesRead
            w.pointer(); // Buffer
            w.u32(count); // conformance
            for s in shares {
                share_fixed(&mut w, self.level, s);
            }
            for s in shares {
                share_deferred(&mut w, self.level, s);
            }
            count
        };
        w.u32(total);
        self.resume_handle_out(&mut w);
        w.u32(WERR_OK);
        w.into_bytes()
    }
}

/// `[in]` parameters of NetrShareGetInfo ([MS-SRVS] 3.1.4.10).
///
/// ```text
/// [in, string, unique] SRVSVC_HANDLE ServerName,
/// [in, string] WCHAR* NetName,                  // top-level ref pointer: no referent id
/// [in] DWORD Level
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareGetInfoRequest {
    pub server_name: Option<String>,
    pub net_name: String,
    pub level: u32,
}

impl ShareGetInfoRequest {
    pub fn parse(stub: &[u8]) -> ParseResult<ShareGetInfoRequest> {
        let mut r = NdrReader::new(stub);
        let server_name = r.unique_string("ServerName")?;
        let net_name = r.string("NetName")?;
        let level = r.u32("Level")?;
        Ok(ShareGetInfoRequest { server_name, net_name, level })
    }

    /// The `[out]` parameters of a failed call: a NULL arm (for a level of
    /// the union) and `werr`.
    pub fn fail(&self, werr: u32) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.u32(self.level);
        if SHARE_ARMS.contains(&self.level) {
            w.null();
        }
        w.u32(werr);
        w.into_bytes()
    }

    /// Encodes `[out, switch_is(Level)] LPSHARE_INFO InfoStruct` ([MS-SRVS] 2.2.3.6) and the return value.
    /// Share names compare case-insensitively.
    pub fn respond(&self, shares: &[ShareInfo]) -> Vec<u8> {
        if !ENUM_LEVELS.contains(&self.level) && self.level != 1005 {
            return self.fail(WERR_INVALID_LEVEL);
        }
        let mut w = NdrWriter::new();
        w.u32(self.level);
        let lower = self.net_name.to_lowercase();
        match shares.iter().find(|s| s.name.to_lowercase() == lower) {
            None => {
                w.null();
                w.u32(WERR_NET_NAME_NOT_FOUND);
            }
            Some(s) => {
                w.pointer();
                if self.level == 1005 {
                    w.u32(0); // SHARE_INFO_1005 shi1005_flags: manual caching, no flags
                } else {
                    share_fixed(&mut w, self.level, s);
                    share_deferred(&mut w, self.level, s);
                }
                w.u32(WERR_OK);
            }
        }
        w.into_bytes()
    }
}

/// The fixed part of SHARE_INFO_0/1/2/501/502_I ([MS-SRVS] 2.2.4), pointers as referent ids.
fn share_fixed(w: &mut NdrWriter, level: u32, s: &ShareInfo) {
    w.pointer(); // netname
    if level == 0 {
        return;
    }
    w.u32(s.share_type);
    w.pointer(); // remark
    match level {
        501 => w.u32(0), // shi501_flags
        2 | 502 => {
            w.u32(0); // permissions (ignored on user-level servers)
            w.u32(s.max_uses);
            w.u32(s.current_uses);
            w.pointer(); // path
            w.pointer(); // passwd: an empty string, as Samba sends it
            if level == 502 {
                w.u32(0); // shi502_reserved: security descriptor length
                w.null(); // shi502_security_descriptor
            }
        }
        _ => {}
    }
}

/// The strings SHARE_INFO_n points to, in field order (deferred, [C706 14.3.12.3]).
fn share_deferred(w: &mut NdrWriter, level: u32, s: &ShareInfo) {
    w.string(&s.name);
    if level == 0 {
        return;
    }
    w.string(&s.comment);
    if level == 2 || level == 502 {
        w.string(&s.path);
        w.string("");
    }
}

/// `[in]` parameters of NetrServerGetInfo ([MS-SRVS] 3.1.4.17).
///
/// ```text
/// [in, string, unique] SRVSVC_HANDLE ServerName,
/// [in] DWORD Level
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerGetInfoRequest {
    pub server_name: Option<String>,
    pub level: u32,
}

impl ServerGetInfoRequest {
    pub fn parse(stub: &[u8]) -> ParseResult<ServerGetInfoRequest> {
        let mut r = NdrReader::new(stub);
        let server_name = r.unique_string("ServerName")?;
        let level = r.u32("Level")?;
        Ok(ServerGetInfoRequest { server_name, level })
    }

    /// Encodes `[out, switch_is(Level)] LPSERVER_INFO InfoStruct` ([MS-SRVS] 2.2.3.7)
    /// and the return value: SERVER_INFO_100, _101 or _102 ([MS-SRVS] 2.2.4).
    pub fn respond(&self, info: &ServerInfo) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.u32(self.level);
        if !(100..=102).contains(&self.level) {
            if SERVER_INFO_ARMS.contains(&self.level) {
                w.null();
            }
            w.u32(WERR_INVALID_LEVEL);
            return w.into_bytes();
        }
        w.pointer();
        w.u32(PLATFORM_ID_NT);
        w.pointer(); // name
        if self.level >= 101 {
            w.u32(info.version_major);
            w.u32(info.version_minor);
            w.u32(info.server_type);
            w.pointer(); // comment
        }
        if self.level == 102 {
            w.u32(0xFFFF_FFFF); // sv102_users: no limit
            w.u32(15); // sv102_disc: auto-disconnect minutes
            w.u32(0); // sv102_hidden
            w.u32(240); // sv102_announce: seconds
            w.u32(3000); // sv102_anndelta: milliseconds
            w.u32(0); // sv102_licenses
            w.pointer(); // userpath
        }
        w.string(&info.name);
        if self.level >= 101 {
            w.string(&info.comment);
        }
        if self.level == 102 {
            w.string("C:\\");
        }
        w.u32(WERR_OK);
        w.into_bytes()
    }
}

/// An enumeration Duet answers with no entries: the server keeps no
/// character devices, and sessions, open files, connections and transports
/// are not exposed over RPC. Each has the same shape ([MS-SRVS] 3.1.4; Samba's srvsvc.idl):
/// some `[in, string, unique]` strings, then `[in, out]` Level, union switch
/// and container pointer, PreferedMaximumLength, `[out]` TotalEntries and
/// `[in, out, unique]` ResumeHandle. Every container is { EntriesRead, Buffer* }.
struct EmptyEnum {
    opnum: u16,
    /// `[in, string, unique]` parameters before the InfoStruct (ServerName included).
    strings: usize,
    /// The levels of the container union (MS IDL and Samba's agree here).
    arms: &'static [u32],
    /// Answer with an empty container and WERR_OK, or a NULL one and ERROR_NOT_SUPPORTED.
    supported: bool,
}

const EMPTY_ENUMS: [EmptyEnum; 6] = [
    // NetrCharDevEnum: ServerName. [MS-SRVS] now lists opnums 0-7 as
    // "not used on wire, returns ERROR_NOT_SUPPORTED"; Samba's IDL still
    // describes them, so the answer keeps that layout.
    EmptyEnum { opnum: 0, strings: 1, arms: &[0, 1], supported: false },
    // NetrCharDevQEnum: ServerName, UserName.
    EmptyEnum { opnum: 3, strings: 2, arms: &[0, 1], supported: false },
    // NetrConnectionEnum: ServerName, Qualifier.
    EmptyEnum { opnum: 8, strings: 2, arms: &[0, 1], supported: true },
    // NetrFileEnum: ServerName, BasePath, UserName.
    EmptyEnum { opnum: 9, strings: 3, arms: &[2, 3], supported: true },
    // NetrSessionEnum: ServerName, ClientName, UserName.
    EmptyEnum { opnum: 12, strings: 3, arms: &[0, 1, 2, 10, 502], supported: true },
    // NetrServerTransportEnum: ServerName.
    EmptyEnum { opnum: 26, strings: 1, arms: &[0, 1, 2, 3], supported: true },
];

impl EmptyEnum {
    fn call(&self, stub: &[u8]) -> ParseResult<Vec<u8>> {
        let mut r = NdrReader::new(stub);
        for _ in 0..self.strings {
            r.unique_string("string parameter")?;
        }
        let level = r.u32("Level")?;
        if r.u32("switch")? != level {
            return Err(ParseError::Invalid("InfoStruct switch"));
        }
        let known = self.arms.contains(&level);
        if known && r.pointer("container")? {
            let _entries_read = r.u32("EntriesRead")?;
            if r.pointer("Buffer")? && r.u32("Buffer max_count")? != 0 {
                return Err(ParseError::Invalid("non-empty input Buffer"));
            }
        }
        let _prefered_maximum_length = r.u32("PreferedMaximumLength")?;
        let resume = r.pointer("ResumeHandle")?;
        if resume {
            r.u32("ResumeHandle")?;
        }
        let mut w = NdrWriter::new();
        w.u32(level);
        w.u32(level);
        if known && self.supported {
            w.pointer();
            w.u32(0); // EntriesRead
            w.null(); // Buffer
        } else if known {
            w.null();
        }
        w.u32(0); // TotalEntries
        if resume {
            w.pointer();
            w.u32(0);
        } else {
            w.null();
        }
        w.u32(match (known, self.supported) {
            (false, _) => WERR_INVALID_LEVEL,
            (true, false) => WERR_NOT_SUPPORTED,
            (true, true) => WERR_OK,
        });
        Ok(w.into_bytes())
    }
}

/// NetrServerDiskEnum ([MS-SRVS] 3.1.4, opnum 23): an empty disk list.
///
/// ```text
/// [in, string, unique] SRVSVC_HANDLE ServerName, [in] DWORD Level,
/// [in, out] DISK_ENUM_CONTAINER* DiskInfoStruct,   // { EntriesRead; [size_is, length_is] DISK_INFO* Buffer }
/// [in] DWORD PreferedMaximumLength, [out] DWORD* TotalEntries, [in, out, unique] DWORD* ResumeHandle
/// ```
fn disk_enum(stub: &[u8]) -> ParseResult<Vec<u8>> {
    let mut r = NdrReader::new(stub);
    r.unique_string("ServerName")?;
    let level = r.u32("Level")?;
    let _entries_read = r.u32("EntriesRead")?;
    if r.pointer("Buffer")? {
        let _max = r.u32("Buffer max_count")?;
        let _offset = r.u32("Buffer offset")?;
        if r.u32("Buffer actual_count")? != 0 {
            return Err(ParseError::Invalid("non-empty input Buffer"));
        }
    }
    let _prefered_maximum_length = r.u32("PreferedMaximumLength")?;
    let resume = r.pointer("ResumeHandle")?;
    if resume {
        r.u32("ResumeHandle")?;
    }
    let mut w = NdrWriter::new();
    w.u32(0); // EntriesRead
    w.null(); // Buffer
    w.u32(0); // TotalEntries
    if resume {
        w.pointer();
        w.u32(0);
    } else {
        w.null();
    }
    w.u32(if level == 0 { WERR_OK } else { WERR_INVALID_LEVEL });
    Ok(w.into_bytes())
}

/// `[in]` parameters of NetrShareCheck ([MS-SRVS] 3.1.4, opnum 20).
///
/// ```text
/// [in, string, unique] SRVSVC_HANDLE ServerName, [in, string] WCHAR* Device, [out] DWORD* Type
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareCheckRequest {
    pub server_name: Option<String>,
    pub device: String,
}

impl ShareCheckRequest {
    pub fn parse(stub: &[u8]) -> ParseResult<ShareCheckRequest> {
        let mut r = NdrReader::new(stub);
        let server_name = r.unique_string("ServerName")?;
        let device = r.string("Device")?;
        Ok(ShareCheckRequest { server_name, device })
    }

    /// The type of the first share whose path is `device` (case-insensitive),
    /// or NERR_DeviceNotShared.
    pub fn respond(&self, shares: &[ShareInfo]) -> Vec<u8> {
        let device = self.device.to_lowercase();
        let mut w = NdrWriter::new();
        match shares.iter().find(|s| s.path.to_lowercase() == device) {
            Some(s) => {
                w.u32(s.share_type);
                w.u32(WERR_OK);
            }
            None => {
                w.u32(0);
                w.u32(WERR_DEVICE_NOT_SHARED);
            }
        }
        w.into_bytes()
    }
}

/// The `[out]` parameters of NetrRemoteTOD ([MS-SRVS] 3.1.4, opnum 28): a
/// unique pointer to TIME_OF_DAY_INFO ([MS-SRVS] 2.2.4), in UTC, and the status.
fn remote_tod(now: Option<std::time::SystemTime>) -> Vec<u8> {
    let mut w = NdrWriter::new();
    let Some(now) = now else {
        w.null();
        w.u32(WERR_NOT_SUPPORTED);
        return w.into_bytes();
    };
    let since = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let of_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // Both fit in u32: hours < 24, 1970 <= year < 2^32 for any SystemTime we meet.
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    w.pointer();
    w.u32(small(secs)); // tod_elapsedt: seconds since 1970
    w.u32(small(since.as_millis() as u64 % (1 << 32))); // tod_msecs: a millisecond counter
    w.u32(small(of_day / 3600)); // tod_hours
    w.u32(small(of_day % 3600 / 60)); // tod_mins
    w.u32(small(of_day % 60)); // tod_secs
    w.u32(since.subsec_millis() / 10); // tod_hunds
    w.u32(0); // tod_timezone: minutes from UTC
    w.u32(310); // tod_tinterval: clock tick in 0.0001 s, as Windows reports
    w.u32(day);
    w.u32(month);
    w.u32(u32::try_from(year).unwrap_or(0));
    w.u32(small((days.rem_euclid(7) as u64 + 4) % 7)); // tod_weekday: 1970-01-01 was a Thursday (4)
    w.u32(WERR_OK);
    w.into_bytes()
}

/// Proleptic Gregorian (year, month 1-12, day 1-31) of a day count from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A decoder written apart from [`NdrWriter`]: plain offsets, its own
    /// alignment, its own string rules. It checks what smbclient checks.
    pub(crate) struct Dec<'a> {
        pub b: &'a [u8],
        pub pos: usize,
    }

    impl<'a> Dec<'a> {
        pub fn new(b: &'a [u8]) -> Self {
            Dec { b, pos: 0 }
        }
        pub fn u32(&mut self) -> u32 {
            self.pos = (self.pos + 3) & !3;
            let v = u32::from_le_bytes(self.b[self.pos..self.pos + 4].try_into().unwrap());
            self.pos += 4;
            v
        }
        pub fn ptr(&mut self) -> bool {
            self.u32() != 0
        }
        pub fn string(&mut self) -> String {
            let max = self.u32() as usize;
            let off = self.u32();
            let actual = self.u32() as usize;
            assert_eq!(off, 0);
            assert_eq!(max, actual, "max_count == actual_count");
            assert!(actual >= 1, "NUL counted");
            let units: Vec<u16> = (0..actual)
                .map(|i| u16::from_le_bytes([self.b[self.pos + 2 * i], self.b[self.pos + 2 * i + 1]]))
                .collect();
            self.pos += 2 * actual;
            assert_eq!(units[actual - 1], 0, "terminating NUL");
            String::from_utf16(&units[..actual - 1]).unwrap()
        }
        pub fn end(&self) {
            assert_eq!(self.pos, self.b.len(), "no trailing bytes");
        }
    }

    pub(crate) struct Backend;

    pub(crate) fn samba_like_shares() -> Vec<ShareInfo> {
        vec![
            ShareInfo {
                name: "data".into(),
                share_type: 0,
                comment: "".into(),
                path: "C:\\tmp\\rpc-ref\\share".into(),
                max_uses: 0xFFFF_FFFF,
                current_uses: 1,
            },
            ShareInfo {
                name: "IPC$".into(),
                share_type: 0x8000_0003,
                comment: "IPC Service (Samba 4.17.12-Debian)".into(),
                path: "C:\\tmp".into(),
                max_uses: 0xFFFF_FFFF,
                current_uses: 1,
            },
        ]
    }

    impl PipeBackend for Backend {
        fn shares(&self) -> Vec<ShareInfo> {
            samba_like_shares()
        }
        fn server_info(&self) -> ServerInfo {
            ServerInfo {
                name: "REFSMBD".into(),
                comment: "Samba 4.17.12-Debian".into(),
                version_major: 6,
                version_minor: 1,
                server_type: 0x0080_9A03,
            }
        }
    }

    fn enum_stub(level: u32, resume: bool) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.pointer();
        w.string("\\\\duet");
        w.u32(level);
        w.u32(level);
        w.pointer();
        w.u32(0);
        w.null();
        w.u32(0xFFFF_FFFF);
        if resume {
            w.pointer();
            w.u32(0);
        } else {
            w.null();
        }
        w.into_bytes()
    }

    /// Decodes one SHARE_INFO_n array, fixed parts then deferred strings.
    fn decode_shares(d: &mut Dec<'_>, level: u32, n: usize) -> Vec<(String, u32, String, String)> {
        let mut fixed = Vec::new();
        for _ in 0..n {
            assert!(d.ptr());
            let mut t = 0;
            let mut has_path = false;
            if level != 0 {
                t = d.u32();
                assert!(d.ptr());
                match level {
                    501 => assert_eq!(d.u32(), 0),
                    2 | 502 => {
                        d.u32();
                        d.u32();
                        d.u32();
                        assert!(d.ptr());
                        assert!(d.ptr());
                        has_path = true;
                        if level == 502 {
                            assert_eq!(d.u32(), 0);
                            assert!(!d.ptr());
                        }
                    }
                    _ => {}
                }
            }
            fixed.push((t, has_path));
        }
        fixed
            .into_iter()
            .map(|(t, has_path)| {
                let name = d.string();
                let comment = if level != 0 { d.string() } else { String::new() };
                let path = if has_path {
                    let p = d.string();
                    assert_eq!(d.string(), "");
                    p
                } else {
                    String::new()
                };
                (name, t, comment, path)
            })
            .collect()
    }

    #[test]
    fn share_enum_all_levels_decode() {
        for level in ENUM_LEVELS {
            for resume in [false, true] {
                let out = call(OP_NETR_SHARE_ENUM, &enum_stub(level, resume), &Backend).unwrap();
                let mut d = Dec::new(&out);
                assert_eq!(d.u32(), level);
                assert_eq!(d.u32(), level);
                assert!(d.ptr());
                assert_eq!(d.u32(), 2);
                assert!(d.ptr());
                assert_eq!(d.u32(), 2);
                let shares = decode_shares(&mut d, level, 2);
                assert_eq!(shares[0].0, "data");
                assert_eq!(shares[1].0, "IPC$");
                if level != 0 {
                    assert_eq!(shares[1].1, 0x8000_0003);
                    assert_eq!(shares[1].2, "IPC Service (Samba 4.17.12-Debian)");
                }
                if level == 2 || level == 502 {
                    assert_eq!(shares[0].3, "C:\\tmp\\rpc-ref\\share");
                }
                assert_eq!(d.u32(), 2);
                assert_eq!(d.ptr(), resume);
                if resume {
                    assert_eq!(d.u32(), 0);
                }
                assert_eq!(d.u32(), WERR_OK);
                d.end();
            }
        }
    }

    #[test]
    fn share_enum_unknown_level() {
        let out = call(OP_NETR_SHARE_ENUM, &enum_stub(7, true), &Backend).unwrap();
        // The [default] arm is empty, so the client's layout after the
        // switch is unknown: only the level, the count and the status matter.
        let mut d = Dec::new(&out);
        assert_eq!((d.u32(), d.u32(), d.u32()), (7, 7, 0));
        assert_eq!(&out[out.len() - 4..], &WERR_INVALID_LEVEL.to_le_bytes());
    }

    fn get_info_stub(name: &str, level: u32) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.null();
        w.string(name);
        w.u32(level);
        w.into_bytes()
    }

    #[test]
    fn share_get_info() {
        for level in [0, 1, 2, 501, 502] {
            let out = call(OP_NETR_SHARE_GET_INFO, &get_info_stub("DATA", level), &Backend).unwrap();
            let mut d = Dec::new(&out);
            assert_eq!(d.u32(), level);
            assert!(d.ptr());
            let s = decode_shares(&mut d, level, 1);
            assert_eq!(s[0].0, "data");
            assert_eq!(d.u32(), WERR_OK);
            d.end();
        }
        let out = call(OP_NETR_SHARE_GET_INFO, &get_info_stub("data", 1005), &Backend).unwrap();
        assert_eq!(out, [0xED, 3, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let out = call(OP_NETR_SHARE_GET_INFO, &get_info_stub("nosuch", 1), &Backend).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 0, 0, 0, 0, 0x06, 0x09, 0, 0]);
        let out = call(OP_NETR_SHARE_GET_INFO, &get_info_stub("data", 7), &Backend).unwrap();
        assert_eq!(out, [7, 0, 0, 0, 0x7C, 0, 0, 0]);
        // A level the union knows but we do not serve: a NULL arm.
        let out = call(OP_NETR_SHARE_GET_INFO, &get_info_stub("data", 1501), &Backend).unwrap();
        assert_eq!(out, [0xDD, 5, 0, 0, 0, 0, 0, 0, 0x7C, 0, 0, 0]);
    }

    #[test]
    fn server_get_info_levels() {
        for level in [100, 101, 102] {
            let mut w = NdrWriter::new();
            w.null();
            w.u32(level);
            let out = call(OP_NETR_SERVER_GET_INFO, &w.into_bytes(), &Backend).unwrap();
            let mut d = Dec::new(&out);
            assert_eq!(d.u32(), level);
            assert!(d.ptr());
            assert_eq!(d.u32(), PLATFORM_ID_NT);
            assert!(d.ptr());
            if level >= 101 {
                assert_eq!((d.u32(), d.u32(), d.u32()), (6, 1, 0x0080_9A03));
                assert!(d.ptr());
            }
            if level == 102 {
                for _ in 0..6 {
                    d.u32();
                }
                assert!(d.ptr());
            }
            assert_eq!(d.string(), "REFSMBD");
            if level >= 101 {
                assert_eq!(d.string(), "Samba 4.17.12-Debian");
            }
            if level == 102 {
                assert_eq!(d.string(), "C:\\");
            }
            assert_eq!(d.u32(), WERR_OK);
            d.end();
        }
        let mut w = NdrWriter::new();
        w.null();
        w.u32(103);
        let out = call(OP_NETR_SERVER_GET_INFO, &w.into_bytes(), &Backend).unwrap();
        assert_eq!(out, [103, 0, 0, 0, 0, 0, 0, 0, 0x7C, 0, 0, 0]);
        let mut w = NdrWriter::new();
        w.null();
        w.u32(7);
        let out = call(OP_NETR_SERVER_GET_INFO, &w.into_bytes(), &Backend).unwrap();
        assert_eq!(out, [7, 0, 0, 0, 0x7C, 0, 0, 0]);
    }

    #[test]
    fn truncated_stubs_fault() {
        let stubs = [
            (OP_NETR_SHARE_ENUM, enum_stub(1, true)),
            (OP_NETR_SHARE_GET_INFO, get_info_stub("data", 1)),
            (OP_NETR_SERVER_GET_INFO, {
                let mut w = NdrWriter::new();
                w.pointer();
                w.string("srv");
                w.u32(101);
                w.into_bytes()
            }),
        ];
        for (op, stub) in stubs {
            assert!(call(op, &stub, &Backend).is_ok());
            for n in 0..stub.len() {
                assert_eq!(call(op, &stub[..n], &Backend), Err(FaultStatus(fault::NDR)), "op {op} cut at {n}");
            }
        }
    }

    #[test]
    fn share_enum_sticky_skips_special_shares() {
        let out = call(OP_NETR_SHARE_ENUM_STICKY, &enum_stub(1, false), &Backend).unwrap();
        let mut d = Dec::new(&out);
        assert_eq!((d.u32(), d.u32()), (1, 1));
        assert!(d.ptr());
        assert_eq!(d.u32(), 1);
        assert!(d.ptr());
        assert_eq!(d.u32(), 1);
        assert_eq!(decode_shares(&mut d, 1, 1)[0].0, "data");
        assert_eq!((d.u32(), d.u32(), d.u32()), (1, 0, WERR_OK));
        d.end();
        let out = call(OP_NETR_SHARE_ENUM_STICKY, &enum_stub(501, false), &Backend).unwrap();
        let mut d = Dec::new(&out);
        assert_eq!((d.u32(), d.u32()), (501, 501));
        assert!(!d.ptr());
        assert_eq!((d.u32(), d.u32(), d.u32()), (0, 0, WERR_INVALID_LEVEL));
        d.end();
    }

    #[test]
    fn anonymous_callers_do_not_see_paths() {
        for level in [0, 1, 501, 2, 502] {
            let denied = level == 2 || level == 502;
            for op in [OP_NETR_SHARE_ENUM, OP_NETR_SHARE_ENUM_STICKY] {
                let out = call_as(op, &enum_stub(level, true), &Backend, Caller::Anonymous).unwrap();
                let werr = u32::from_le_bytes(out[out.len() - 4..].try_into().unwrap());
                if op == OP_NETR_SHARE_ENUM && level == 501 {
                    assert_eq!(werr, WERR_ACCESS_DENIED);
                } else if denied {
                    let mut d = Dec::new(&out);
                    assert_eq!((d.u32(), d.u32()), (level, level));
                    assert!(!d.ptr());
                    assert_eq!(d.u32(), 0);
                    assert!(d.ptr());
                    assert_eq!((d.u32(), d.u32()), (0, WERR_ACCESS_DENIED));
                    d.end();
                } else if op == OP_NETR_SHARE_ENUM || level != 501 {
                    assert_eq!(werr, WERR_OK);
                } else {
                    assert_eq!(werr, WERR_INVALID_LEVEL);
                }
            }
            let out = call_as(OP_NETR_SHARE_GET_INFO, &get_info_stub("data", level), &Backend, Caller::Anonymous).unwrap();
            if denied {
                let mut expected = level.to_le_bytes().to_vec();
                expected.extend_from_slice(&[0, 0, 0, 0, 5, 0, 0, 0]);
                assert_eq!(out, expected);
            } else {
                assert_eq!(&out[out.len() - 4..], &WERR_OK.to_le_bytes());
            }
        }
    }

    #[test]
    fn empty_enumerations() {
        // NetrSessionEnum level 10, ServerName set, ClientName and UserName NULL, resume handle.
        let mut w = NdrWriter::new();
        w.pointer();
        w.string("\\\\duet");
        w.null();
        w.null();
        w.u32(10);
        w.u32(10);
        w.pointer();
        w.u32(0);
        w.null();
        w.u32(0xFFFF_FFFF);
        w.pointer();
        w.u32(0);
        let stub = w.into_bytes();
        let out = call(12, &stub, &Backend).unwrap();
        let mut d = Dec::new(&out);
        assert_eq!((d.u32(), d.u32()), (10, 10));
        assert!(d.ptr());
        assert_eq!(d.u32(), 0);
        assert!(!d.ptr());
        assert_eq!(d.u32(), 0);
        assert!(d.ptr());
        assert_eq!((d.u32(), d.u32()), (0, WERR_OK));
        d.end();
        for n in 0..stub.len() {
            assert_eq!(call(12, &stub[..n], &Backend), Err(FaultStatus(fault::NDR)));
        }
        // NetrCharDevEnum level 1: a NULL container and ERROR_NOT_SUPPORTED.
        let mut w = NdrWriter::new();
        w.null();
        w.u32(1);
        w.u32(1);
        w.pointer();
        w.u32(0);
        w.null();
        w.u32(0xFFFF_FFFF);
        w.null();
        let out = call(0, &w.into_bytes(), &Backend).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x32, 0, 0, 0]);
        // NetrServerDiskEnum level 0.
        let mut w = NdrWriter::new();
        w.null();
        w.u32(0);
        w.u32(0);
        w.null();
        w.u32(0xFFFF_FFFF);
        w.pointer();
        w.u32(0);
        let out = call(OP_NETR_SERVER_DISK_ENUM, &w.into_bytes(), &Backend).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn share_check() {
        let stub = |dev: &str| {
            let mut w = NdrWriter::new();
            w.null();
            w.string(dev);
            w.into_bytes()
        };
        let out = call(OP_NETR_SHARE_CHECK, &stub("c:\\TMP\\rpc-ref\\share"), &Backend).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0, 0, 0, 0]);
        let out = call(OP_NETR_SHARE_CHECK, &stub("C:\\tmp"), &Backend).unwrap();
        assert_eq!(out, [3, 0, 0, 0x80, 0, 0, 0, 0]);
        let out = call(OP_NETR_SHARE_CHECK, &stub("D:\\"), &Backend).unwrap();
        assert_eq!(out, [0, 0, 0, 0, 0x07, 0x09, 0, 0]);
    }

    #[test]
    fn remote_tod_fields() {
        assert_eq!(remote_tod(None), [0, 0, 0, 0, 0x32, 0, 0, 0]);
        // 2024-02-29 13:14:15.67 UTC, a Thursday.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_709_212_455_670);
        let out = remote_tod(Some(t));
        let mut d = Dec::new(&out);
        assert!(d.ptr());
        let f: Vec<u32> = (0..12).map(|_| d.u32()).collect();
        assert_eq!(f[0], 1_709_212_455);
        assert_eq!(&f[2..], &[13, 14, 15, 67, 0, 310, 29, 2, 2024, 4]);
        assert_eq!(d.u32(), WERR_OK);
        d.end();
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn unknown_opnum_faults() {
        assert_eq!(call(14, &[], &Backend), Err(FaultStatus(fault::OP_RNG_ERROR)));
        assert_eq!(call(33, &[], &Backend), Err(FaultStatus(fault::OP_RNG_ERROR)));
        assert_eq!(call(0xFFFF, &[], &Backend), Err(FaultStatus(fault::OP_RNG_ERROR)));
    }

    /// Writes request and response stubs to `$DUET_RPC_DUMP/` for Samba's
    /// `ndrdump` (an independent, strict NDR parser), e.g.
    /// `ndrdump srvsvc srvsvc_NetShareEnumAll out enum-502.out`.
    #[test]
    #[ignore]
    fn dump_stubs_for_ndrdump() {
        let Ok(dir) = std::env::var("DUET_RPC_DUMP") else { return };
        let write = |name: &str, b: &[u8]| std::fs::write(format!("{dir}/{name}"), b).unwrap();
        for level in ENUM_LEVELS.into_iter().chain([7, 503, 1501]) {
            let stub = enum_stub(level, true);
            write(&format!("enum-{level}.in"), &stub);
            write(&format!("enum-{level}.out"), &call(OP_NETR_SHARE_ENUM, &stub, &Backend).unwrap());
        }
        for level in [0, 1, 2, 501, 502, 1005, 7, 503, 1004] {
            let stub = get_info_stub("data", level);
            write(&format!("getinfo-{level}.in"), &stub);
            write(&format!("getinfo-{level}.out"), &call(OP_NETR_SHARE_GET_INFO, &stub, &Backend).unwrap());
        }
        write("getinfo-nosuch.out", &call(OP_NETR_SHARE_GET_INFO, &get_info_stub("nosuch", 2), &Backend).unwrap());
        for level in [100, 101, 102, 7, 502, 1556] {
            let mut w = NdrWriter::new();
            w.pointer();
            w.string("\\\\duet");
            w.u32(level);
            let stub = w.into_bytes();
            write(&format!("srvinfo-{level}.in"), &stub);
            write(&format!("srvinfo-{level}.out"), &call(OP_NETR_SERVER_GET_INFO, &stub, &Backend).unwrap());
        }
        // The empty enumerations: (opnum, leading strings, level).
        for (op, strings, level) in [(0, 1, 1), (3, 2, 0), (8, 2, 1), (9, 3, 3), (12, 3, 502), (12, 3, 10), (26, 1, 1)] {
            let mut w = NdrWriter::new();
            w.pointer();
            w.string("\\\\duet");
            for _ in 1..strings {
                w.null();
            }
            w.u32(level);
            w.u32(level);
            w.pointer();
            w.u32(0);
            w.null();
            w.u32(0xFFFF_FFFF);
            w.pointer();
            w.u32(0);
            let stub = w.into_bytes();
            write(&format!("op{op}-{level}.in"), &stub);
            write(&format!("op{op}-{level}.out"), &call(op, &stub, &Backend).unwrap());
        }
        let mut w = NdrWriter::new();
        w.null();
        w.u32(0);
        w.u32(0);
        w.null();
        w.u32(0xFFFF_FFFF);
        w.pointer();
        w.u32(0);
        let stub = w.into_bytes();
        write("op23-0.in", &stub);
        write("op23-0.out", &call(OP_NETR_SERVER_DISK_ENUM, &stub, &Backend).unwrap());
        let mut w = NdrWriter::new();
        w.null();
        w.string("C:\\tmp");
        let stub = w.into_bytes();
        write("op20.in", &stub);
        write("op20.out", &call(OP_NETR_SHARE_CHECK, &stub, &Backend).unwrap());
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_709_212_455_670);
        write("op28.out", &remote_tod(Some(t)));
        for level in [100, 101] {
            let mut w = NdrWriter::new();
            w.null();
            w.u32(level);
            let stub = w.into_bytes();
            write(&format!("wksta-{level}.in"), &stub);
            write(&format!("wksta-{level}.out"), &crate::rpc::wkssvc::call(0, &stub, &Backend).unwrap());
        }
    }

    #[test]
    fn non_empty_input_container_is_bad_stub() {
        let mut w = NdrWriter::new();
        w.null();
        w.u32(1);
        w.u32(1);
        w.pointer();
        w.u32(1);
        w.pointer();
        w.u32(1);
        assert_eq!(call(OP_NETR_SHARE_ENUM, &w.into_bytes(), &Backend), Err(FaultStatus(fault::NDR)));
    }
}
