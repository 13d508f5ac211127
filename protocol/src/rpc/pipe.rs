//! The named-pipe endpoint: byte buffering, PDU framing, fragment
//! reassembly, bind negotiation and dispatch to srvsvc or wkssvc.
//!
//! Input is a byte stream: a WRITE may carry part of a PDU, one PDU or
//! several, and whole PDUs are found by their frag_length ([C706 12.6.3.1]).
//! Output is a queue of messages, one per PDU fragment, as on a
//! message-mode pipe: a READ never returns bytes of two messages, and a READ
//! smaller than the message leaves the rest for the next READ.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::pdu::{
    self, encode_bind_nak, encode_fault, fault, pfc, ptype, reason, reject, result, Bind, BindAck, ContextResult,
    FaultStatus, Header, Request, Response, SyntaxId, HEADER_LEN, NDR20, RESPONSE_HEADER_LEN,
};
use super::{srvsvc, wkssvc, Caller, PipeBackend, RpcError};

/// Largest PDU we accept. frag_length is a u16, so this is also the protocol's limit.
pub const MAX_PDU_LEN: usize = 64 * 1024;
/// Largest request stub we reassemble from fragments.
pub const MAX_REQUEST_LEN: usize = 1024 * 1024;
/// Most output we queue: requests that arrive while this much is unread
/// are refused, so a client that writes without reading cannot make the
/// pipe grow without bound.
pub const MAX_PENDING_OUTPUT: usize = 4 * 1024 * 1024;
/// Largest fragment we send or advertise, as Windows and Samba do on named pipes.
pub const MAX_FRAG: u16 = 4280;
/// Smallest fragment size we agree to: a response header and 8 bytes of stub.
pub const MIN_FRAG: u16 = 32;
/// Association group id we hand out when the client asks for a new one.
const ASSOC_GROUP_ID: u32 = 0x0000_53F0;
/// [MS-RPCE] 2.2.2.14 KeepConnectionOnOrphanSupported: we keep the pipe open
/// after an orphaned PDU, so we can grant it. Security context multiplexing
/// needs authentication, which we do not do.
const KEEP_CONNECTION_ON_ORPHAN: u8 = 0x02;

/// Which RPC interface a pipe serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeKind {
    Srvsvc,
    Wkssvc,
}

impl PipeKind {
    /// Recognises a pipe name as the client opens it: `srvsvc`, `\srvsvc`,
    /// `\PIPE\srvsvc` (any case).
    pub fn from_name(name: &str) -> Option<PipeKind> {
        let name = name.trim_start_matches('\\');
        let name = match name.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("pipe\\") => &name[5..],
            _ => name,
        };
        if name.eq_ignore_ascii_case("srvsvc") {
            Some(PipeKind::Srvsvc)
        } else if name.eq_ignore_ascii_case("wkssvc") {
            Some(PipeKind::Wkssvc)
        } else {
            None
        }
    }

    /// The pipe name without prefix, lower case.
    pub fn name(self) -> &'static str {
        match self {
            PipeKind::Srvsvc => "srvsvc",
            PipeKind::Wkssvc => "wkssvc",
        }
    }

    /// The abstract syntax (interface id and version) served on this pipe.
    pub fn interface(self) -> SyntaxId {
        match self {
            PipeKind::Srvsvc => pdu::SRVSVC,
            PipeKind::Wkssvc => pdu::WKSSVC,
        }
    }

    /// The secondary address sent in the bind_ack.
    fn sec_addr(self) -> &'static str {
        match self {
            PipeKind::Srvsvc => "\\PIPE\\srvsvc",
            PipeKind::Wkssvc => "\\PIPE\\wkssvc",
        }
    }

    fn call(self, opnum: u16, stub: &[u8], backend: &dyn PipeBackend, caller: Caller) -> Result<Vec<u8>, FaultStatus> {
        match self {
            PipeKind::Srvsvc => srvsvc::call_as(opnum, stub, backend, caller),
            PipeKind::Wkssvc => wkssvc::call(opnum, stub, backend),
        }
    }
}

/// What a bind established ([C706 12.6.4.3]: the association).
#[derive(Debug, Clone)]
struct Association {
    /// Fragment size for both directions, from the bind.
    frag: u16,
    assoc_group_id: u32,
    /// Presentation contexts accepted so far (bind and alter_context).
    contexts: Vec<u16>,
}

/// A fragmented request being put back together.
#[derive(Debug, Clone)]
struct Reassembly {
    call_id: u32,
    context_id: u16,
    opnum: u16,
    stub: Vec<u8>,
}

/// One open of an RPC named pipe.
#[derive(Debug)]
pub struct Pipe {
    kind: PipeKind,
    /// Bytes written but not yet a whole PDU.
    input: Vec<u8>,
    /// Output messages (one per PDU fragment), front first.
    output: VecDeque<Vec<u8>>,
    /// How much of the front message has been read.
    read_offset: usize,
    /// The last read left part of its message unread.
    partial: bool,
    /// Bytes queued in `output`, less what has been read of the front message.
    pending: usize,
    caller: Caller,
    disconnected: bool,
    assoc: Option<Association>,
    reassembly: Option<Reassembly>,
}

impl Pipe {
    pub fn new(kind: PipeKind) -> Self {
        Pipe {
            kind,
            input: Vec::new(),
            output: VecDeque::new(),
            read_offset: 0,
            partial: false,
            pending: 0,
            caller: Caller::default(),
            disconnected: false,
            assoc: None,
            reassembly: None,
        }
    }

