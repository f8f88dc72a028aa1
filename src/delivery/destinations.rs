//! The destination policy: where deliveries and test sends may connect. Enforced on the
//! address actually connected to (names are resolved by Herald's own resolver, which refuses
//! denied addresses), so a name that resolves elsewhere later (DNS rebinding) cannot pass.
//!
//! Deny always wins. With an empty allow list everything not denied may be reached (internal
//! receivers are the common case); with one, a destination must match it by name or address.

use crate::config::DestinationsConfig;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// A host name pattern: `hooks.example.com`, or `*.example.com` for any name below it.
#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Exact(String),
    Below(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            HostPattern::Exact(h) => host == *h,
            HostPattern::Below(suffix) => host.ends_with(&format!(".{suffix}")),
        }
    }
}

/// One rule: a network or a host name.
#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Net(IpNet),
    Host(HostPattern),
}

impl Rule {
    fn parse(text: &str) -> anyhow::Result<Rule> {
        let t = text.trim();
        if let Ok(net) = t.parse::<IpNet>() {
            return Ok(Rule::Net(net.trunc()));
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(Rule::Net(IpNet::from(ip)));
        }
        let lower = t.trim_end_matches('.').to_ascii_lowercase();
        let valid = |h: &str| {
            !h.is_empty()
                && h.split('.')
                    .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        };
        match lower.strip_prefix("*.") {
            Some(rest) if valid(rest) => Ok(Rule::Host(HostPattern::Below(rest.into()))),
            None if valid(&lower) => Ok(Rule::Host(HostPattern::Exact(lower))),
            _ => {
                anyhow::bail!("{text:?} is neither a network (10.0.0.0/8), an address, nor a host name (*.example.com)")
            }
        }
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("refused by the destination policy: {0}")]
pub struct Refused(pub String);

/// The policy in force.
#[derive(Debug)]
pub struct Policy {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    deny_own: bool,
    /// Where Herald's own API listens (learnt when it starts listening).
    own: Mutex<Vec<SocketAddr>>,
    /// Where the fleet's API nodes listen (read from the database by workers).
    fleet: Mutex<Vec<SocketAddr>>,
}

impl Policy {
    pub fn from_config(config: &DestinationsConfig, own: Vec<SocketAddr>) -> anyhow::Result<Arc<Policy>> {
        let parse = |list: &[String], what: &str| -> anyhow::Result<Vec<Rule>> {
            list.iter()
                .map(|r| Rule::parse(r).map_err(|e| anyhow::anyhow!("destinations.{what}: {e}")))
                .collect()
        };
        Ok(Arc::new(Policy {
            allow: parse(&config.allow, "allow")?,
            deny: parse(&config.deny, "deny")?,
            deny_own: config.deny_own_address,
            own: Mutex::new(own),
            fleet: Mutex::new(Vec::new()),
        }))
    }

    /// Records where Herald's own API listens.
    pub fn set_own(&self, addr: SocketAddr) {
        let mut own = crate::sync::lock(&self.own);
        if !own.contains(&addr) {
            own.push(addr);
        }
    }

    /// Records where the fleet's API nodes listen, replacing what was known.
    pub fn set_fleet(&self, addrs: Vec<SocketAddr>) {
        *crate::sync::lock(&self.fleet) = addrs;
    }

    fn denied_host(&self, host: &str) -> Option<String> {
        self.deny.iter().find_map(|r| match r {
            Rule::Host(p) if p.matches(host) => Some(format!("{host} is denied")),
            _ => None,
        })
    }

    fn denied_ip(&self, ip: IpAddr) -> Option<String> {
        views(ip).find_map(|v| {
            self.deny.iter().find_map(|r| match r {
                Rule::Net(n) if n.contains(&v) => Some(if v == ip {
                    format!("{ip} is in {n}")
                } else {
                    format!("{ip} carries {v}, which is in {n}")
                }),
                _ => None,
            })
        })
    }

