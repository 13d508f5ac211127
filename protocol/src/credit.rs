//! Credits and message ids, server side: the CreditCharge arithmetic
//! ([MS-SMB2] 3.1.5.2), the payload sizes a request's charge must cover
//! (3.3.5.2.5), and the command sequence window every MessageId is checked
//! against (3.3.1.1, 3.3.1.2, 3.3.5.2.3, 3.3.4.1.2).
//!
//! Plain state and arithmetic: the server's pipeline owns one
//! [`SequenceWindow`] per connection and asks it about every request before
//! anything runs.

use crate::header::{Command, HEADER_LEN};

/// Bytes one credit pays for ([MS-SMB2] 3.1.5.2).
pub const CREDIT_SIZE: u32 = 65536;

/// The MessageId of unsolicited messages (oplock and lease break
/// notifications, [MS-SMB2] 2.2.1.2, 3.3.4.6). The window never grants it,
/// so a request that uses it is refused like any id never granted.
pub const UNSOLICITED_MESSAGE_ID: u64 = u64::MAX;

/// The CreditCharge an operation of `payload` bytes needs ([MS-SMB2]
/// 3.1.5.2): one credit per 64 KiB, at least one.
pub fn credit_charge(payload: u32) -> u32 {
    payload.max(1).div_ceil(CREDIT_SIZE)
}

/// The sizes [MS-SMB2] 3.1.5.2 charges a request for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Payload {
    /// Bytes the request carries (SendPayloadSize).
    pub send: u32,
    /// The largest answer it asks for (ExpectedResponsePayloadSize).
    pub response: u32,
}

impl Payload {
    /// The CreditCharge that covers this payload.
    pub fn credit_charge(&self) -> u32 {
        credit_charge(self.send.max(self.response))
    }
}

/// The payload sizes of a request whose charge depends on them: READ
/// (2.2.19 Length), WRITE (2.2.21 Length), IOCTL (2.2.31 InputCount,
/// MaxOutputResponse; 3.2.4.20), QUERY_DIRECTORY (2.2.33 FileNameLength,
/// OutputBufferLength), CHANGE_NOTIFY (2.2.35 OutputBufferLength),
/// QUERY_INFO (2.2.37 InputBufferLength, OutputBufferLength) and SET_INFO
/// (2.2.39 BufferLength). `msg` is the whole message, header included.
///
/// `None` for the other commands, or when the body is too short to hold
/// the fields (the command's own parser then refuses it).
pub fn payload(command: Command, msg: &[u8]) -> Option<Payload> {
    let body = msg.get(HEADER_LEN..)?;
    let u16_at = |at: usize| body.get(at..at + 2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]])));
    let u32_at = |at: usize| body.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    Some(match command {
        // { structure_size: u16 | padding: u8 | flags: u8 | length: u32 | ... }
        Command::Read => Payload { send: 0, response: u32_at(4)? },
        // { structure_size: u16 | data_offset: u16 | length: u32 | ... }
        Command::Write => Payload { send: u32_at(4)?, response: 0 },
        // { structure_size: u16 | _reserved: u16 | ctl_code: u32 | file_id: 16 |
        //   input_offset: u32 | input_count: u32 | max_input_response: u32 |
        //   output_offset: u32 | output_count: u32 | max_output_response: u32 | ... }
        Command::Ioctl => Payload { send: u32_at(28)?, response: u32_at(44)? },
        // { structure_size: u16 | class: u8 | flags: u8 | file_index: u32 | file_id: 16 |
        //   file_name_offset: u16 | file_name_length: u16 | output_buffer_length: u32 | ... }
        Command::QueryDirectory => Payload { send: u16_at(26)?, response: u32_at(28)? },
        // { structure_size: u16 | flags: u16 | output_buffer_length: u32 | ... }
        Command::ChangeNotify => Payload { send: 0, response: u32_at(4)? },
        // { structure_size: u16 | info_type: u8 | class: u8 | output_buffer_length: u32 |
        //   input_buffer_offset: u16 | _reserved: u16 | input_buffer_length: u32 | ... }
        Command::QueryInfo => Payload { send: u32_at(12)?, response: u32_at(4)? },
        // { structure_size: u16 | info_type: u8 | class: u8 | buffer_length: u32 | ... }
        Command::SetInfo => Payload { send: u32_at(4)?, response: 0 },
        _ => return None,
    })
}