    pub fn kind(&self) -> PipeKind {
        self.kind
    }

    /// Says who opened the pipe. The default is [`Caller::Authenticated`];
    /// the server should pass [`Caller::Anonymous`] for anonymous and guest sessions.
    pub fn set_caller(&mut self, caller: Caller) {
        self.caller = caller;
    }

    /// Takes bytes the client WRITEs to the pipe. Whole PDUs are processed
    /// at once and their answers queued for [`Pipe::read`]; a partial PDU
    /// waits for the next write. An error disconnects the pipe.
    pub fn write(&mut self, data: &[u8], backend: &dyn PipeBackend) -> Result<(), RpcError> {
        if self.disconnected {
            return Err(RpcError::Disconnected);
        }
        self.input.extend_from_slice(data);
        let r = self.drain_input(backend);
        if r.is_err() {
            self.disconnect();
        }
        r
    }

    /// Takes up to `max` bytes of the front output message, for a READ.
    /// `None` when no output is pending. After it, [`Pipe::more_pending`]
    /// says whether the message was cut short.
    pub fn read(&mut self, max: usize) -> Option<Vec<u8>> {
        let front = self.output.front()?;
        let end = front.len().min(self.read_offset.saturating_add(max));
        let chunk = front[self.read_offset..end].to_vec();
        self.pending -= chunk.len();
        if end == front.len() {
            self.output.pop_front();
            self.read_offset = 0;
            self.partial = false;
        } else {
            self.read_offset = end;
            self.partial = true;
        }
        Some(chunk)
    }

    /// Whether the last read (or transceive) left part of its message
    /// unread: the server then answers that READ or IOCTL with
    /// STATUS_BUFFER_OVERFLOW, and the client reads the rest.
    pub fn more_pending(&self) -> bool {
        self.partial
    }

    /// Whether any output is waiting to be read (a whole message or the rest of one).
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// FSCTL_PIPE_TRANSCEIVE: writes `input`, then reads up to `max_out`
    /// bytes of the first answer. Empty when the write produced no answer
    /// (a non-final request fragment). Refused with [`RpcError::PipeBusy`]
    /// while output of an earlier call is unread ([MS-FSCC] 2.3.48: a
    /// transceive needs an empty read queue).
    pub fn transceive(&mut self, input: &[u8], max_out: usize, backend: &dyn PipeBackend) -> Result<Vec<u8>, RpcError> {
        if self.disconnected {
            return Err(RpcError::Disconnected);
        }
        if self.has_output() {
            return Err(RpcError::PipeBusy);
        }
        self.write(input, backend)?;
        Ok(self.read(max_out).unwrap_or_default())
    }

    fn disconnect(&mut self) {
        self.disconnected = true;
        self.input = Vec::new();
        self.output.clear();
        self.pending = 0;
        self.read_offset = 0;
        self.partial = false;
        self.reassembly = None;
    }

    /// Processes every whole PDU in the input buffer.
    fn drain_input(&mut self, backend: &dyn PipeBackend) -> Result<(), RpcError> {
        let mut start = 0;
        let result = loop {
            let pending = &self.input[start..];
            if pending.len() < HEADER_LEN {
                break Ok(());
            }
            let drep = [pending[4], pending[5], pending[6], pending[7]];
            if !pdu::is_little_endian(drep) {
                break Err(RpcError::UnsupportedDataRepresentation(drep));
            }
            let frag_length = usize::from(u16::from_le_bytes([pending[8], pending[9]]));
            if frag_length < HEADER_LEN {
                break Err(RpcError::Protocol("frag_length shorter than the header"));
            }
            if frag_length > MAX_PDU_LEN {
                break Err(RpcError::PduTooLarge(frag_length));
            }
            if pending.len() < frag_length {
                break Ok(());
            }
            if self.pending > MAX_PENDING_OUTPUT {
                break Err(RpcError::OutputFull(self.pending));
            }
            let pdu = pending[..frag_length].to_vec();
            start += frag_length;
            if let Err(e) = self.process(&pdu, backend) {
                break Err(e);
            }
        };
        self.input.drain(..start);
        result
    }

    /// Processes one whole PDU.
    fn process(&mut self, pdu: &[u8], backend: &dyn PipeBackend) -> Result<(), RpcError> {
        let (body, hdr) = Header::parse(pdu)?;
        match hdr.ptype {
            ptype::BIND => self.bind(&hdr, body),
            ptype::ALTER_CONTEXT => self.alter_context(&hdr, body),
            ptype::REQUEST => self.request(&hdr, body, backend),
            // Nothing is ever in progress long enough to cancel.
            ptype::CO_CANCEL => Ok(()),
            ptype::ORPHANED => {
                if self.reassembly.as_ref().is_some_and(|r| r.call_id == hdr.call_id) {
                    self.reassembly = None;
                }
                Ok(())
            }
            ptype::AUTH3 => Err(RpcError::Protocol("auth3 without authentication")),
            _ => Err(RpcError::Protocol("PDU type a client does not send")),
        }
    }

