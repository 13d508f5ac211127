//! nvram