    fn allowed_host(&self, host: &str) -> bool {
        self.allow.iter().any(|r| matches!(r, Rule::Host(p) if p.matches(host)))
    }

    fn allowed_ip(&self, ip: IpAddr) -> bool {
        views(ip).any(|v| self.allow.iter().any(|r| matches!(r, Rule::Net(n) if n.contains(&v))))
    }

    /// Whether `addr` is Herald's own API (its port, on a loopback, unspecified or its own
    /// listening address).
    fn is_own(&self, addr: SocketAddr) -> bool {
        if !self.deny_own {
            return false;
        }
        let mut own = crate::sync::lock(&self.own).clone();
        own.extend(crate::sync::lock(&self.fleet).iter().copied());
        views(addr.ip()).any(|ip| {
            own.iter().any(|o| {
                o.port() == addr.port() && (views(o.ip()).any(|v| v == ip) || ip.is_loopback() || ip.is_unspecified())
            })
        })
    }

    /// Checks what can be known from the URL: the host name or address, and the port.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        // URLs are parsed as browsers parse them: `http://2130706433/` and `http://0x7f.1/`
        // arrive here as 127.0.0.1.
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.check_addr(None, SocketAddr::new(ip, port)),
            Err(_) => match self.denied_host(host) {
                Some(why) => Err(Refused(why)),
                None => Ok(()),
            },
        }
    }

    /// Checks one address a name (if any) resolved to.
    pub fn check_addr(&self, name: Option<&str>, addr: SocketAddr) -> Result<(), Refused> {
        if let Some(why) = name
            .and_then(|n| self.denied_host(n))
            .or_else(|| self.denied_ip(addr.ip()))
        {
            return Err(Refused(why));
        }
        if self.is_own(addr) {
            return Err(Refused(format!("{addr} is Herald's own API")));
        }
        let by_name = name.is_some_and(|n| self.allowed_host(n));
        if !self.allow.is_empty() && !by_name && !self.allowed_ip(addr.ip()) {
            return Err(Refused(format!(
                "{} is not in the allow list",
                name.map_or_else(|| addr.ip().to_string(), String::from)
            )));
        }
        Ok(())
    }
}

/// The IPv4 address an IPv6 address carries, in the forms that reach it: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96` and the
/// local-use `64:ff9b:1::/96`), 6to4 (`2002:aabb:ccdd::/48`) and Teredo (`2001::/32`, the
/// client's address, inverted).
pub fn carried_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    match seg {
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => Some(low(hi, lo)),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] | [0x64, 0xff9b, 1, 0, 0, 0, hi, lo] => Some(low(hi, lo)),
        [0x2002, hi, lo, ..] => Some(low(hi, lo)),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(low(!hi, !lo)),
        _ => None,
    }
}

