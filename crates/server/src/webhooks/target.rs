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

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (64..128).contains(&b))
        // IETF protocol assignments, 192.0.0.0/24; benchmarking, 198.18.0.0/15.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b == 18 || b == 19))
        // Reserved, 240.0.0.0/4.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // NAT64 and 6to4 can reach IPv4 space; refuse them rather than decode them.
        || first == 0x0064
        || first == 0x2002)
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
        assert!(validate("https://user:pw@example.com/", true).is_err());
        assert!(validate(&format!("https://e.com/{}", "a".repeat(3000)), true).is_err());
    }
}
