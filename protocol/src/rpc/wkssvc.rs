//! The wkssvc interface ([MS-WKST] 3.2.4.1): NetrWkstaGetInfo (opnum 0),
//! levels 100 and 101. Enough for clients that ask a server for its
//! computer name and workgroup.

use super::ndr::{NdrReader, NdrWriter};
use super::pdu::{fault, FaultStatus};
use super::srvsvc::{PLATFORM_ID_NT, WERR_INVALID_LEVEL, WERR_OK};
use super::PipeBackend;
use crate::error::ParseResult;

/// NetrWkstaGetInfo ([MS-WKST] 3.2.4.1).
pub const OP_NETR_WKSTA_GET_INFO: u16 = 0;

/// Every arm of WKSTA_INFO ([MS-WKST] 2.2.4.1) or of Samba's
/// wkssvc_NetWkstaInfo: each a unique pointer, NULL when we do not serve it.
const WKSTA_INFO_ARMS: [u32; 36] = [
    100, 101, 102, 502, 1010, 1011, 1012, 1013, 1018, 1023, 1027, 1028, 1032, 1033, 1041, 1042, 1043, 1044, 1045,
    1046, 1047, 1048, 1049, 1050, 1051, 1052, 1053, 1054, 1055, 1056, 1057, 1058, 1059, 1060, 1061, 1062,
];

/// Runs one wkssvc call: the response stub, or the fault to send.
pub fn call(opnum: u16, stub: &[u8], backend: &dyn PipeBackend) -> Result<Vec<u8>, FaultStatus> {
    match opnum {
        OP_NETR_WKSTA_GET_INFO => {
            let req = WkstaGetInfoRequest::parse(stub).map_err(|_| FaultStatus(fault::NDR))?;
            Ok(req.respond(backend))
        }
        _ => Err(FaultStatus(fault::OP_RNG_ERROR)),
    }
}

/// `[in]` parameters of NetrWkstaGetInfo ([MS-WKST] 3.2.4.1).
///
/// ```text
/// [in, string, unique] WKSSVC_IDENTIFY_HANDLE ServerName,
/// [in] unsigned long Level
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WkstaGetInfoRequest {
    pub server_name: Option<String>,
    pub level: u32,
}

impl WkstaGetInfoRequest {
    pub fn parse(stub: &[u8]) -> ParseResult<WkstaGetInfoRequest> {
        let mut r = NdrReader::new(stub);
        let server_name = r.unique_string("ServerName")?;
        let level = r.u32("Level")?;
        Ok(WkstaGetInfoRequest { server_name, level })
    }

    /// Encodes `[out, switch_is(Level)] LPWKSTA_INFO WkstaInfo` and the return
    /// value: WKSTA_INFO_100 or WKSTA_INFO_101 ([MS-WKST] 2.2.5.1, 2.2.5.2).
    pub fn respond(&self, backend: &dyn PipeBackend) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.u32(self.level);
        if !matches!(self.level, 100 | 101) {
            if WKSTA_INFO_ARMS.contains(&self.level) {
                w.null();
            }
            w.u32(WERR_INVALID_LEVEL);
            return w.into_bytes();
        }
        let info = backend.server_info();
        w.pointer();
        w.u32(PLATFORM_ID_NT);
        w.pointer(); // computername
        w.pointer(); // langroup
        w.u32(info.version_major);
        w.u32(info.version_minor);
        if self.level == 101 {
            w.pointer(); // lanroot
        }
        w.string(&info.name);
        w.string(&backend.workgroup());
        if self.level == 101 {
            w.string("C:\\");
        }
        w.u32(WERR_OK);
        w.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::srvsvc::tests::{Backend, Dec};

    fn stub(level: u32) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.pointer();
        w.string("\\\\duet");
        w.u32(level);
        w.into_bytes()
    }

    #[test]
    fn wksta_get_info_levels() {
        for level in [100, 101] {
            let out = call(0, &stub(level), &Backend).unwrap();
            let mut d = Dec::new(&out);
            assert_eq!(d.u32(), level);
            assert!(d.ptr());
            assert_eq!(d.u32(), 500);
            assert!(d.ptr());
            assert!(d.ptr());
            assert_eq!((d.u32(), d.u32()), (6, 1));
            if level == 101 {
                assert!(d.ptr());
            }
            assert_eq!(d.string(), "REFSMBD");
            assert_eq!(d.string(), "WORKGROUP");
            if level == 101 {
                assert_eq!(d.string(), "C:\\");
            }
            assert_eq!(d.u32(), 0);
            d.end();
        }
        assert_eq!(call(0, &stub(102), &Backend).unwrap(), [102, 0, 0, 0, 0, 0, 0, 0, 0x7C, 0, 0, 0]);
        assert_eq!(call(0, &stub(7), &Backend).unwrap(), [7, 0, 0, 0, 0x7C, 0, 0, 0]);
        assert_eq!(call(1, &stub(100), &Backend), Err(FaultStatus(fault::OP_RNG_ERROR)));
        let s = stub(100);
        for n in 0..s.len() {
            assert_eq!(call(0, &s[..n], &Backend), Err(FaultStatus(fault::NDR)));
        }
    }
}
