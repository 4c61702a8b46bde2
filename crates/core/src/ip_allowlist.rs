//! IP allowlists: the client addresses from which a key may be used. A key, its owner
//! and its keyspace may each carry one; a verification must come from an address every
//! one of them admits (`policy::decide` answers FORBIDDEN_IP otherwise).
//!
//! Entries are IPv4 or IPv6 networks in CIDR notation (`203.0.113.0/24`,
//! `2001:db8::/32`) or single addresses (`198.51.100.7`, meaning `/32` or `/128`). An
//! IPv4 address and its IPv4-mapped IPv6 form (`::ffff:203.0.113.7`, as a dual-stack
//! socket reports it) are one address: either form matches an IPv4 entry, and an IPv6
//! entry written inside `::ffff:0:0/96`. Other IPv6 entries never admit an IPv4 client:
//! `::/0` means every IPv6 address, not every address.

use std::net::IpAddr;

use ipnet::IpNet;

/// Most entries in one allowlist.
pub const MAX_ENTRIES: usize = 100;

/// A parsed, non-empty allowlist in canonical form (networks, host bits clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowlist {
    nets: Vec<IpNet>,
}

/// Why an allowlist was refused. Entries are named by position, never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpAllowlistError {
    #[error("at most {MAX_ENTRIES} entries")]
    TooMany,
    #[error(
        "entry {index} is not an IP address or CIDR network (like 203.0.113.0/24 or 2001:db8::/32)"
    )]
    NotANetwork { index: usize },
    #[error("entry {index} has address bits set beyond its prefix length: write {network}")]
    HostBits { index: usize, network: String },
}

impl IpAllowlist {
    /// Parses `entries`; `None` for an empty list (no restriction). Each entry must be
    /// exact: a network written with bits set past its prefix (`203.0.113.7/24`) is
    /// refused rather than silently widened, and so are zone ids and leading zeros.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Option<Self>, IpAllowlistError> {
        if entries.len() > MAX_ENTRIES {
            return Err(IpAllowlistError::TooMany);
        }
        let mut nets = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let text = entry.as_ref();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => text
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| IpAllowlistError::NotANetwork { index })?,
            };
            if net.trunc() != net {
                return Err(IpAllowlistError::HostBits {
                    index,
                    network: net.trunc().to_string(),
                });
            }
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok((!nets.is_empty()).then_some(Self { nets }))
    }

    /// Whether `ip` (in either of its forms, see the module) lies in one of the networks.
    pub fn admits(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let mapped = a.to_ipv6_mapped();
                self.nets.iter().any(|net| match net {
                    IpNet::V4(net) => net.contains(&a),
                    IpNet::V6(net) => within_mapped(net) && net.contains(&mapped),
                })
            }
            IpAddr::V6(b) => self.nets.iter().any(|net| match net {
                IpNet::V4(_) => false,
                IpNet::V6(net) => net.contains(&b),
            }),
        }
    }

    /// The entries in canonical CIDR form (`203.0.113.7/32` for a single address), as
    /// stored and shown.
    pub fn entries(&self) -> Vec<String> {
        self.nets.iter().map(ToString::to_string).collect()
    }
}

/// Whether `net` lies inside the IPv4-mapped range `::ffff:0:0/96`.
fn within_mapped(net: &ipnet::Ipv6Net) -> bool {
    net.prefix_len() >= 96 && net.network().to_ipv4_mapped().is_some()
}

