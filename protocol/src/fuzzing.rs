//! Shared by the fuzz target (`protocol/fuzz`) and the corpus test: run
//! every parser of the crate over one input. Parsers must return errors,
//! never panic.

use bytes::BytesMut;

use crate::msg::*;

/// Runs every parser over `data`, as a whole SMB2 message and as the
/// payloads the parsers take on their own.
pub fn parse_everything(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = crate::netbios::decode(&mut buf, 1 << 20) {}
    let _ = crate::header::Header::parse(data);
    for command in 0..=0x12u16 {
        if let Some(c) = crate::header::Command::from_u16(command) {
            let _ = crate::credit::payload(c, data).map(|p| p.credit_charge());
        }
    }
    let _ = negotiate::NegotiateRequest::parse(data);
    let _ = negotiate::NegotiateResponse::parse(data);
    let _ = negotiate::smb1_negotiate_offers_smb2(data);
    let _ = session_setup::SessionSetupRequest::parse(data);
    let _ = tree_connect::TreeConnectRequest::parse(data);
    let _ = create::CreateRequest::parse(data);
    let _ = close::CloseRequest::parse(data);
    let _ = flush::FlushRequest::parse(data);
    let _ = read::ReadRequest::parse(data);
    let _ = write::WriteRequest::parse(data);
    let _ = lock::LockRequest::parse(data);
    let _ = ioctl::IoctlRequest::parse(data);
    let _ = query_directory::QueryDirectoryRequest::parse(data);
    let _ = change_notify::ChangeNotifyRequest::parse(data);
    let _ = query_info::QueryInfoRequest::parse(data);
    let _ = set_info::SetInfoRequest::parse(data);
    let _ = oplock_break::OplockBreakRequest::parse(data);
    let _ = echo::EchoRequest::parse(data);
    let _ = logoff::LogoffRequest::parse(data);
    let _ = tree_disconnect::TreeDisconnectRequest::parse(data);
    let _ = create_context::parse_request_contexts(data);
    let _ = ioctl::ValidateNegotiateInfoRequest::parse(data);
    let _ = ioctl::SrvCopychunkCopy::parse(data);
    let _ = crate::auth::spnego::parse_client_token(data);
    let _ = crate::crypto::transform::TransformHeader::parse(data);
    let mut ctx = crate::auth::ntlm::ServerContext::new(Default::default(), [1; 8], 0);
    let _ = ctx.challenge(data);
    let _ = ctx.authenticate(data, &|_, _| Some([0; 16]));
    for class in 0..=80u8 {
        let _ = crate::fscc::set_info::parse_set_file_info(class, data);
        let _ = crate::fscc::set_info::parse_set_fs_info(class, data);
    }
    let _ = crate::fscc::security::SecurityDescriptor::parse(data);
    let _ = crate::fscc::ea::parse_full_ea_list(data);
}
