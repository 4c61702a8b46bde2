//! The key format: `<prefix>_<key id>_<secret><checksum>`.
//!
//! - prefix: 1–20 characters, `[a-z][a-z0-9_]*`, chosen per keyspace (`acme_live`).
//! - key id: 12 base58 characters, uniform random (~70 bits). Public; used for lookup.
//! - secret: 30 base58 characters from the OS CSPRNG (~175 bits), or 44 (~257 bits) for
//!   keyspaces that ask for 256-bit secrets ([`SecretLength::Long`]). Never stored.
//! - checksum: CRC-32 (IEEE) of the UTF-8 bytes of everything before it, written as a
//!   big-endian base58 number of exactly 6 digits, left-padded with `1`.
//!
//! A key is parsed from the right, so a prefix may itself contain `_`: the `_` before the
//! secret is the 37th character from the end (the 51st for a long secret). Only
//! `[A-Za-z0-9_]` appears, so a double-click selects the whole key.

use std::fmt;

use secrecy::SecretString;

use crate::base58;
use crate::charset;
use crate::random::{self, RandomError};
use crate::secret::SecretStr;

/// Length of the key id in characters.
pub const KEY_ID_LEN: usize = 12;
/// Length of the secret in characters.
pub const SECRET_LEN: usize = 30;
/// Length of a long (256-bit) secret in characters: 58^44 > 2^257.
pub const LONG_SECRET_LEN: usize = 44;
/// Length of the checksum in characters.
pub const CHECKSUM_LEN: usize = 6;
/// Longest allowed prefix.
pub const MAX_PREFIX_LEN: usize = 20;
/// Everything after the prefix: `_`, key id, `_`, secret, checksum.
const TAIL_LEN: usize = 1 + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;
/// The same with a long secret.
const LONG_TAIL_LEN: usize = TAIL_LEN - SECRET_LEN + LONG_SECRET_LEN;
/// Shortest possible key (one-character prefix).
pub const MIN_KEY_LEN: usize = 1 + TAIL_LEN;
/// Longest possible key (twenty-character prefix, long secret).
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + LONG_TAIL_LEN;

/// How long a key's secret is: a keyspace's choice, read back from each key's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretLength {
    /// 30 characters, ~175 bits.
    #[default]
    Standard,
    /// 44 characters, ~257 bits.
    Long,
}

impl SecretLength {
    pub const fn chars(self) -> usize {
        match self {
            Self::Standard => SECRET_LEN,
            Self::Long => LONG_SECRET_LEN,
        }
    }

    /// Everything after the prefix.
    const fn tail(self) -> usize {
        TAIL_LEN - SECRET_LEN + self.chars()
    }

    /// The secret's strength in whole bytes (`secret_bytes` in the API): 22 or 32.
    pub const fn bytes(self) -> u8 {
        match self {
            Self::Standard => 22,
            Self::Long => 32,
        }
    }

    /// The length for `secret_bytes` (22 or 32).
    pub const fn from_bytes(bytes: u8) -> Option<Self> {
        match bytes {
            22 => Some(Self::Standard),
            32 => Some(Self::Long),
            _ => None,
        }
    }

    /// Which layout `bytes` (of a key's length) has: long when the `_` before a long
    /// secret is there and the one before a standard secret is not. Anything else is read
    /// as standard (and then fails its checks as such).
    fn of(bytes: &[u8]) -> Self {
        let sep = |tail: usize| {
            bytes
                .len()
                .checked_sub(tail - KEY_ID_LEN - 1)
                .and_then(|at| bytes.get(at))
                == Some(&b'_')
        };
        if !sep(TAIL_LEN) && bytes.len() > LONG_TAIL_LEN && sep(LONG_TAIL_LEN) {
            Self::Long
        } else {
            Self::Standard
        }
    }
}

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix is empty")]
    Empty,
    #[error("prefix is {len} characters long; at most {MAX_PREFIX_LEN} are allowed")]
    TooLong { len: usize },
    #[error("prefix must start with a lowercase letter a-z")]
    BadStart,
    #[error(
        "prefix may contain only lowercase letters, digits and '_' (found {found:?} at position {position})"
    )]
    BadCharacter { position: usize, found: char },
}

