//! LOCK (not yet implemented).

use protocol::NtStatus;

use crate::pipeline::{Ctx, HResult};

pub fn handle(_ctx: &mut Ctx<'_>) -> HResult {
    Err(NtStatus::NOT_SUPPORTED)
}
