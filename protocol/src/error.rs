//! Errors of the codec: the peer sent something we cannot parse.

use thiserror::Error;

/// A message could not be parsed. It always means "the peer sent garbage";
/// the server turns it into an NTSTATUS (usually `STATUS_INVALID_PARAMETER`)
/// or a closed connection. It never means a local failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// The input ended before the structure did.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field holds a value the specification does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// An offset/length pair points outside the message.
    #[error("{0} points outside the message")]
    OutOfBounds(&'static str),
}

impl<I> From<nom::Err<nom::error::Error<I>>> for ParseError {
    fn from(_: nom::Err<nom::error::Error<I>>) -> Self {
        ParseError::Truncated("structure")
    }
}

/// Result of a parse.
pub type ParseResult<T> = Result<T, ParseError>;