/// A validated key prefix, such as `acme_live`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

impl Prefix {
    /// Validates `prefix` against `[a-z][a-z0-9_]*`, 1–20 characters.
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        validate_prefix(prefix)?;
        Ok(Self(prefix.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn validate_prefix(prefix: &str) -> Result<(), PrefixError> {
    let mut chars = prefix.char_indices();
    match chars.next() {
        None => return Err(PrefixError::Empty),
        Some((_, c)) if !c.is_ascii_lowercase() => return Err(PrefixError::BadStart),
        Some(_) => {}
    }
    if let Some((position, found)) =
        chars.find(|&(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        return Err(PrefixError::BadCharacter { position, found });
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(PrefixError::TooLong { len: prefix.len() });
    }
    Ok(())
}

/// The public identifier of a key: 12 base58 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id on its own (for example from a URL path).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == KEY_ID_LEN && s.bytes().all(base58::is_digit)).then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A freshly generated key. The plaintext exists only here, in a [`SecretString`] that is
/// wiped when dropped; show it to its owner once and then let it go.
pub struct GeneratedKey {
    key: SecretString,
    key_id: KeyId,
    prefix: Prefix,
    last4: [u8; 4],
}

impl GeneratedKey {
    /// The whole key, to hand to its owner once.
    pub fn key(&self) -> &SecretString {
        &self.key
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn prefix(&self) -> &Prefix {
        &self.prefix
    }

    /// The last four characters of the key (part of the checksum), safe to display.
    pub fn last4(&self) -> &str {
        std::str::from_utf8(&self.last4).unwrap_or("????")
    }

    /// A form that identifies the key without revealing it: `acme_live_7Gx9QbWkP2mZ_…aB3c`.
    pub fn display_form(&self) -> String {
        display_form(self.prefix.as_str(), self.key_id.as_str(), self.last4())
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("key", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `prefix_keyid_…last4`, the form dashboards and logs show.
pub fn display_form(prefix: &str, key_id: &str, last4: &str) -> String {
    format!("{prefix}_{key_id}_\u{2026}{last4}")
}

/// Generates a new key under `prefix`, drawing the key id and secret from the OS CSPRNG.
pub fn generate(prefix: &Prefix) -> Result<GeneratedKey, RandomError> {
    generate_with(prefix, SecretLength::Standard)
}

/// [`generate`], with a secret of `length`.
pub fn generate_with(prefix: &Prefix, length: SecretLength) -> Result<GeneratedKey, RandomError> {
    let mut id_and_secret = zeroize::Zeroizing::new([0u8; KEY_ID_LEN + LONG_SECRET_LEN]);
    let id_and_secret = id_and_secret
        .get_mut(..KEY_ID_LEN + length.chars())
        .unwrap_or_default();
    random::fill_base58(id_and_secret)?;
    let (id_bytes, secret_bytes) = id_and_secret.split_at(KEY_ID_LEN);

    let total = prefix.as_str().len() + length.tail();
    // Exact capacity: the string is never reallocated, so no stray copy of the secret is
    // left behind in freed memory, and converting to a boxed str does not copy either.
    let mut key = String::with_capacity(total);
    key.push_str(prefix.as_str());
    key.push('_');
    // Both slices are base58 characters (ASCII), so this never fails.
    key.push_str(std::str::from_utf8(id_bytes).unwrap_or_default());
    key.push('_');
    key.push_str(std::str::from_utf8(secret_bytes).unwrap_or_default());
    let checksum = checksum(key.as_bytes());
    key.push_str(std::str::from_utf8(&checksum).unwrap_or_default());
    debug_assert_eq!(key.len(), total);

    let mut last4 = [0u8; 4];
    last4.copy_from_slice(checksum.get(CHECKSUM_LEN - 4..).unwrap_or(b"????"));
    Ok(GeneratedKey {
        key_id: KeyId(std::str::from_utf8(id_bytes).unwrap_or_default().to_owned()),
        key: SecretString::from(key),
        prefix: prefix.clone(),
        last4,
    })
}

/// The 6-character checksum of `body` (everything before the checksum).
pub fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    // 58^6 > 2^32, so every CRC-32 fits; the fallback is unreachable.
    base58::encode_fixed::<CHECKSUM_LEN>(u64::from(crc32fast::hash(body)))
        .unwrap_or([base58::ALPHABET[0]; CHECKSUM_LEN])
}

/// Why a string is not a well-formed key. Each variant names the check that failed, in
/// the order they run: length, then characters and separators, then checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("a key is {MIN_KEY_LEN} to {MAX_KEY_LEN} characters long; this one has {len}")]
    Length { len: usize },
    #[error("character at position {position} is not allowed there")]
    Character { position: usize },
    #[error("expected '_' at position {position}")]
    Separator { position: usize },
    #[error("invalid prefix: {0}")]
    Prefix(PrefixError),
    #[error("checksum does not match: the key was mistyped or is not a real key")]
    Checksum,
}

impl ParseError {
    /// A short stable name for the failed check, for metrics and API error codes.
    pub fn check(&self) -> &'static str {
        match self {
            ParseError::Length { .. } => "length",
            ParseError::Character { .. } => "character",
            ParseError::Separator { .. } => "separator",
            ParseError::Prefix(_) => "prefix",
            ParseError::Checksum => "checksum",
        }
    }
}

/// A key split into its parts, borrowing from the input. Produced by [`parse`] once
/// length, alphabet and checksum have all been checked.
#[derive(Debug, Clone, Copy)]
pub struct ParsedKey<'a> {
    prefix: &'a str,
    key_id: &'a str,
    secret: SecretStr<'a>,
    checksum: &'a str,
}

impl<'a> ParsedKey<'a> {
    pub fn prefix(&self) -> &'a str {
        self.prefix
    }

    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    pub fn secret(&self) -> SecretStr<'a> {
        self.secret
    }

    /// The checksum characters; public (they carry no more than 32 bits of the key).
    pub fn checksum(&self) -> &'a str {
        self.checksum
    }

    /// `prefix_keyid_…last4`.
    pub fn display_form(&self) -> String {
        let last4 = self.checksum.get(CHECKSUM_LEN - 4..).unwrap_or("????");
        display_form(self.prefix, self.key_id, last4)
    }
}

/// Splits `input` into prefix, key id, secret and checksum after checking length,
/// characters, separators and prefix, but *not* the checksum. [`parse`] is what callers
/// want; this exists so tools such as `keyhaven inspect` can show the parts of a
/// mistyped key.
///
/// The common case runs one branch-free pass of table lookups; only a key that fails it
/// is examined again, by [`diagnose`], to say precisely what is wrong.
pub fn split(input: &str) -> Result<ParsedKey<'_>, ParseError> {
    let bytes = input.as_bytes();
    let len = bytes.len();
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len) {
        return Err(ParseError::Length { len });
    }
    let tail_len = SecretLength::of(bytes).tail();
    // (A standard secret leaves room for a prefix longer than any allowed: the checks
    // then run in their order, and the prefix's length is the one that fails.)
    let prefix_len = len - tail_len;
    if prefix_len > MAX_PREFIX_LEN {
        return Err(diagnose(bytes));
    }
    let (prefix, tail) = bytes.split_at(prefix_len);
    // tail = "_" key_id "_" secret checksum
    let (sep1, rest) = tail.split_at(1);
    let (key_id, rest) = rest.split_at(KEY_ID_LEN);
    let (sep2, secret_and_checksum) = rest.split_at(1);

    let first = prefix.first().map_or(0, |&b| charset::CLASSES.get(b));
    let well_formed = (first & charset::PREFIX_START != 0)
        & (charset::all_classes(prefix) & charset::PREFIX != 0)
        & (sep1 == b"_")
        & (sep2 == b"_")
        & (charset::all_classes(key_id)
            & charset::all_classes(secret_and_checksum)
            & charset::BASE58
            != 0);
    if !well_formed {
        return Err(diagnose(bytes));
    }

    // Every byte is ASCII now, so these slices fall on character boundaries.
    let part = |from: usize, to: usize| {
        input
            .get(from..to)
            .ok_or(ParseError::Character { position: from })
    };
    let key_id_at = prefix_len + 1;
    let secret_at = key_id_at + KEY_ID_LEN + 1;
    let checksum_at = len - CHECKSUM_LEN;
    Ok(ParsedKey {
        prefix: part(0, prefix_len)?,
        key_id: part(key_id_at, key_id_at + KEY_ID_LEN)?,
        secret: SecretStr::new(part(secret_at, checksum_at)?),
        checksum: part(checksum_at, len)?,
    })
}