/// Why a request's MessageId is refused ([MS-SMB2] 3.3.5.2.3): the server
/// then terminates the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceError {
    /// An id of the request was never granted (beyond the window, or
    /// 0xFFFFFFFFFFFFFFFF, which is reserved).
    NotGranted { message_id: u64, charge: u16 },
    /// An id of the request was already used (a replay, or a reused id).
    Used { message_id: u64, charge: u16 },
    /// The request charges more credits than the window can ever hold.
    ChargeTooLarge { charge: u16 },
}

impl std::fmt::Display for SequenceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SequenceError::NotGranted { message_id, charge } => {
                write!(f, "message id {message_id:#x} (charge {charge}) was never granted")
            }
            SequenceError::Used { message_id, charge } => {
                write!(f, "message id {message_id:#x} (charge {charge}) was already used")
            }
            SequenceError::ChargeTooLarge { charge } => write!(f, "credit charge {charge} exceeds the window"),
        }
    }
}

impl std::error::Error for SequenceError {}

/// Connection.CommandSequenceWindow ([MS-SMB2] 3.3.1.1, 3.3.1.7): the
/// MessageIds the client may use next.
///
/// The window is `[low, low + range)`: every id below `low` was used, every
/// id in it was granted, and a bitmap marks those in it already used. When
/// the id at `low` is used the window slides past every used id. The range
/// never exceeds `max` (the most credits outstanding, 3.3.1.2), so the
/// bitmap has a fixed size whatever the client does: an id left unused
/// holds the window back, and the client is granted no more credits than
/// fit above it (Windows' behaviour, smbtorture `smb2.credits.skipped_mid`).
#[derive(Debug, Clone)]
pub struct SequenceWindow {
    /// The lowest id not yet used.
    low: u64,
    /// Ids granted, from `low` on (used ones included).
    range: u32,
    /// Ids in the window already used.
    used: u32,
    /// The most the range may span.
    max: u32,
    /// Used ids in the window, bit `id % (64 * bits.len())`.
    bits: Box<[u64]>,
}

impl SequenceWindow {
    /// A new connection's window: { 0 } (one credit), spanning at most
    /// `max` ids (at least one).
    pub fn new(max: u16) -> SequenceWindow {
        let max = u32::from(max.max(1));
        let words = max.div_ceil(64) as usize;
        SequenceWindow { low: 0, range: 1, used: 0, max, bits: vec![0; words].into_boxed_slice() }
    }

    /// The most credits the client may hold.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Credits the client holds: ids granted and not yet used.
    pub fn available(&self) -> u32 {
        self.range - self.used
    }

    /// Uses the ids `message_id .. message_id + charge` (`charge` 0 counts
    /// as 1), or refuses them all ([MS-SMB2] 3.3.5.2.3). The caller passes
    /// charge 1 when the connection does not support multi-credit requests,
    /// and does not call this for CANCEL, which reuses the id of the request
    /// it cancels.
    pub fn consume(&mut self, message_id: u64, charge: u16) -> Result<(), SequenceError> {
        let n = u32::from(charge.max(1));
        if n > self.max {
            return Err(SequenceError::ChargeTooLarge { charge });
        }
        let end = self.low + u64::from(self.range);
        let in_window = message_id >= self.low && message_id.checked_add(u64::from(n)).is_some_and(|last| last <= end);
        if !in_window {
            return Err(SequenceError::NotGranted { message_id, charge });
        }
        if (0..u64::from(n)).any(|i| self.is_used(message_id + i)) {
            return Err(SequenceError::Used { message_id, charge });
        }
        for i in 0..u64::from(n) {
            self.flip(message_id + i);
        }
        self.used += n;
        while self.range > 0 && self.is_used(self.low) {
            self.flip(self.low);
            self.low += 1;
            self.range -= 1;
            self.used -= 1;
        }
        Ok(())
    }