    /// bind ([C706 12.6.4.3], [MS-RPCE] 3.3.1.5.6, 3.3.1.5.3): answered with
    /// a bind_ack listing each context's result, or a bind_nak.
    fn bind(&mut self, hdr: &Header, body: &[u8]) -> Result<(), RpcError> {
        if self.assoc.is_some() {
            return self.bind_nak(hdr.call_id, reject::REASON_NOT_SPECIFIED);
        }
        if hdr.auth_length != 0 {
            return self.bind_nak(hdr.call_id, reject::AUTHENTICATION_TYPE_NOT_RECOGNIZED);
        }
        if hdr.pfc_flags & (pfc::FIRST_FRAG | pfc::LAST_FRAG) != pfc::FIRST_FRAG | pfc::LAST_FRAG {
            return self.bind_nak(hdr.call_id, reject::PROTOCOL_VERSION_NOT_SUPPORTED);
        }
        let bind = match Bind::parse(body) {
            Ok((_, b)) => b,
            Err(_) => return self.bind_nak(hdr.call_id, reject::PROTOCOL_VERSION_NOT_SUPPORTED),
        };
        let frag = bind.max_recv_frag.min(MAX_FRAG) & !7;
        if frag < MIN_FRAG || bind.contexts.is_empty() {
            return self.bind_nak(hdr.call_id, reject::REASON_NOT_SPECIFIED);
        }
        let Some((results, accepted)) = self.negotiate(&bind, true) else {
            return self.bind_nak(hdr.call_id, reject::REASON_NOT_SPECIFIED);
        };
        let assoc_group_id = if bind.assoc_group_id != 0 { bind.assoc_group_id } else { ASSOC_GROUP_ID };
        let ack = BindAck {
            max_xmit_frag: frag,
            max_recv_frag: frag,
            assoc_group_id,
            sec_addr: self.kind.sec_addr().to_string(),
            results,
        };
        self.push(|out| ack.encode(ptype::BIND_ACK, hdr.call_id, out));
        self.assoc = Some(Association { frag, assoc_group_id, contexts: accepted });
        Ok(())
    }

    /// alter_context ([C706 12.6.4.1]): adds presentation contexts to the association.
    fn alter_context(&mut self, hdr: &Header, body: &[u8]) -> Result<(), RpcError> {
        let Some(assoc) = self.assoc.clone() else {
            return Err(RpcError::Protocol("alter_context before bind"));
        };
        if hdr.auth_length != 0 {
            return self.fault(hdr.call_id, 0, fault::ACCESS_DENIED);
        }
        let (_, bind) = Bind::parse(body)?;
        let Some((results, accepted)) = self.negotiate(&bind, false) else {
            return self.fault(hdr.call_id, 0, fault::PROTO_ERROR);
        };
        let resp = BindAck {
            max_xmit_frag: assoc.frag,
            max_recv_frag: assoc.frag,
            assoc_group_id: assoc.assoc_group_id,
            sec_addr: String::new(),
            results,
        };
        self.push(|out| resp.encode(ptype::ALTER_CONTEXT_RESP, hdr.call_id, out));
        if let Some(a) = self.assoc.as_mut() {
            a.contexts.extend(accepted);
        }
        Ok(())
    }

    /// The result for each proposed context, and the ids accepted. `None`
    /// when the bind must be refused: a context without transfer syntaxes,
    /// or more than one bind time feature negotiation context.
    fn negotiate(&self, bind: &Bind, allow_features: bool) -> Option<(Vec<ContextResult>, Vec<u16>)> {
        let mut results = Vec::with_capacity(bind.contexts.len());
        let mut accepted = Vec::new();
        let mut features_seen = false;
        for ctx in &bind.contexts {
            let first = ctx.transfer_syntaxes.first()?;
            let refuse = |why| ContextResult { result: result::PROVIDER_REJECTION, reason: why, transfer_syntax: SyntaxId::ZERO };
            let res = if let (Some(bits), true) = (first.bind_time_features(), allow_features) {
                if features_seen {
                    return None;
                }
                features_seen = true;
                ContextResult {
                    result: result::NEGOTIATE_ACK,
                    reason: u16::from(bits & KEEP_CONNECTION_ON_ORPHAN),
                    transfer_syntax: SyntaxId::ZERO,
                }
            } else if ctx.abstract_syntax != self.kind.interface() {
                refuse(reason::ABSTRACT_SYNTAX_NOT_SUPPORTED)
            } else if ctx.transfer_syntaxes.contains(&NDR20) {
                accepted.push(ctx.context_id);
                ContextResult { result: result::ACCEPTANCE, reason: reason::NOT_SPECIFIED, transfer_syntax: NDR20 }
            } else {
                refuse(reason::PROPOSED_TRANSFER_SYNTAXES_NOT_SUPPORTED)
            };
            results.push(res);
        }
        Some((results, accepted))
    }

    /// request ([C706 12.6.4.9]): reassembles fragments, runs the call and
    /// queues the response fragments or a fault.
    fn request(&mut self, hdr: &Header, body: &[u8], backend: &dyn PipeBackend) -> Result<(), RpcError> {
        let Some(assoc) = self.assoc.as_ref() else {
            return self.fault(hdr.call_id, 0, fault::PROTO_ERROR);
        };
        let frag = assoc.frag;
        let req = Request::parse(hdr, body)?;
        if hdr.auth_length != 0 {
            self.reassembly = None;
            return self.fault(hdr.call_id, req.context_id, fault::ACCESS_DENIED);
        }
        let first = hdr.pfc_flags & pfc::FIRST_FRAG != 0;
        let last = hdr.pfc_flags & pfc::LAST_FRAG != 0;
        let call = if first {
            if self.reassembly.is_some() {
                return Err(RpcError::Protocol("new request while another is being reassembled"));
            }
            if req.stub.len() > MAX_REQUEST_LEN {
                return Err(RpcError::RequestTooLarge(req.stub.len()));
            }
            Reassembly { call_id: hdr.call_id, context_id: req.context_id, opnum: req.opnum, stub: req.stub.to_vec() }
        } else {
            let Some(mut r) = self.reassembly.take() else {
                return Err(RpcError::Protocol("request fragment without a first fragment"));
            };
            if r.call_id != hdr.call_id {
                return Err(RpcError::Protocol("request fragment of another call"));
            }
            let len = r.stub.len().saturating_add(req.stub.len());
            if len > MAX_REQUEST_LEN {
                return Err(RpcError::RequestTooLarge(len));
            }
            r.stub.extend_from_slice(req.stub);
            r
        };
        if !last {
            self.reassembly = Some(call);
            return Ok(());
        }
        if !assoc.contexts.contains(&call.context_id) {
            return self.fault(call.call_id, call.context_id, fault::UNK_IF);
        }
        match self.kind.call(call.opnum, &call.stub, backend, self.caller) {
            Ok(stub) => {
                self.respond(call.call_id, call.context_id, &stub, frag);
                Ok(())
            }
            Err(FaultStatus(status)) => self.fault(call.call_id, call.context_id, status),
        }
    }

