//! A borrowed secret: the secret part of a key as it sits inside a request body, without
//! copying it. It cannot be printed or formatted; `Debug` says `<redacted>`. The owner of
//! the underlying buffer is responsible for wiping it (owned secrets use
//! [`secrecy::SecretString`]).

use std::fmt;

/// A view of secret text that never shows up in `Debug` output or format strings.
#[derive(Clone, Copy)]
pub struct SecretStr<'a>(&'a str);

impl<'a> SecretStr<'a> {
    /// Wraps text that is secret, so it cannot be printed by accident from here on.
    pub fn new(inner: &'a str) -> Self {
        Self(inner)
    }

    /// The secret itself. Call this only to hash or compare it.
    pub fn expose_secret(&self) -> &'a str {
        self.0
    }

    /// Length in bytes; safe to show.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretStr(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let s = SecretStr::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "SecretStr(<redacted>)");
        assert_eq!(format!("{s:#?}"), "SecretStr(<redacted>)");
    }
}
