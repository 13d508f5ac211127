//! Where the consistency points of DESIGN.md attach.
//!
//! The pipeline calls these four methods, and nothing else in the server
//! writes consistency points: point 1 when a whole frame (request or
//! compound chain) has been read and before any byte of answer leaves,
//! point 2 before each element runs, point 3 when an element's response is
//! ready and before it is sent, point 4 once the response has been handed to
//! the socket (the NVRAM-backed implementation will wait for the TCP
//! acknowledgement there). Until the journal is wired in, [`NoJournal`]
//! records nothing.

/// Identifies one request (frame) in the journal; the same id `nvram/` stores.
pub use ids::OpId;

/// The consistency points.
pub trait Journal: Send + Sync {
    /// Point 1: the request bytes as read off the connection.
    fn pre_ack(&self, conn: u64, frame: &[u8]) -> OpId;
    /// Point 2: element `index` of the request is about to run.
    fn pre_command(&self, op: OpId, index: usize);
    /// Point 3: element `index` finished with this response.
    fn post_completion(&self, op: OpId, index: usize, response: &[u8]);
    /// Point 4: the answer to the request has left.
    fn post_reply_ack(&self, op: OpId);
    /// A frame the server sends on its own (an oplock or lease break
    /// notice) to connection `conn`: the op id under which the pipeline
    /// then records it at point 3 (`post_completion`, element 0) and point
    /// 4, as it does a response. It has no point 1 or 2: no request came.
    /// The default is [`OpId`] 0, no operation, for journals that keep no
    /// notices.
    fn unsolicited(&self, conn: u64) -> OpId {
        let _ = conn;
        OpId(0)
    }
}

/// A journal that keeps nothing.
pub struct NoJournal;

impl Journal for NoJournal {
    fn pre_ack(&self, _conn: u64, _frame: &[u8]) -> OpId {
        OpId(0)
    }
    fn pre_command(&self, _op: OpId, _index: usize) {}
    fn post_completion(&self, _op: OpId, _index: usize, _response: &[u8]) {}
    fn post_reply_ack(&self, _op: OpId) {}
}