    /// Queues a response stub, split into fragments of at most `frag` bytes
    /// ([C706 12.6.4.10]; alloc_hint is the stub bytes from this fragment on).
    fn respond(&mut self, call_id: u32, context_id: u16, stub: &[u8], frag: u16) {
        let chunk = (usize::from(frag) - RESPONSE_HEADER_LEN) & !7;
        let mut offset = 0;
        loop {
            let end = stub.len().min(offset + chunk);
            let mut flags = 0;
            if offset == 0 {
                flags |= pfc::FIRST_FRAG;
            }
            if end == stub.len() {
                flags |= pfc::LAST_FRAG;
            }
            let resp = Response {
                alloc_hint: u32::try_from(stub.len() - offset).unwrap_or(u32::MAX),
                context_id,
                stub: &stub[offset..end],
            };
            self.push(|out| resp.encode(flags, call_id, out));
            offset = end;
            if offset == stub.len() {
                break;
            }
        }
    }

    /// Queues a fault; the pipe goes on.
    fn fault(&mut self, call_id: u32, context_id: u16, status: u32) -> Result<(), RpcError> {
        self.push(|out| encode_fault(call_id, context_id, status, out));
        Ok(())
    }

    /// Queues a bind_nak; the pipe goes on.
    fn bind_nak(&mut self, call_id: u32, reason: u16) -> Result<(), RpcError> {
        self.push(|out| encode_bind_nak(call_id, reason, out));
        Ok(())
    }

    fn push(&mut self, encode: impl FnOnce(&mut BytesMut)) {
        let mut out = BytesMut::new();
        encode(&mut out);
        self.pending += out.len();
        self.output.push_back(out.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::ndr::NdrWriter;
    use crate::rpc::pdu::{ContextElem, Uuid, NDR64, SRVSVC, WKSSVC};
    use crate::rpc::srvsvc::tests::{Backend, Dec};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// (request, Samba's response) pairs from testdata/samba-srvsvc.txt.
    fn captures() -> Vec<(Vec<u8>, Vec<u8>)> {
        let text = include_str!("testdata/samba-srvsvc.txt");
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
        lines
            .chunks(2)
            .map(|p| {
                assert!(p[0].starts_with("C>S") && p[1].starts_with("S>C"));
                (hex(p[0].rsplit(' ').next().unwrap()), hex(p[1].rsplit(' ').next().unwrap()))
            })
            .collect()
    }

    /// Compares two PDUs word by word (from `from`), taking any two
    /// referent ids (0x0002xxxx) as equal: Samba numbers them from another start.
    fn same_modulo_referents(ours: &[u8], theirs: &[u8], from: usize) -> Result<(), String> {
        if ours.len() != theirs.len() {
            return Err(format!("length {} != {}", ours.len(), theirs.len()));
        }
        if ours[..from] != theirs[..from] {
            return Err("header differs".into());
        }
        for (i, (a, b)) in ours[from..].chunks(4).zip(theirs[from..].chunks(4)).enumerate() {
            if a == b {
                continue;
            }
            let referent = |c: &[u8]| c.len() == 4 && c[2] == 2 && c[3] == 0;
            if !(referent(a) && referent(b)) {
                return Err(format!("stub word {i} (offset {:#x}): {a:02x?} != {b:02x?}", from + i * 4));
            }
        }
        Ok(())
    }

    fn frames(pipe: &mut Pipe) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(m) = pipe.read(usize::MAX) {
            v.push(m);
        }
        v
    }

    fn bind_pdu(max_recv: u16, contexts: Vec<ContextElem>) -> Vec<u8> {
        let mut out = BytesMut::new();
        Bind { max_xmit_frag: 4280, max_recv_frag: max_recv, assoc_group_id: 0, contexts }.encode(ptype::BIND, 1, &mut out);
        out.to_vec()
    }

    fn ctx(id: u16, abs: SyntaxId, ts: SyntaxId) -> ContextElem {
        ContextElem { context_id: id, abstract_syntax: abs, transfer_syntaxes: vec![ts] }
    }

    fn bound(kind: PipeKind, max_recv: u16) -> Pipe {
        let mut p = Pipe::new(kind);
        p.write(&bind_pdu(max_recv, vec![ctx(0, kind.interface(), NDR20)]), &Backend).unwrap();
        let ack = p.read(usize::MAX).unwrap();
        assert_eq!(ack[2], ptype::BIND_ACK);
        p
    }

    fn request_pdu(flags: u8, call_id: u32, context_id: u16, opnum: u16, stub: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        Request { alloc_hint: stub.len() as u32, context_id, opnum, object: None, stub }.encode(flags, call_id, &mut out);
        out.to_vec()
    }

    fn enum_all_stub(level: u32) -> Vec<u8> {
        let mut w = NdrWriter::new();
        w.pointer();
        w.string("127.0.0.1");
        w.u32(level);
        w.u32(level);
        w.pointer();
        w.u32(0);
        w.null();
        w.u32(0xFFFF_FFFF);
        w.pointer();
        w.u32(0);
        w.into_bytes()
    }

    /// Joins response fragments into the stub, checking headers on the way.
    fn join_response(frags: &[Vec<u8>], call_id: u32, max: usize) -> Vec<u8> {
        let mut stub = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert!(f.len() <= max, "fragment {i} is {} > {max}", f.len());
            let (body, h) = Header::parse(f).unwrap();
            assert_eq!(usize::from(h.frag_length), f.len());
            assert_eq!((h.ptype, h.call_id, h.auth_length), (ptype::RESPONSE, call_id, 0));
            assert_eq!(h.pfc_flags & pfc::FIRST_FRAG != 0, i == 0);
            assert_eq!(h.pfc_flags & pfc::LAST_FRAG != 0, i == frags.len() - 1);
            let r = Response::parse(body).unwrap();
            stub.extend_from_slice(r.stub);
        }
        stub
    }

