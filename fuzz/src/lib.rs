//! What more than one fuzz target checks: a parsed key's parts give back its text
//! (`parse_key`, `auth_header`), and the import item invariants (`import_line` and
//! `import_csv` reach [`keyhaven_service::import::build`] through different readers).

use std::sync::LazyLock;

use keyhaven_core::compat::{self, ImportFormat};
use keyhaven_core::format::ParsedKey;
use keyhaven_core::{Pepper, PepperSet, PepperVersion};
use keyhaven_service::import::{self, ImportItem};

/// The text of `key` put back together from its parts: equal to what it was parsed from.
pub fn rebuilt(key: &ParsedKey<'_>) -> String {
    format!(
        "{}_{}_{}{}",
        key.prefix(),
        key.key_id(),
        key.secret().expose_secret(),
        key.checksum()
    )
}

/// A fixed test pepper (version 1): the fuzzer needs no pepper file.
static PEPPERS: LazyLock<PepperSet> = LazyLock::new(|| {
    let version = PepperVersion::new(1).expect("version 1 is valid");
    PepperSet::new(vec![Pepper::new(version, &[7; 32])]).expect("one pepper is a set")
});

/// Builds `item` as an import does and checks what an accepted record promises: the
/// item's fields carried over, the newest pepper's version, a lookup that the key the
/// item describes will be found under, and a public part that gives the same lookup
/// (re-imports after a pepper rotation rely on it).
pub fn check_import_item(item: &ImportItem) {
    let peppers = &*PEPPERS;
    let now = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("in range");
    let Ok(record) = import::build(item, peppers, now) else {
        return;
    };
    let format = ImportFormat::parse(&item.format).expect("build accepted the format");
    assert_eq!(record.keyspace_id, item.keyspace_id);
    assert_eq!(record.owner_id, item.owner_id);
    assert_eq!(record.scopes, item.scopes);
    assert_eq!(record.enabled, item.enabled.unwrap_or(true));
    assert_eq!(record.key_id.len(), keyhaven_core::format::KEY_ID_LEN);
    assert_eq!(record.verifier.version(), peppers.newest().version());
    let stored = record.import.as_ref().expect("an import record");
    assert_eq!(stored.format, format.as_str());
    assert_eq!(stored.digest.as_ref().map(Vec::len), Some(32));
    match format {
        ImportFormat::PrefixedSha256 => {
            let prefix = item.prefix.as_deref().expect("prefix required");
            let short = item.short_token.as_deref().expect("short_token required");
            let key = format!("{prefix}_{short}_secret");
            assert!(
                compat::lookups(&key, peppers)
                    .iter()
                    .any(|(f, l)| *f == format && *l == stored.lookup),
                "the imported key would not be found"
            );
        }
        ImportFormat::DottedSha512 => {
            let prefix = item.prefix.as_deref().expect("prefix required");
            let key = format!("{prefix}.secret");
            assert!(
                compat::lookups(&key, peppers)
                    .iter()
                    .any(|(f, l)| *f == format && *l == stored.lookup),
                "the imported key would not be found"
            );
        }
        ImportFormat::Sha256 => assert!(stored.public.is_none()),
    }
    if let Some(public) = &stored.public {
        assert_eq!(
            compat::lookup_of_public(format, public, peppers.newest()).as_ref(),
            Some(&stored.lookup)
        );
    }
}
