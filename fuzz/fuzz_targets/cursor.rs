//! The `cursor` query parameter of list calls, decoded as every list route decodes it
//! (`keyhaven_server::pagination::{sorted_page_request, page_request}`). Nothing may
//! panic; an accepted cursor names a positive sequence number (and a non-negative sort
//! value), encoding what it decoded to and decoding again gives the same page, and an
//! unsorted list accepts exactly the cursors without a sort value.
#![no_main]

use keyhaven_server::pagination::{
    DEFAULT_PAGE, encode_cursor, encode_sorted_cursor, page_request, sorted_page_request,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cursor) = std::str::from_utf8(data) else {
        return;
    };
    let unsorted = page_request(None, Some(cursor));
    let Ok((sort, page)) = sorted_page_request(None, Some(cursor)) else {
        assert!(
            unsorted.is_err(),
            "unsorted list took a cursor a sorted one refused"
        );
        return;
    };
    assert_eq!(page.limit, DEFAULT_PAGE);
    let seq = page.after.expect("a cursor names a position");
    assert!(seq > 0);
    assert!(sort.is_none_or(|v| v >= 0));
    assert_eq!(unsorted.is_ok(), sort.is_none());
    if let Ok(unsorted) = unsorted {
        assert_eq!(unsorted.after, Some(seq));
    }
    let again = match sort {
        Some(value) => encode_sorted_cursor(value, seq),
        None => encode_cursor(seq),
    };
    let (sort2, page2) = sorted_page_request(None, Some(&again)).expect("our own cursor");
    assert_eq!((sort2, page2.after), (sort, Some(seq)));
});
