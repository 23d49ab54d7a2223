//! The bus's application messages and the signed envelope each travels in.

pub mod envelope;
pub mod limits;
pub mod messages;