/// Says what is wrong with a key of valid length that failed the fast check, in the
/// documented order: a character outside `[A-Za-z0-9_]`, a missing separator, a
/// non-base58 character in key id, secret or checksum, then the prefix rules.
fn diagnose(bytes: &[u8]) -> ParseError {
    let len = bytes.len();
    if let Some(position) = bytes
        .iter()
        .position(|&b| charset::CLASSES.get(b) & charset::KEY == 0)
    {
        return ParseError::Character { position };
    }
    let prefix_len = len - SecretLength::of(bytes).tail();
    let secret_sep = prefix_len + 1 + KEY_ID_LEN;
    for position in [prefix_len, secret_sep] {
        if bytes.get(position) != Some(&b'_') {
            return ParseError::Separator { position };
        }
    }
    let not_base58 = bytes
        .iter()
        .enumerate()
        .skip(prefix_len + 1)
        .find(|&(i, &b)| i != secret_sep && !base58::is_digit(b));
    if let Some((position, _)) = not_base58 {
        return ParseError::Character { position };
    }
    let prefix =
        std::str::from_utf8(bytes.get(..prefix_len).unwrap_or_default()).unwrap_or_default();
    match validate_prefix(prefix) {
        Err(e) => ParseError::Prefix(e),
        // Unreachable if the fast check and this function agree (a property test checks
        // that they do); refuse the key rather than accept it.
        Ok(()) => ParseError::Character { position: 0 },
    }
}

