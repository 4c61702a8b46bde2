//! The heart of Keyhaven: what a key looks like, how one is generated and parsed, and how
//! a secret becomes the verifier we store. Everything here is pure: no I/O (except the
//! operating system's random number generator, reached through [`random`]), no async,
//! no clock reads. Servers, stores and command-line tools build on these types.
//!
//! A key reads `acme_live_7Gx9QbWkP2mZ_<30-char secret><6-char checksum>`; see
//! [`format`] for the exact rules and [`verifier`] for how it is checked.

pub mod anomaly;
pub mod base58;
mod charset;
pub mod compat;
pub mod format;
pub mod ip_allowlist;
mod mac;
pub mod pepper;
pub mod permissions;
pub mod policy;
pub mod quota;
pub mod random;
pub mod ratelimit;
pub mod scan;
pub mod secret;
mod table;
pub mod token;
pub mod verifier;
pub mod wildcard;

pub use format::{
    GeneratedKey, KeyId, ParseError, ParsedKey, Prefix, PrefixError, SecretLength, generate,
    generate_with, parse, parse_bytes,
};
pub use ip_allowlist::{IpAllowlist, IpAllowlistError};
pub use pepper::{Pepper, PepperError, PepperSet, PepperVersion};
pub use policy::{KeyState, VerifyCode};
pub use random::RandomError;
pub use scan::{Found, find_keys};
pub use secret::SecretStr;
pub use verifier::{Verification, Verifier};
