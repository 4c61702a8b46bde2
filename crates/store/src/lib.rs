//! Keyhaven's persistent state. For now: the data directory and the pepper file that
//! lives in it. The key store itself (the `Store` trait and its engines) comes next.

pub mod pepper_file;