/// Whether a verification from `client_ip` passes every allowlist in `lists` (absent
/// lists admit anyone). Without an address, any allowlist refuses: a key restricted to
/// some addresses is never usable from an unknown one.
pub fn admitted<'a>(
    lists: impl IntoIterator<Item = Option<&'a IpAllowlist>>,
    client_ip: Option<IpAddr>,
) -> bool {
    lists
        .into_iter()
        .flatten()
        .all(|list| client_ip.is_some_and(|ip| list.admits(ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> IpAllowlist {
        IpAllowlist::parse(entries).unwrap().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_networks_admit_their_range_and_nothing_next_to_it() {
        let l = list(&["203.0.113.0/24"]);
        assert!(l.admits(ip("203.0.113.0")));
        assert!(l.admits(ip("203.0.113.255")));
        assert!(!l.admits(ip("203.0.112.255")));
        assert!(!l.admits(ip("203.0.114.0")));
        assert!(!l.admits(ip("2001:db8::1")));
    }

    #[test]
    fn slash_32_and_128_and_bare_addresses_are_one_address() {
        let l = list(&["198.51.100.7/32", "2001:db8::7/128"]);
        assert!(l.admits(ip("198.51.100.7")));
        assert!(!l.admits(ip("198.51.100.8")));
        assert!(l.admits(ip("2001:db8::7")));
        assert!(!l.admits(ip("2001:db8::8")));
        assert_eq!(list(&["198.51.100.7", "2001:db8::7"]), l);
        assert_eq!(l.entries(), ["198.51.100.7/32", "2001:db8::7/128"]);
    }

    #[test]
    fn slash_0_admits_its_whole_family() {
        let v4 = list(&["0.0.0.0/0"]);
        assert!(v4.admits(ip("0.0.0.0")) && v4.admits(ip("255.255.255.255")));
        assert!(!v4.admits(ip("2001:db8::1")));
        let v6 = list(&["::/0"]);
        assert!(v6.admits(ip("::")) && v6.admits(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        // Every IPv6 address, but no IPv4 client in either form.
        assert!(!v6.admits(ip("203.0.113.9")) && !v6.admits(ip("::ffff:203.0.113.9")));
        let all = list(&["0.0.0.0/0", "::/0"]);
        assert!(all.admits(ip("203.0.113.9")) && all.admits(ip("2001:db8::1")));
    }

    #[test]
    fn v6_networks_admit_their_prefix() {
        let l = list(&["2001:db8::/32"]);
        assert!(l.admits(ip("2001:db8:ffff::1")));
        assert!(!l.admits(ip("2001:db9::1")));
        assert!(!l.admits(ip("203.0.113.1")));
    }

    #[test]
    fn an_ipv4_address_and_its_mapped_ipv6_form_are_one_address() {
        let v4 = list(&["203.0.113.0/24"]);
        assert!(v4.admits(ip("::ffff:203.0.113.9")));
        assert!(!v4.admits(ip("::ffff:203.0.114.9")));
        // Only the mapped form, not the deprecated IPv4-compatible `::a.b.c.d`.
        assert!(!v4.admits(ip("::203.0.113.9")));
        let mapped = list(&["::ffff:203.0.113.0/120"]);
        assert!(mapped.admits(ip("203.0.113.9")));
        assert!(mapped.admits(ip("::ffff:203.0.113.9")));
        assert!(!mapped.admits(ip("203.0.114.9")));
        // The whole mapped range admits every IPv4 client; a wider network does not.
        assert!(list(&["::ffff:0:0/96"]).admits(ip("198.51.100.1")));
        assert!(!list(&["::/64"]).admits(ip("198.51.100.1")));
    }

    #[test]
    fn invalid_entries_are_refused_by_position() {
        for (entries, error) in [
            (
                vec!["203.0.113.0/33"],
                IpAllowlistError::NotANetwork { index: 0 },
            ),
            (vec!["ok", "x"], IpAllowlistError::NotANetwork { index: 0 }),
            (
                vec!["10.0.0.0/8", "2001:db8::/129"],
                IpAllowlistError::NotANetwork { index: 1 },
            ),
            (
                vec!["010.0.0.1"],
                IpAllowlistError::NotANetwork { index: 0 },
            ),
            (
                vec!["fe80::1%eth0"],
                IpAllowlistError::NotANetwork { index: 0 },
            ),
            (
                vec![" 10.0.0.1"],
                IpAllowlistError::NotANetwork { index: 0 },
            ),
            (
                vec!["10.0.0.0/"],
                IpAllowlistError::NotANetwork { index: 0 },
            ),
            (
                vec!["10.0.0.0/-1"],
                IpAllowlistError::NotANetwork { index: 0 },
            ),
            (vec![""], IpAllowlistError::NotANetwork { index: 0 }),
            (
                vec!["203.0.113.7/24"],
                IpAllowlistError::HostBits {
                    index: 0,
                    network: "203.0.113.0/24".into(),
                },
            ),
            (
                vec!["2001:db8::1/32"],
                IpAllowlistError::HostBits {
                    index: 0,
                    network: "2001:db8::/32".into(),
                },
            ),
        ] {
            assert_eq!(IpAllowlist::parse(&entries), Err(error), "{entries:?}");
        }
        let many: Vec<String> = (0..=MAX_ENTRIES)
            .map(|i| format!("10.0.{i}.0/24"))
            .collect();
        assert_eq!(IpAllowlist::parse(&many), Err(IpAllowlistError::TooMany));
        assert!(IpAllowlist::parse(&many[..MAX_ENTRIES]).unwrap().is_some());
    }

    #[test]
    fn an_empty_list_is_no_restriction_and_duplicates_count_once() {
        assert_eq!(IpAllowlist::parse::<&str>(&[]), Ok(None));
        assert_eq!(
            list(&["10.0.0.0/8", "10.0.0.0/8"]).entries(),
            ["10.0.0.0/8"]
        );
    }

    #[test]
    fn every_list_must_admit_and_no_address_means_refused() {
        let a = list(&["10.0.0.0/8"]);
        let b = list(&["10.1.0.0/16"]);
        assert!(admitted([None, None], None));
        assert!(admitted([Some(&a), None], Some(ip("10.2.0.1"))));
        assert!(!admitted([Some(&a), Some(&b)], Some(ip("10.2.0.1"))));
        assert!(admitted([Some(&a), Some(&b)], Some(ip("10.1.0.1"))));
        assert!(!admitted([Some(&a), None], None));
    }
}
