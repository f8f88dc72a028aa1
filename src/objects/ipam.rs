//! IP address allocation inside a prefix, as NetBox's `available-ips` endpoint does it.

use super::values::parse_cidr;
use super::Obj;
use ipnet::IpNet;
use serde_json::Value;
use std::collections::HashSet;
use std::net::IpAddr;

/// The type allocation takes prefixes from (its `prefix` field).
pub const PREFIX_TYPE: &str = "ipam.prefix";
/// The type allocation creates (its `address` field).
pub const ADDRESS_TYPE: &str = "ipam.ipaddress";

/// The host part of an address as stored (`192.0.2.10/24` → `192.0.2.10`).
pub fn host(address: &str) -> Option<IpAddr> {
    address.split('/').next()?.trim().parse().ok()
}

/// The hosts of `addresses` (address objects) that lie inside `prefix`.
pub fn taken_in(prefix: &str, addresses: &[Obj]) -> HashSet<IpAddr> {
    let Ok(net) = parse_cidr(prefix).map(|n| n.trunc()) else {
        return HashSet::new();
    };
    addresses
        .iter()
        .filter_map(|o| o.data.get("address").and_then(Value::as_str).and_then(host))
        .filter(|h| net.contains(h))
        .collect()
}

/// Up to `limit` free addresses of `prefix` (`192.0.2.0/24`), lowest first, each with the
/// prefix's mask (`192.0.2.1/24`). Taken hosts are skipped; so are an IPv4 prefix's network
/// and broadcast addresses (below /31) and an IPv6 prefix's first address (below /127), as in
/// NetBox.
pub fn available(prefix: &str, taken: &HashSet<IpAddr>, limit: usize) -> Vec<String> {
    let Ok(net) = parse_cidr(prefix).map(|n| n.trunc()) else {
        return Vec::new();
    };
    // `hosts()` leaves out IPv4's network and broadcast addresses itself.
    let skip = usize::from(matches!(net, IpNet::V6(n) if n.prefix_len() < 127));
    // Each step yields an address or passes a taken one: at most `taken.len() + limit` steps.
    net.hosts()
        .skip(skip)
        .filter(|h| !taken.contains(h))
        .take(limit)
        .map(|h| format!("{h}/{}", net.prefix_len()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_skips_taken_and_reserved_addresses() {
        let taken: HashSet<IpAddr> = ["192.0.2.1", "192.0.2.3"].iter().map(|a| a.parse().unwrap()).collect();
        assert_eq!(
            available("192.0.2.0/24", &taken, 3),
            ["192.0.2.2/24", "192.0.2.4/24", "192.0.2.5/24"]
        );
        assert_eq!(
            available("192.0.2.0/30", &HashSet::new(), 10),
            ["192.0.2.1/30", "192.0.2.2/30"]
        );
        assert_eq!(
            available("192.0.2.0/31", &HashSet::new(), 10),
            ["192.0.2.0/31", "192.0.2.1/31"]
        );
        assert_eq!(available("192.0.2.7/32", &HashSet::new(), 10), ["192.0.2.7/32"]);
        let full: HashSet<IpAddr> = ["192.0.2.1", "192.0.2.2"].iter().map(|a| a.parse().unwrap()).collect();
        assert!(available("192.0.2.0/30", &full, 10).is_empty());
        assert_eq!(
            available("2001:db8::/64", &HashSet::new(), 2),
            ["2001:db8::1/64", "2001:db8::2/64"]
        );
        assert_eq!(
            available("2001:db8::/127", &HashSet::new(), 3),
            ["2001:db8::/127", "2001:db8::1/127"]
        );
        assert_eq!(available("::/0", &HashSet::new(), 1), ["::1/0"]);
        assert_eq!(host("192.0.2.10/24"), Some("192.0.2.10".parse().unwrap()));
        let obj = |a: &str| Obj {
            id: 1,
            data: serde_json::json!({ "address": a }).as_object().unwrap().clone(),
            created: chrono::Utc::now(),
            last_updated: chrono::Utc::now(),
        };
        let inside = taken_in(
            "192.0.2.0/24",
            &[obj("192.0.2.200/24"), obj("192.0.3.1/24"), obj("2001:db8::1/64")],
        );
        assert_eq!(inside, HashSet::from(["192.0.2.200".parse().unwrap()]));
    }
}
