//! The named-pipe endpoint: byte buffering, PDU framing, fragment
//! reassembly, bind negotiation and dispatch to srvsvc or wkssvc.

use std::collections::VecDeque;

use super::{PipeBackend, RpcError};

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
    /// The last read left part of a message unread.
    partial: bool,
    disconnected: bool,
}

impl Pipe {
    pub fn new(kind: PipeKind) -> Self {
        Pipe { kind, input: Vec::new(), output: VecDeque::new(), read_offset: 0, partial: false, disconnected: false }
    }

    pub fn kind(&self) -> PipeKind {
        self.kind
    }

    /// Takes bytes the client WRITEs to the pipe.
    pub fn write(&mut self, data: &[u8], _backend: &dyn PipeBackend) -> Result<(), RpcError> {
        if self.disconnected {
            return Err(RpcError::Disconnected);
        }
        self.input.extend_from_slice(data);
        Ok(())
    }

    /// Takes up to `max` bytes of the next output message for a READ.
    pub fn read(&mut self, max: usize) -> Option<Vec<u8>> {
        let front = self.output.front()?;
        let end = front.len().min(self.read_offset.saturating_add(max));
        let chunk = front[self.read_offset..end].to_vec();
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

    /// Whether the last read left part of its message unread.
    pub fn more_pending(&self) -> bool {
        self.partial
    }

    /// Whether any output is waiting to be read.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// FSCTL_PIPE_TRANSCEIVE: write, then read up to `max_out`.
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
}