/// The forms an address is checked in: itself, and the IPv4 address it carries, if any.
fn views(ip: IpAddr) -> impl Iterator<Item = IpAddr> {
    let carried = match ip {
        IpAddr::V6(v6) => carried_v4(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    std::iter::once(ip).chain(carried)
}

/// The resolver deliveries connect through: every address a name resolves to is checked; a
/// name whose addresses are all refused fails to resolve, with the policy's reason. `port`:
/// the port the requests of this client go to (so Herald's own API can be told apart).
pub struct Resolver {
    pub policy: Arc<Policy>,
    pub port: u16,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (policy, port, host) = (self.policy.clone(), self.port, name.as_str().to_string());
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await?.collect();
            let mut refused = None;
            let mut kept = Vec::with_capacity(found.len());
            for addr in found {
                match policy.check_addr(Some(&host), addr) {
                    Ok(()) => kept.push(addr),
                    Err(e) => refused = Some(e),
                }
            }
            if kept.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> = match refused {
                    Some(r) => Box::new(r),
                    None => format!("{host} has no address").into(),
                };
                return Err(e);
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> Arc<Policy> {
        let config = DestinationsConfig {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            deny_own_address: true,
        };
        Policy::from_config(&config, vec!["127.0.0.1:8080".parse().unwrap()]).unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn deny_wins_and_allow_lists_close_the_rest() {
        let p = policy(&[], &["169.254.0.0/16", "fd00:ec2::254", "*.internal"]);
        assert!(p.check_addr(None, addr("10.0.0.5:80")).is_ok());
        assert!(p.check_addr(None, addr("169.254.169.254:80")).is_err());
        assert!(
            p.check_addr(None, addr("[::ffff:169.254.169.254]:80")).is_err(),
            "mapped IPv4"
        );
        assert!(p.check_addr(None, addr("[fd00:ec2::254]:80")).is_err());
        assert!(p.check_addr(Some("db.internal"), addr("10.0.0.5:80")).is_err());
        assert!(p.check_addr(None, addr("127.0.0.1:8080")).is_err(), "Herald's own API");
        assert!(
            p.check_addr(None, addr("127.0.0.2:8080")).is_err(),
            "any loopback, same port"
        );
        assert!(p.check_addr(None, addr("127.0.0.1:9000")).is_ok(), "a local receiver");
        let closed = policy(&["10.0.0.0/8", "*.example.com"], &["10.9.0.0/16"]);
        assert!(closed.check_addr(None, addr("10.1.2.3:443")).is_ok());
        assert!(closed
            .check_addr(Some("hooks.example.com"), addr("192.0.2.1:443"))
            .is_ok());
        assert!(
            closed.check_addr(Some("example.com"), addr("192.0.2.1:443")).is_err(),
            "only names below it"
        );
        assert!(closed.check_addr(None, addr("192.0.2.1:443")).is_err());
        assert!(
            closed
                .check_addr(Some("hooks.example.com"), addr("10.9.0.1:443"))
                .is_err(),
            "deny wins"
        );
        let url = reqwest::Url::parse("http://[::ffff:a9fe:a9fe]/latest/meta-data").unwrap();
        assert!(policy(&[], &["169.254.0.0/16"]).check_url(&url).is_err());
        assert!(Rule::parse("not a host!").is_err());
    }

    #[test]
    fn ipv4_carried_in_ipv6_is_checked_as_that_ipv4() {
        let p = policy(&[], &["169.254.0.0/16"]);
        for carrier in [
            "[::ffff:169.254.169.254]:80",
            "[::169.254.169.254]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[64:ff9b:1::a9fe:a9fe]:80",
            "[2002:a9fe:a9fe::1]:80",
            "[2001:0:4136:e378:8000:63bf:5601:5601]:80",
        ] {
            let refused = p.check_addr(None, addr(carrier)).unwrap_err();
            assert!(refused.0.contains("169.254.169.254"), "{carrier}: {refused}");
        }
        for fine in ["[2001:db8::a9fe:a9fe]:80", "[::1]:9000", "[64:ff9b::a00:1]:80"] {
            assert!(p.check_addr(None, addr(fine)).is_ok(), "{fine}");
        }
        // Herald's own API through a carried loopback address.
        assert!(p.check_addr(None, addr("[::127.0.0.1]:8080")).is_err());
        assert!(p.check_addr(None, addr("[64:ff9b::7f00:1]:8080")).is_err());
        // Another node of the fleet, read from the database.
        assert!(p.check_addr(None, addr("10.0.0.7:8443")).is_ok());
        p.set_fleet(vec![addr("10.0.0.7:8443")]);
        assert!(p.check_addr(None, addr("10.0.0.7:8443")).is_err());
        assert!(p.check_addr(None, addr("10.0.0.8:8443")).is_ok());
        // An allow list matches the IPv4 carried, too.
        let closed = policy(&["10.0.0.0/8"], &[]);
        assert!(closed.check_addr(None, addr("[64:ff9b::a00:1]:80")).is_ok());
        assert!(closed.check_addr(None, addr("[64:ff9b::c000:201]:80")).is_err());
        // Through the URL as written.
        let url = reqwest::Url::parse("http://[64:ff9b::a9fe:a9fe]/").unwrap();
        assert!(p.check_url(&url).is_err());
    }
}
