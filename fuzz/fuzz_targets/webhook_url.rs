//! A webhook URL as saved (`keyhaven_service::webhooks::target::validate`), with and
//! without `webhook_allow_private_targets`. Nothing may panic; what is accepted is http(s)
//! without credentials, with a host; whatever the strict check accepts the lenient one
//! accepts too; and a strictly accepted IP host, as the URL parser sees it, is public.
#![no_main]

use keyhaven_service::webhooks::target::{is_public, validate};
use libfuzzer_sys::fuzz_target;
use url::Host;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let strict = validate(text, false);
    let lenient = validate(text, true);
    for url in [&strict, &lenient].into_iter().flatten() {
        assert!(matches!(url.scheme(), "http" | "https"));
        assert!(url.username().is_empty() && url.password().is_none());
        assert!(url.host().is_some());
    }
    if let Ok(url) = &strict {
        assert_eq!(
            lenient.as_ref().ok(),
            Some(url),
            "lenient refused what strict took"
        );
        match url.host() {
            Some(Host::Ipv4(ip)) => assert!(is_public(ip.into()), "{ip} accepted"),
            Some(Host::Ipv6(ip)) => assert!(is_public(ip.into()), "{ip} accepted"),
            Some(Host::Domain(name)) => {
                assert!(
                    !name.eq_ignore_ascii_case("localhost"),
                    "localhost accepted"
                );
            }
            None => unreachable!("checked above"),
        }
    }
});
