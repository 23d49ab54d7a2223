//! The Slave protocol's wire: frames, dispatch graphs and errors (DESIGN §2).

pub mod error;
pub mod frame;
pub mod graph;
