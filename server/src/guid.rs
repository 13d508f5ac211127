//! GUIDs as text (the server GUID's file, `duet status`): 32 hex digits,
//! byte by byte.

/// A GUID's 16 bytes as 32 hex digits, in wire order (the server GUID in
/// `duet status` and in its file beside the journal).
pub fn guid_text(guid: &[u8; 16]) -> String {
    guid.iter().map(|b| format!("{b:02x}")).collect()
}

/// A GUID written as [`guid_text`] writes it (32 hex digits), back.
pub fn parse_guid(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}
