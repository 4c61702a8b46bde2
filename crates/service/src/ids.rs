//! Public ids for keyspaces, owners and audit events: a type prefix and 16 base58
//! characters from the OS CSPRNG (~94 bits), e.g. `ks_3mJr7AoUXx2Wqd5Q`. Key ids are
//! the key format's own 12 characters.

use anyhow::Context as _;

const ID_CHARS: usize = 16;

pub fn new_id(kind: &str) -> anyhow::Result<String> {
    let mut buf = [0u8; ID_CHARS];
    keyhaven_core::random::fill_base58(&mut buf).context("reading the OS random source")?;
    let chars = std::str::from_utf8(&buf).context("base58 is ASCII")?;
    Ok(format!("{kind}_{chars}"))
}

/// A plausible id of `kind` (used to reject garbage path parameters early, before any
/// storage access; a plausible but unknown id is still a 404).
pub fn is_plausible(kind: &str, id: &str) -> bool {
    id.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|chars| {
            !chars.is_empty()
                && chars.len() <= 64
                && chars
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}
