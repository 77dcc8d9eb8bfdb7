//! Object encryption: the format (pure size/offset arithmetic) and the streams.

pub mod format;
pub mod stream;
