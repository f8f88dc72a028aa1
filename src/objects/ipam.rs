//! IP address allocation inside a prefix, as NetBox's `available-ips` endpoint does it.

use super::values::parse_cidr;
use std::collections::HashSet;
use std::net::IpAddr;

/// The prefix type and field, and the address type and field, allocation works with.
pub const PREFIX_TYPE: &str = "ipam.prefix";
pub const ADDRESS_TYPE: &str = "ipam.ipaddress";

/// The host part of an address as stored (`192.0.2.10/24` → `192.0.2.10`).
pub fn host(address: &str) -> Option<IpAddr> {
    address.split('/').next()?.trim().parse().ok()
}

/// Up to `limit` free addresses of `prefix` (`192.0.2.0/24`), lowest first, each with the
/// prefix's mask (`192.0.2.1/24`). Taken hosts are skipped; so are an IPv4 prefix's network
/// and broadcast addresses (below /31) and an IPv6 prefix's first address (below /127), as in
/// NetBox.
pub fn available(prefix: &str, taken: &HashSet<IpAddr>, limit: usize) -> Vec<String> {
    let Ok((addr, len)) = parse_cidr(prefix) else {
        return Vec::new();
    };
    let (bits, base) = match addr {
        IpAddr::V4(a) => (32u32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128u32, u128::from(a)),
    };
    let host_bits = bits - u32::from(len);
    let size: u128 = if host_bits >= 128 {
        u128::MAX
    } else {
        1u128 << host_bits
    };
    let first = base & !(size.wrapping_sub(1));
    let last = first.saturating_add(size - 1);
    let (mut next, end) = match addr {
        IpAddr::V4(_) if len < 31 => (first + 1, last - 1),
        IpAddr::V6(_) if len < 127 => (first + 1, last),
        _ => (first, last),
    };
    let mut out = Vec::new();
    // Each step yields an address or passes a taken one, so this ends within
    // `taken.len() + limit` steps.
    while next <= end && out.len() < limit {
        let candidate = match addr {
            IpAddr::V4(_) => IpAddr::V4((next as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(next.into()),
        };
        if !taken.contains(&candidate) {
            out.push(format!("{candidate}/{len}"));
        }
        if next == u128::MAX {
            break;
        }
        next += 1;
    }
    out
}

/// Whether `host` lies inside `prefix`.
pub fn contains(prefix: &str, host: IpAddr) -> bool {
    let Ok((addr, len)) = parse_cidr(prefix) else {
        return false;
    };
    match (addr, host) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            super::values::network(addr, len) == super::values::network(host, len)
        }
        _ => false,
    }
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
        assert_eq!(available("::/0", &HashSet::new(), 1), ["::1/0"]);
        assert!(contains("192.0.2.0/24", "192.0.2.200".parse().unwrap()));
        assert!(!contains("192.0.2.0/24", "192.0.3.1".parse().unwrap()));
        assert!(!contains("192.0.2.0/24", "2001:db8::1".parse().unwrap()));
        assert_eq!(host("192.0.2.10/24"), Some("192.0.2.10".parse().unwrap()));
    }
}