    #[test]
    fn answers_smbclient_like_samba() {
        let caps = captures();
        // Exchanges: smbclient -L (bind, NetShareEnumAll 1) then rpcclient, one bind per command.
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        for (n, (req, theirs)) in caps.iter().enumerate() {
            if req[2] == ptype::BIND {
                pipe = Pipe::new(PipeKind::Srvsvc);
            }
            let ours = pipe.transceive(req, 4280, &Backend).unwrap();
            assert!(!pipe.more_pending() && !pipe.has_output());
            let mut theirs = theirs.clone();
            if req[2] == ptype::BIND {
                // Samba writes the secondary address in lower case and picks its own group id.
                theirs[20..24].copy_from_slice(&ours[20..24]);
                theirs[26..32].copy_from_slice(b"\\PIPE\\");
                assert_eq!(ours, theirs, "bind_ack of exchange {n}");
                continue;
            }
            let stub = &req[24..];
            if req[22] == 16 && stub.len() >= 0x3c && &stub[0x30..0x3c] == b"n\0o\0s\0u\0c\0h\0" {
                // Samba answers WERR_INVALID_NAME; Windows, and we, NERR_NetNameNotFound.
                let l = theirs.len();
                theirs[l - 4..].copy_from_slice(&srvsvc::WERR_NET_NAME_NOT_FOUND.to_le_bytes());
            }
            if req[22] == 15 && u32::from_le_bytes(stub[0x24..0x28].try_into().unwrap()) == 2 {
                // Samba counts one use of "data" at level 502 but none at level 2.
                theirs[24 + 0x2c] = 1;
            }
            if req[22] == 16 && u32::from_le_bytes(stub[0x3c..0x40].try_into().unwrap()) == 2 {
                theirs[24 + 0x1c] = 1;
            }
            if let Err(e) = same_modulo_referents(&ours, &theirs, 24) {
                panic!("exchange {n} (opnum {}): {e}", req[22]);
            }
        }
    }

    #[test]
    fn captured_enum_all_decodes_to_the_shares() {
        let caps = captures();
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        pipe.write(&caps[0].0, &Backend).unwrap();
        let ack = pipe.read(4280).unwrap();
        let (body, h) = Header::parse(&ack).unwrap();
        assert_eq!((h.ptype, h.call_id), (ptype::BIND_ACK, 1));
        let (_, ack) = BindAck::parse(body).unwrap();
        assert_eq!(ack.sec_addr, "\\PIPE\\srvsvc");
        assert_eq!((ack.max_xmit_frag, ack.max_recv_frag), (4280, 4280));
        assert_eq!(ack.results, [ContextResult { result: 0, reason: 0, transfer_syntax: NDR20 }]);
        pipe.write(&caps[1].0, &Backend).unwrap();
        let frags = frames(&mut pipe);
        let stub = join_response(&frags, 2, 4280);
        let mut d = Dec::new(&stub);
        assert_eq!((d.u32(), d.u32()), (1, 1));
        assert!(d.ptr());
        assert_eq!(d.u32(), 2);
        assert!(d.ptr());
        assert_eq!(d.u32(), 2);
        let mut fixed = vec![];
        for _ in 0..2 {
            assert!(d.ptr());
            fixed.push(d.u32());
            assert!(d.ptr());
        }
        assert_eq!(fixed, [0, 0x8000_0003]);
        assert_eq!((d.string(), d.string()), ("data".into(), "".into()));
        assert_eq!((d.string(), d.string()), ("IPC$".into(), "IPC Service (Samba 4.17.12-Debian)".into()));
        assert_eq!(d.u32(), 2);
        assert!(d.ptr());
        assert_eq!((d.u32(), d.u32()), (0, 0));
        d.end();
    }

