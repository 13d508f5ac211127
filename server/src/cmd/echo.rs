//! ECHO ([MS-SMB2] 3.3.5.19).

use bytes::BytesMut;
use protocol::msg::echo::{EchoRequest, EchoResponse};
use protocol::NtStatus;

use crate::handler::{Ctx, HResult, Resp};

pub fn handle(ctx: &mut Ctx<'_>) -> HResult {
    EchoRequest::parse(ctx.msg).map_err(|_| NtStatus::INVALID_PARAMETER)?;
    let mut body = BytesMut::with_capacity(4);
    EchoResponse.encode(&mut body);
    Ok(Resp::ok(body))
}
