//! One line of a JSON Lines file for `keyhaven import` (the same item as in a
//! `POST /v1/keys/import` body): text, then `ImportItem` (as the command reads it), then
//! `keyhaven_service::import::build` under a fixed test pepper. Nothing may panic; an
//! accepted item keeps the invariants in `keyhaven_fuzz::check_import_item`.
#![no_main]

use keyhaven_service::import::ImportItem;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if line.trim().is_empty() {
        return;
    }
    if let Ok(item) = serde_json::from_str::<ImportItem>(line) {
        keyhaven_fuzz::check_import_item(&item);
    }
});