    #[test]
    fn large_response_is_fragmented_at_max_recv_frag() {
        for max in [32u16, 64, 100, 1432, 4280, 5840] {
            let mut pipe = bound(PipeKind::Srvsvc, max);
            let stub = enum_all_stub(502);
            pipe.write(&request_pdu(3, 9, 0, 15, &stub), &Backend).unwrap();
            let frags = frames(&mut pipe);
            let limit = usize::from(max.min(4280));
            let joined = join_response(&frags, 9, limit);
            let whole = srvsvc::call(15, &stub, &Backend).unwrap();
            assert_eq!(joined, whole, "max {max}");
            // alloc_hint counts the stub bytes from each fragment on.
            let mut left = whole.len();
            for f in &frags {
                let r = Response::parse(&f[HEADER_LEN..]).unwrap();
                assert_eq!(r.alloc_hint as usize, left);
                left -= r.stub.len();
            }
            if limit < whole.len() {
                assert!(frags.len() > 1);
            }
        }
    }

    #[test]
    fn fragmented_request_is_reassembled() {
        let stub = enum_all_stub(1);
        let whole = srvsvc::call(15, &stub, &Backend).unwrap();
        let mut pipe = bound(PipeKind::Srvsvc, 4280);
        let (a, rest) = stub.split_at(10);
        let (b, c) = rest.split_at(17);
        pipe.write(&request_pdu(pfc::FIRST_FRAG, 5, 0, 15, a), &Backend).unwrap();
        assert!(!pipe.has_output());
        pipe.write(&request_pdu(0, 5, 0, 15, b), &Backend).unwrap();
        assert!(!pipe.has_output());
        pipe.write(&request_pdu(pfc::LAST_FRAG, 5, 0, 15, c), &Backend).unwrap();
        assert_eq!(join_response(&frames(&mut pipe), 5, 4280), whole);
    }

    #[test]
    fn byte_by_byte_and_batched_writes() {
        let caps = captures();
        let mut all = caps[0].0.clone();
        all.extend_from_slice(&caps[1].0);
        let mut one = Pipe::new(PipeKind::Srvsvc);
        one.write(&all, &Backend).unwrap();
        let expected = frames(&mut one);
        assert_eq!(expected.len(), 2);
        let mut split = Pipe::new(PipeKind::Srvsvc);
        for b in &all {
            split.write(std::slice::from_ref(b), &Backend).unwrap();
        }
        assert_eq!(frames(&mut split), expected);
    }

    #[test]
    fn bind_negotiation_per_context() {
        let btfn = SyntaxId { uuid: Uuid::new(0x6CB7_1C2C, 0x9812, 0x4540, [3, 0, 0, 0, 0, 0, 0, 0]), version: 1 };
        let unknown = SyntaxId { uuid: Uuid([7; 16]), version: 1 };
        let pdu = bind_pdu(
            5840,
            vec![
                ctx(0, SRVSVC, NDR20),
                ctx(1, SRVSVC, NDR64),
                ctx(2, SRVSVC, btfn),
                ctx(3, unknown, NDR20),
                ctx(4, SyntaxId { version: 2, ..SRVSVC }, NDR20),
            ],
        );
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        pipe.write(&pdu, &Backend).unwrap();
        let out = pipe.read(usize::MAX).unwrap();
        let (body, h) = Header::parse(&out).unwrap();
        assert_eq!(h.ptype, ptype::BIND_ACK);
        let (_, ack) = BindAck::parse(body).unwrap();
        assert_eq!((ack.max_xmit_frag, ack.max_recv_frag), (4280, 4280));
        let r: Vec<(u16, u16, SyntaxId)> = ack.results.iter().map(|r| (r.result, r.reason, r.transfer_syntax)).collect();
        assert_eq!(
            r,
            [
                (0, 0, NDR20),
                (2, 2, SyntaxId::ZERO),
                (3, 2, SyntaxId::ZERO), // negotiate_ack, KeepConnectionOnOrphan only
                (2, 1, SyntaxId::ZERO),
                (2, 1, SyntaxId::ZERO),
            ]
        );
        // Only context 0 is usable.
        pipe.write(&request_pdu(3, 2, 1, 15, &enum_all_stub(1)), &Backend).unwrap();
        let f = pipe.read(usize::MAX).unwrap();
        assert_eq!(f[2], ptype::FAULT);
        assert_eq!(&f[24..28], &fault::UNK_IF.to_le_bytes());
        pipe.write(&request_pdu(3, 3, 0, 15, &enum_all_stub(1)), &Backend).unwrap();
        assert_eq!(pipe.read(usize::MAX).unwrap()[2], ptype::RESPONSE);
    }

    #[test]
    fn alter_context_adds_a_context() {
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        pipe.write(&bind_pdu(4280, vec![ctx(0, SRVSVC, NDR64)]), &Backend).unwrap();
        let _ = pipe.read(usize::MAX).unwrap();
        let mut out = BytesMut::new();
        Bind { max_xmit_frag: 4280, max_recv_frag: 4280, assoc_group_id: ASSOC_GROUP_ID, contexts: vec![ctx(1, SRVSVC, NDR20)] }
            .encode(ptype::ALTER_CONTEXT, 2, &mut out);
        pipe.write(&out, &Backend).unwrap();
        let resp = pipe.read(usize::MAX).unwrap();
        let (body, h) = Header::parse(&resp).unwrap();
        assert_eq!(h.ptype, ptype::ALTER_CONTEXT_RESP);
        let (_, ack) = BindAck::parse(body).unwrap();
        assert_eq!(ack.sec_addr, "");
        assert_eq!(ack.results[0].result, result::ACCEPTANCE);
        pipe.write(&request_pdu(3, 3, 1, 21, &[0, 0, 0, 0, 101, 0, 0, 0]), &Backend).unwrap();
        assert_eq!(pipe.read(usize::MAX).unwrap()[2], ptype::RESPONSE);
    }