    /// Grants credits in a response ([MS-SMB2] 3.3.1.2, 3.3.4.1.2): what
    /// the client asks for (0 counts as 1), as far as the window has room.
    /// Returns the number granted, which extends the window.
    ///
    /// The client is never left with none: when it holds none, the window
    /// is empty (every granted id was used, so it slid past them all) and
    /// has room for `max`, so at least one is granted.
    pub fn grant(&mut self, requested: u16) -> u16 {
        let want = u32::from(requested.max(1));
        let end = self.low + u64::from(self.range);
        // The ids never reach 0xFFFFFFFFFFFFFFFF: the sequence must not wrap
        // (3.3.1.1), and that id is the unsolicited messages'.
        let before_reserved = UNSOLICITED_MESSAGE_ID - end;
        let room = u64::from(self.max - self.range).min(before_reserved) as u32;
        let grant = want.min(room);
        self.range += grant;
        grant as u16
    }

    fn slot(&self, id: u64) -> (usize, u64) {
        let bit = id % (64 * self.bits.len() as u64);
        ((bit / 64) as usize, 1u64 << (bit % 64))
    }

    fn is_used(&self, id: u64) -> bool {
        let (w, m) = self.slot(id);
        self.bits[w] & m != 0
    }

    fn flip(&mut self, id: u64) {
        let (w, m) = self.slot(id);
        self.bits[w] ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn charge_is_one_credit_per_64k() {
        assert_eq!(credit_charge(0), 1);
        assert_eq!(credit_charge(1), 1);
        assert_eq!(credit_charge(65536), 1);
        assert_eq!(credit_charge(65537), 2);
        assert_eq!(credit_charge(8 << 20), 128);
        assert_eq!(credit_charge(u32::MAX), 65536);
        assert_eq!(Payload { send: 70000, response: 10 }.credit_charge(), 2);
        assert_eq!(Payload { send: 10, response: 200_000 }.credit_charge(), 4);
    }

    fn with_header(command: Command, body: &[u8]) -> Vec<u8> {
        let mut m = BytesMut::new();
        crate::Header { command: command as u16, ..Default::default() }.encode(&mut m);
        m.extend_from_slice(body);
        m.to_vec()
    }

    #[test]
    fn payload_reads_the_sizes_of_each_command() {
        use crate::msg::{self, FileId};
        let fid = FileId::default();
        let mut b = BytesMut::new();
        msg::read::ReadRequest {
            padding: 0x50,
            flags: 0,
            length: 300_000,
            offset: 7,
            file_id: fid,
            minimum_count: 0,
            channel: 0,
            remaining_bytes: 0,
            read_channel_info: &[],
        }
        .encode(&mut b);
        assert_eq!(payload(Command::Read, &with_header(Command::Read, &b)), Some(Payload { send: 0, response: 300_000 }));

        let data = vec![1u8; 70_000];
        let mut b = BytesMut::new();
        msg::write::WriteRequest { offset: 0, file_id: fid, channel: 0, remaining_bytes: 0, flags: 0, data: &data, write_channel_info: &[] }
            .encode(&mut b);
        assert_eq!(payload(Command::Write, &with_header(Command::Write, &b)), Some(Payload { send: 70_000, response: 0 }));

        let mut b = BytesMut::new();
        msg::ioctl::IoctlRequest {
            ctl_code: msg::ioctl::fsctl::FSCTL_PIPE_TRANSCEIVE,
            file_id: fid,
            input: &[0; 100],
            max_input_response: 5,
            output: &[],
            max_output_response: 1 << 20,
            flags: 1,
        }
        .encode(&mut b);
        assert_eq!(payload(Command::Ioctl, &with_header(Command::Ioctl, &b)), Some(Payload { send: 100, response: 1 << 20 }));

        let mut b = BytesMut::new();
        msg::query_directory::QueryDirectoryRequest {
            file_information_class: 0x25,
            flags: 0,
            file_index: 0,
            file_id: fid,
            output_buffer_length: 65536 * 3,
            file_name: "ab*".into(),
        }
        .encode(&mut b);
        let m = with_header(Command::QueryDirectory, &b);
        assert_eq!(payload(Command::QueryDirectory, &m), Some(Payload { send: 6, response: 65536 * 3 }));

        let mut b = BytesMut::new();
        msg::change_notify::ChangeNotifyRequest { flags: 0, output_buffer_length: 4096, file_id: fid, completion_filter: 1 }
            .encode(&mut b);
        assert_eq!(payload(Command::ChangeNotify, &with_header(Command::ChangeNotify, &b)), Some(Payload { send: 0, response: 4096 }));

        let mut b = BytesMut::new();
        msg::query_info::QueryInfoRequest {
            info_type: 1,
            file_info_class: 5,
            output_buffer_length: 1234,
            input_buffer: &[0; 24],
            additional_information: 0,
            flags: 0,
            file_id: fid,
        }
        .encode(&mut b);
        assert_eq!(payload(Command::QueryInfo, &with_header(Command::QueryInfo, &b)), Some(Payload { send: 24, response: 1234 }));

        let mut b = BytesMut::new();
        msg::set_info::SetInfoRequest { info_type: 1, file_info_class: 4, additional_information: 0, file_id: fid, buffer: &[0; 40] }
            .encode(&mut b);
        assert_eq!(payload(Command::SetInfo, &with_header(Command::SetInfo, &b)), Some(Payload { send: 40, response: 0 }));

        assert_eq!(payload(Command::Echo, &with_header(Command::Echo, &[4, 0, 0, 0])), None);
        assert_eq!(payload(Command::Read, &with_header(Command::Read, &[49, 0, 0])), None, "too short");
    }

    #[test]
    fn a_new_window_holds_id_zero_only() {
        let mut w = SequenceWindow::new(8192);
        assert_eq!(w.available(), 1);
        assert_eq!(w.consume(1, 1), Err(SequenceError::NotGranted { message_id: 1, charge: 1 }));
        w.consume(0, 0).unwrap();
        assert_eq!(w.available(), 0);
        assert_eq!(w.consume(0, 1), Err(SequenceError::NotGranted { message_id: 0, charge: 1 }), "below the window");
        assert_eq!(w.grant(3), 3);
        // { 1, 2, 3 }, in any order, each once.
        w.consume(3, 1).unwrap();
        assert_eq!(w.consume(3, 1), Err(SequenceError::Used { message_id: 3, charge: 1 }));
        w.consume(1, 1).unwrap();
        w.consume(2, 1).unwrap();
        assert_eq!(w.available(), 0);
        assert_eq!(w.consume(4, 1), Err(SequenceError::NotGranted { message_id: 4, charge: 1 }));
    }

    #[test]
    fn a_multi_credit_request_uses_a_range() {
        let mut w = SequenceWindow::new(8192);
        w.consume(0, 1).unwrap();
        assert_eq!(w.grant(200), 200);
        // 1..=200 granted: 128 from 1, then 72 from 129.
        w.consume(1, 128).unwrap();
        // Used, and the window slid past them.
        assert_eq!(w.consume(100, 1), Err(SequenceError::NotGranted { message_id: 100, charge: 1 }));
        assert_eq!(w.consume(129, 73), Err(SequenceError::NotGranted { message_id: 129, charge: 73 }));
        w.consume(129, 72).unwrap();
        assert_eq!(w.available(), 0);
        // A range that overlaps a used id is refused whole.
        assert_eq!(w.grant(10), 10);
        w.consume(205, 1).unwrap();
        assert_eq!(w.consume(201, 5), Err(SequenceError::Used { message_id: 201, charge: 5 }));
        w.consume(201, 4).unwrap();
        assert_eq!(w.available(), 5);
    }

    #[test]
    fn grants_stay_within_the_maximum_and_never_leave_the_client_with_none() {
        let mut w = SequenceWindow::new(16);
        w.consume(0, 1).unwrap();
        assert_eq!(w.grant(1000), 16);
        assert_eq!(w.grant(1000), 0, "the window is full");
        for id in 1..=16 {
            w.consume(id, 1).unwrap();
            assert!(w.available() + u32::from(w.grant(1)) >= 1);
        }
        // Asking for none still grants one.
        let mut w = SequenceWindow::new(16);
        w.consume(0, 1).unwrap();
        assert_eq!(w.grant(0), 1);
        assert_eq!(w.consume(1, 17), Err(SequenceError::ChargeTooLarge { charge: 17 }));
    }

    #[test]
    fn a_skipped_id_holds_the_window_back() {
        // smbtorture smb2.credits.skipped_mid: with id 1 unused, the client
        // can use the rest of the window but is granted no more until it
        // uses id 1; then the whole window opens again.
        let mut w = SequenceWindow::new(8);
        w.consume(0, 1).unwrap();
        assert_eq!(w.grant(8), 8); // 1..=8
        for id in 2..=8 {
            w.consume(id, 1).unwrap();
            assert_eq!(w.grant(1), 0);
        }
        assert_eq!(w.consume(9, 1), Err(SequenceError::NotGranted { message_id: 9, charge: 1 }));
        w.consume(1, 1).unwrap();
        assert_eq!(w.available(), 0);
        assert_eq!(w.grant(100), 8);
        w.consume(16, 1).unwrap();
        assert_eq!(w.consume(17, 1), Err(SequenceError::NotGranted { message_id: 17, charge: 1 }));
    }

    #[test]
    fn the_reserved_id_is_never_granted() {
        let mut w = SequenceWindow::new(8192);
        assert_eq!(w.consume(UNSOLICITED_MESSAGE_ID, 1), Err(SequenceError::NotGranted { message_id: u64::MAX, charge: 1 }));
        // Near the end of the id space: the window stops short of 2^64 - 1.
        w.low = u64::MAX - 3;
        w.range = 0;
        assert_eq!(w.grant(100), 3, "ids 2^64 - 4 to 2^64 - 2");
        w.consume(u64::MAX - 3, 2).unwrap();
        assert_eq!(w.consume(u64::MAX, 1), Err(SequenceError::NotGranted { message_id: u64::MAX, charge: 1 }));
        assert_eq!(w.consume(u64::MAX - 1, 2), Err(SequenceError::NotGranted { message_id: u64::MAX - 1, charge: 2 }));
    }

    #[test]
    fn random_use_matches_a_set_model() {
        // Against a plain set of granted-unused ids, over many steps.
        let mut w = SequenceWindow::new(64);
        let mut model = std::collections::BTreeSet::from([0u64]);
        let mut next = 1u64;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut low = 0u64;
        for _ in 0..20_000 {
            let base = model.iter().next().copied().unwrap_or(next).max(low.saturating_sub(2));
            let id = base + rnd() % 80;
            let charge = (rnd() % 3) as u16;
            let n = u64::from(charge.max(1));
            let ok = (id..id + n).all(|i| model.contains(&i));
            assert_eq!(w.consume(id, charge).is_ok(), ok, "id {id} charge {charge}");
            if ok {
                for i in id..id + n {
                    model.remove(&i);
                }
            }
            low = w.low;
            let g = w.grant((rnd() % 20) as u16);
            for _ in 0..g {
                model.insert(next);
                next += 1;
            }
            assert_eq!(w.available() as usize, model.len());
            assert!(w.range <= w.max);
            assert!(w.available() >= 1, "the client is never left with none");
        }
    }
}
