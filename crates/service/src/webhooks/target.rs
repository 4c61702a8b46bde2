//! Which URLs a webhook may call. A webhook URL is chosen by whoever holds a root key
//! with `webhooks:write`; without this guard it would let them make the server call its
//! own network (cloud metadata at 169.254.169.254, an admin port on localhost). So,
//! unless `webhook_allow_private_targets` is set, a URL must be http(s), carry no
//! credentials, and reach only public addresses: checked when the webhook is saved, and
//! again on every connection (DNS can change), by [`PublicOnly`]. Redirects are not
//! followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest accepted webhook URL.
pub const MAX_URL_LEN: usize = 2_048;

/// Checks a webhook URL as saved; `Err` says what is wrong.
pub fn validate(url: &str, allow_private: bool) -> Result<Url, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("url must be at most {MAX_URL_LEN} characters"));
    }
    let parsed = Url::parse(url).map_err(|e| format!("url is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be http or https".to_owned());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials (they would be stored in clear)".to_owned());
    }
    let Some(host) = parsed.host_str() else {
        return Err("url needs a host".to_owned());
    };
    if !allow_private {
        check_host(host)?;
    }
    Ok(parsed)
}

/// Refuses hosts that are, or obviously name, a non-public address. (Names are checked
/// again when resolved, on every connection.)
pub fn check_host(host: &str) -> Result<(), String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if !is_public(ip) {
            return Err(format!(
                "url points to a non-public address ({ip}); set \
                 webhook_allow_private_targets to allow it"
            ));
        }
    } else if bare.eq_ignore_ascii_case("localhost") || bare.ends_with(".localhost") {
        return Err(
            "url points to localhost; set webhook_allow_private_targets to allow it".to_owned(),
        );
    }
    Ok(())
}

/// Whether `ip` is a public unicast address. An allow-list: IPv4 outside the special-use
/// blocks; IPv6 only in global unicast `2000::/3`, outside its special-use blocks. IPv6
/// forms that carry an IPv4 address a router would reach (IPv4-mapped `::ffff:0:0/96`,
/// NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address; other
/// IPv4-embedding forms (IPv4-compatible `::/96`, SIIT `::ffff:0:0:0/96`, local NAT64
/// `64:ff9b:1::/48`, Teredo `2001::/32`) are refused outright.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// IPv4 special-use blocks (IANA registry), none of which a webhook may reach.
const NON_PUBLIC_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local (cloud metadata)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, broadcast
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NON_PUBLIC_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        bits & mask == u32::from(Ipv4Addr::from(net)) & mask
    })
}

/// Whether `ip` lies in `net`/`len`.
fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // Forms that route to an IPv4 address: as public as that address.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return is_public_v4(low_v4(ip));
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let embedded = (u128::from(ip) >> 80) & 0xffff_ffff;
        return is_public_v4(Ipv4Addr::from(embedded as u32));
    }
    let refused: &[([u16; 8], u8)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments, Teredo
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation
    ];
    in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
        && !refused.iter().any(|&(net, len)| in_v6(ip, net, len))
}

/// A resolver that drops non-public addresses, so a name that resolves (or is later
/// re-pointed) to one cannot be reached.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_http_urls_without_credentials() {
        for ok in [
            "https://hooks.example.com/keyhaven",
            "http://93.184.215.14:8080/x",
            "https://[2606:4700::1111]/",
        ] {
            assert!(validate(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://api.localhost/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "not a url",
        ] {
            assert!(validate(bad, false).is_err(), "{bad}");
        }
        assert!(validate("http://127.0.0.1:9/", true).is_ok());
        assert!(validate("http://[::127.0.0.1]/", false).is_err());
        assert!(validate("https://user:pw@example.com/", true).is_err());
        assert!(validate(&format!("https://e.com/{}", "a".repeat(3000)), true).is_err());
    }

    /// Every form the outside review found accepted, and their public cousins.
    #[test]
    fn addresses_are_judged_by_an_allow_list() {
        let refused = [
            "127.0.0.1",
            "10.0.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.1.2.3",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "198.19.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:7f00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::5db8:d70e",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2002:c0a8:0101::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "2001:2::1",
            "3fff::1",
            "fec0::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "100::1",
            "4000::1",
        ];
        for ip in refused {
            let parsed: IpAddr = ip.parse().unwrap();
            assert!(!is_public(parsed), "{ip} must be refused");
            let host = match parsed {
                IpAddr::V4(_) => ip.to_owned(),
                IpAddr::V6(_) => format!("[{ip}]"),
            };
            assert!(validate(&format!("http://{host}/"), false).is_err(), "{ip}");
        }
        let public = [
            "93.184.215.14",
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:93.184.215.14",
            "64:ff9b::5db8:d70e",
            "2002:5db8:d70e::1",
        ];
        for ip in public {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }
}