/// Parses a key, checking length, characters, separators, prefix and checksum, in that
/// order, before anything else looks at it. Touches no storage and allocates nothing.
pub fn parse(input: &str) -> Result<ParsedKey<'_>, ParseError> {
    let parsed = split(input)?;
    let body = input
        .as_bytes()
        .get(..input.len() - CHECKSUM_LEN)
        .unwrap_or_default();
    // Compare as numbers: decoding 6 digits is cheaper than encoding the CRC. `split`
    // has checked they are base58 digits, and 58^6 < 2^36, so nothing can overflow.
    let given = parsed.checksum.bytes().fold(0u64, |acc, b| {
        acc * 58 + u64::from(base58::digit_value(b).unwrap_or(0))
    });
    if given != u64::from(crc32fast::hash(body)) {
        return Err(ParseError::Checksum);
    }
    Ok(parsed)
}

/// [`parse`] for raw bytes (for example straight off the wire). Bytes that are not UTF-8
/// fail the character check.
pub fn parse_bytes(input: &[u8]) -> Result<ParsedKey<'_>, ParseError> {
    key_text(input).and_then(parse)
}

/// Checks that raw bytes have a key's length and are UTF-8, and views them as text for
/// [`split`] or [`parse`]. The length is checked first, so a huge input costs nothing.
pub fn key_text(input: &[u8]) -> Result<&str, ParseError> {
    let len = input.len();
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len) {
        return Err(ParseError::Length { len });
    }
    std::str::from_utf8(input).map_err(|e| ParseError::Character {
        position: e.valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn prefix(s: &str) -> Prefix {
        Prefix::new(s).unwrap()
    }

    #[test]
    fn generated_key_has_the_documented_shape() {
        let k = generate(&prefix("acme_live")).unwrap();
        let s = k.key().expose_secret();
        assert_eq!(s.len(), "acme_live".len() + TAIL_LEN);
        assert!(s.starts_with("acme_live_"));
        assert_eq!(&s[10..22], k.key_id().as_str());
        assert_eq!(&s[22..23], "_");
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        let parsed = parse(s).unwrap();
        assert_eq!(parsed.prefix(), "acme_live");
        assert_eq!(parsed.key_id(), k.key_id().as_str());
        assert_eq!(parsed.secret().len(), SECRET_LEN);
        assert_eq!(&s[s.len() - 4..], k.last4());
    }

    #[test]
    fn checksum_is_crc32_ieee_as_six_base58_digits() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the standard CRC-32 check value.
        let c = checksum(b"123456789");
        assert_eq!(base58::decode_number(&c), Some(0xCBF4_3926));
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn prefix_rules() {
        assert!(Prefix::new("a").is_ok());
        assert!(Prefix::new("acme_live_v2").is_ok());
        assert!(Prefix::new("abcdefghijklmnopqrst").is_ok());
        assert_eq!(Prefix::new(""), Err(PrefixError::Empty));
        assert_eq!(
            Prefix::new("abcdefghijklmnopqrstu"),
            Err(PrefixError::TooLong { len: 21 })
        );
        assert_eq!(Prefix::new("1acme"), Err(PrefixError::BadStart));
        assert_eq!(Prefix::new("_acme"), Err(PrefixError::BadStart));
        assert_eq!(Prefix::new("Acme"), Err(PrefixError::BadStart));
        assert_eq!(
            Prefix::new("acme-live"),
            Err(PrefixError::BadCharacter {
                position: 4,
                found: '-'
            })
        );
        assert!(matches!(
            Prefix::new("acmé"),
            Err(PrefixError::BadCharacter { found: 'é', .. })
        ));
    }

    #[test]
    fn parse_reports_which_check_failed() {
        let k = generate(&prefix("acme")).unwrap();
        let s = k.key().expose_secret().to_owned();
        assert_eq!(parse("short").unwrap_err(), ParseError::Length { len: 5 });
        let mut bad_char = s.clone().into_bytes();
        bad_char[20] = b'-';
        assert_eq!(
            parse_bytes(&bad_char).unwrap_err(),
            ParseError::Character { position: 20 }
        );
        let mut zero = s.clone().into_bytes();
        zero[8] = b'0';
        assert_eq!(
            parse_bytes(&zero).unwrap_err(),
            ParseError::Character { position: 8 }
        );
        let mut sep = s.clone().into_bytes();
        sep[17] = b'a';
        sep[4] = b'x';
        assert_eq!(
            parse_bytes(&sep).unwrap_err(),
            ParseError::Separator { position: 4 }
        );
        let upper = format!("ACME{}", &s[4..]);
        assert_eq!(
            parse(&upper).unwrap_err(),
            ParseError::Prefix(PrefixError::BadStart)
        );
        let mut typo = s.clone().into_bytes();
        typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
        assert_eq!(parse_bytes(&typo).unwrap_err(), ParseError::Checksum);
    }

    #[test]
    fn prefix_with_underscores_parses_from_the_right() {
        let k = generate(&prefix("my_co_live_v2")).unwrap();
        let parsed = parse(k.key().expose_secret()).unwrap();
        assert_eq!(parsed.prefix(), "my_co_live_v2");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let k = generate(&prefix("acme")).unwrap();
        let secret_part = &k.key().expose_secret()[18..48];
        let dbg = format!("{k:?} {:?}", parse(k.key().expose_secret()).unwrap());
        assert!(!dbg.contains(secret_part), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn display_form_shows_prefix_id_and_last4_only() {
        let k = generate(&prefix("acme_live")).unwrap();
        let s = k.key().expose_secret();
        let shown = k.display_form();
        assert_eq!(
            shown,
            format!("acme_live_{}_\u{2026}{}", k.key_id(), &s[s.len() - 4..])
        );
        assert_eq!(parse(s).unwrap().display_form(), shown);
    }
}