    #[test]
    fn faults_and_naks() {
        // Unknown opnum.
        let mut pipe = bound(PipeKind::Srvsvc, 4280);
        pipe.write(&request_pdu(3, 4, 0, 99, &[]), &Backend).unwrap();
        let f = pipe.read(usize::MAX).unwrap();
        assert_eq!((f[2], f.len(), f[3]), (ptype::FAULT, 32, 0x23));
        assert_eq!(&f[24..28], &0x1C01_0002u32.to_le_bytes());
        assert_eq!(&f[12..16], &4u32.to_le_bytes());
        // Garbage stub.
        pipe.write(&request_pdu(3, 5, 0, 15, &[1, 2, 3]), &Backend).unwrap();
        let f = pipe.read(usize::MAX).unwrap();
        assert_eq!(&f[24..28], &fault::NDR.to_le_bytes());
        // A request with an auth verifier.
        let mut req = request_pdu(3, 6, 0, 15, &[0; 40]);
        req[10] = 16; // auth_length
        pipe.write(&req, &Backend).unwrap();
        let f = pipe.read(usize::MAX).unwrap();
        assert_eq!(f[2], ptype::FAULT);
        // A second bind.
        pipe.write(&bind_pdu(4280, vec![ctx(0, SRVSVC, NDR20)]), &Backend).unwrap();
        assert_eq!(pipe.read(usize::MAX).unwrap()[2], ptype::BIND_NAK);
        // The pipe still works.
        pipe.write(&request_pdu(3, 7, 0, 15, &enum_all_stub(0)), &Backend).unwrap();
        assert_eq!(pipe.read(usize::MAX).unwrap()[2], ptype::RESPONSE);

        // A bind with authentication.
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        let mut b = bind_pdu(4280, vec![ctx(0, SRVSVC, NDR20)]);
        b.extend_from_slice(&[0x0a, 0x02, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        let len = b.len() as u16;
        b[8..10].copy_from_slice(&len.to_le_bytes());
        b[10..12].copy_from_slice(&4u16.to_le_bytes());
        pipe.write(&b, &Backend).unwrap();
        let nak = pipe.read(usize::MAX).unwrap();
        assert_eq!(nak[2], ptype::BIND_NAK);
        assert_eq!(&nak[16..18], &reject::AUTHENTICATION_TYPE_NOT_RECOGNIZED.to_le_bytes());

        // A request before any bind.
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        pipe.write(&request_pdu(3, 1, 0, 15, &enum_all_stub(1)), &Backend).unwrap();
        let f = pipe.read(usize::MAX).unwrap();
        assert_eq!(&f[24..28], &fault::PROTO_ERROR.to_le_bytes());

        // A bind with a tiny max_recv_frag, or without contexts.
        for pdu in [bind_pdu(16, vec![ctx(0, SRVSVC, NDR20)]), bind_pdu(4280, vec![])] {
            let mut pipe = Pipe::new(PipeKind::Srvsvc);
            pipe.write(&pdu, &Backend).unwrap();
            assert_eq!(pipe.read(usize::MAX).unwrap()[2], ptype::BIND_NAK);
        }
    }

    #[test]
    fn protocol_errors_disconnect() {
        let good = bind_pdu(4280, vec![ctx(0, SRVSVC, NDR20)]);
        type Check = fn(&RpcError) -> bool;
        let mut cases: Vec<(Vec<u8>, Check)> = Vec::new();
        let mut v = good.clone();
        v[0] = 4;
        cases.push((v, |e| matches!(e, RpcError::Malformed(_))));
        let mut v = good.clone();
        v[4] = 0;
        cases.push((v, |e| matches!(e, RpcError::UnsupportedDataRepresentation(_))));
        let mut v = good.clone();
        v[8] = 8;
        v[9] = 0;
        cases.push((v, |e| matches!(e, RpcError::Protocol(_))));
        let mut v = good.clone();
        v[2] = ptype::RESPONSE;
        cases.push((v, |e| matches!(e, RpcError::Protocol(_))));
        for (pdu, is) in cases {
            let mut pipe = Pipe::new(PipeKind::Srvsvc);
            let e = pipe.write(&pdu, &Backend).unwrap_err();
            assert!(is(&e), "{e:?}");
            assert_eq!(pipe.write(&good, &Backend), Err(RpcError::Disconnected));
            assert_eq!(pipe.transceive(&good, 100, &Backend), Err(RpcError::Disconnected));
            assert!(pipe.read(100).is_none());
        }
        // A fragment out of order.
        let mut pipe = bound(PipeKind::Srvsvc, 4280);
        assert!(matches!(pipe.write(&request_pdu(pfc::LAST_FRAG, 3, 0, 15, &[]), &Backend), Err(RpcError::Protocol(_))));
        // A body too short for a request.
        let mut pipe = bound(PipeKind::Srvsvc, 4280);
        let short = request_pdu(3, 3, 0, 15, &[]);
        let mut cut = short[..20].to_vec();
        cut[8] = 20;
        assert!(matches!(pipe.write(&cut, &Backend), Err(RpcError::Malformed(_))));
    }

    #[test]
    fn reassembly_is_bounded() {
        let mut pipe = bound(PipeKind::Srvsvc, 4280);
        let chunk = vec![0u8; 60_000];
        pipe.write(&request_pdu(pfc::FIRST_FRAG, 3, 0, 15, &chunk), &Backend).unwrap();
        let mut err = None;
        for _ in 0..20 {
            if let Err(e) = pipe.write(&request_pdu(0, 3, 0, 15, &chunk), &Backend) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(RpcError::RequestTooLarge(n)) if n > MAX_REQUEST_LEN));
    }

    #[test]
    fn unread_output_is_bounded() {
        let mut pipe = bound(PipeKind::Srvsvc, 4280);
        let req = request_pdu(3, 2, 0, 15, &enum_all_stub(502));
        let mut batch = Vec::new();
        for _ in 0..200 {
            batch.extend_from_slice(&req);
        }
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = pipe.write(&batch, &Backend) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(RpcError::OutputFull(n)) if n > MAX_PENDING_OUTPUT));
    }

    /// Every single-byte corruption of the captured exchanges, and random
    /// garbage, must end in an answer or a typed error: never a panic.
    #[test]
    fn corrupted_input_never_panics() {
        let caps = captures();
        let mut session = Vec::new();
        for (req, _) in caps.iter().take(2) {
            session.extend_from_slice(req);
        }
        let mut enum502 = caps[0].0.clone();
        enum502.extend_from_slice(&request_pdu(3, 2, 0, 15, &enum_all_stub(502)));
        for base in [&session, &enum502] {
            for i in 0..base.len() {
                for v in [0x00, 0xFF, base[i] ^ 0x01, base[i] ^ 0x80, base[i].wrapping_add(1)] {
                    let mut m = base.clone();
                    m[i] = v;
                    let mut pipe = Pipe::new(PipeKind::Srvsvc);
                    let _ = pipe.write(&m, &Backend);
                    while pipe.read(1000).is_some() {}
                }
            }
        }
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            let mut pipe = Pipe::new(PipeKind::Srvsvc);
            let _ = pipe.write(&caps[0].0, &Backend);
            let _ = pipe.read(usize::MAX);
            let mut junk = request_pdu(3, 2, 0, 15, &[]);
            for _ in 0..(x % 300) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                junk.push((x >> 16) as u8);
            }
            let len = junk.len() as u16;
            junk[8..10].copy_from_slice(&len.to_le_bytes());
            junk[22] = [15, 16, 21, 36, 99][(x % 5) as usize];
            let _ = pipe.write(&junk, &Backend);
            while pipe.read(1000).is_some() {}
        }
    }

    #[test]
    fn truncated_pdus_wait_for_more() {
        let caps = captures();
        for (req, _) in caps.iter().take(2) {
            for n in 0..req.len() {
                let mut pipe = Pipe::new(PipeKind::Srvsvc);
                pipe.write(&req[..n], &Backend).unwrap();
                assert!(!pipe.has_output(), "answered a PDU cut at {n}");
            }
        }
    }

    #[test]
    fn partial_reads_and_transceive() {
        let caps = captures();
        let mut pipe = Pipe::new(PipeKind::Srvsvc);
        let ack = pipe.transceive(&caps[0].0, 10, &Backend).unwrap();
        assert_eq!(ack.len(), 10);
        assert!(pipe.more_pending());
        assert_eq!(pipe.transceive(&caps[1].0, 4280, &Backend), Err(RpcError::PipeBusy));
        let rest = pipe.read(4280).unwrap();
        assert_eq!(10 + rest.len(), 68);
        assert!(!pipe.more_pending() && !pipe.has_output());
        assert!(pipe.read(4280).is_none());
        // Messages are never merged: a big read returns one fragment.
        let mut pipe = bound(PipeKind::Srvsvc, 64);
        let first = pipe.transceive(&request_pdu(3, 2, 0, 15, &enum_all_stub(1)), 4280, &Backend).unwrap();
        assert_eq!(first.len(), 64);
        assert!(!pipe.more_pending());
        assert!(pipe.has_output());
    }

    #[test]
    fn wkssvc_pipe() {
        let mut pipe = Pipe::new(PipeKind::Wkssvc);
        pipe.write(&bind_pdu(4280, vec![ctx(0, SRVSVC, NDR20), ctx(1, WKSSVC, NDR20)]), &Backend).unwrap();
        let out = pipe.read(usize::MAX).unwrap();
        let (_, ack) = BindAck::parse(&out[HEADER_LEN..]).unwrap();
        assert_eq!(ack.sec_addr, "\\PIPE\\wkssvc");
        assert_eq!((ack.results[0].result, ack.results[1].result), (2, 0));
        let mut w = NdrWriter::new();
        w.null();
        w.u32(100);
        pipe.write(&request_pdu(3, 2, 1, 0, &w.into_bytes()), &Backend).unwrap();
        let stub = join_response(&frames(&mut pipe), 2, 4280);
        assert_eq!(&stub[..4], &100u32.to_le_bytes());
    }

    #[test]
    fn pipe_names() {
        for n in ["srvsvc", "\\srvsvc", "\\PIPE\\srvsvc", "SRVSVC", "\\pipe\\SrvSvc", "PIPE\\srvsvc"] {
            assert_eq!(PipeKind::from_name(n), Some(PipeKind::Srvsvc), "{n}");
        }
        assert_eq!(PipeKind::from_name("\\PIPE\\wkssvc"), Some(PipeKind::Wkssvc));
        for n in ["", "\\", "lsarpc", "\\PIPE\\", "srvsvc2", "\\PIPE\\PIPE\\srvsvc", "pipé\\x"] {
            assert_eq!(PipeKind::from_name(n), None, "{n}");
        }
    }
}
