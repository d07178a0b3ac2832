//! An in-memory Redis stand-in: RESP2 values and a keyspace answering
//! commands with redis-server's exact replies, sans-IO and clock-free.
pub mod persistence;
pub mod resp;
pub mod store;

pub use persistence::{Aof, Fsync};
pub use resp::{Resp, RespError, command};
pub use store::{Connection, Store};
