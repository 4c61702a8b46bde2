//! A CSV file for `keyhaven import`, read as the command reads it: a `csv::Reader` with a
//! header row, each record into `keyhaven_service::import::CsvRow`, then `ImportItem` and
//! `import::build` under a fixed test pepper. Nothing may panic; an accepted row keeps
//! the invariants in `keyhaven_fuzz::check_import_item`.
#![no_main]

use keyhaven_service::import::{CsvRow, ImportItem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rows = csv::Reader::from_reader(data);
    for row in rows.deserialize::<CsvRow>().take(64).flatten() {
        keyhaven_fuzz::check_import_item(&ImportItem::from(row));
    }
});
