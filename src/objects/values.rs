//! Field values: what a client may send for each field type, cleaned into the stored form
//! (NetBox's minimal form: foreign keys as ids, choices as raw values).

use crate::catalog::{Catalog, Field, FieldKind};
use ipnet::IpNet;
use serde_json::Value;
use std::net::IpAddr;

/// Cleans a scalar value (anything but a foreign key) for `field`; the error is the message
/// NetBox gives for it.
pub fn clean(catalog: &Catalog, field: &Field, value: &Value) -> Result<Value, String> {
    if value.is_null() {
        return if field.null {
            Ok(Value::Null)
        } else {
            Err("This field may not be null.".into())
        };
    }
    match field.kind {
        FieldKind::String => clean_string(field, value),
        FieldKind::Integer => {
            let n = as_integer(value).ok_or("A valid integer is required.")?;
            check_range(field, n as f64)?;
            Ok(Value::from(n))
        }
        FieldKind::Decimal => {
            let n = as_number(value).ok_or("A valid number is required.")?;
            check_range(field, n)?;
            if let Some(places) = field.places {
                let scale = 10f64.powi(places as i32);
                if ((n * scale).round() - n * scale).abs() > 1e-9 {
                    return Err(format!("Ensure that there are no more than {places} decimal places."));
                }
            }
            Ok(Value::from(n))
        }
        FieldKind::Boolean => as_bool(value)
            .map(Value::Bool)
            .ok_or_else(|| "Must be a valid boolean.".into()),
        FieldKind::Choice => {
            // A choice as read back (`{"value", "label"}`) is accepted too.
            let raw = match value {
                Value::Object(o) => o.get("value").unwrap_or(value),
                v => v,
            };
            let text = match raw {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(format!(
                        "\"{}\" is not a valid choice.",
                        crate::validate::type_name(other)
                    ))
                }
            };
            match catalog.choice_label(field, &text) {
                Some(_) => Ok(Value::String(text)),
                None => Err(format!("\"{text}\" is not a valid choice.")),
            }
        }
        FieldKind::Prefix => {
            let s = value
                .as_str()
                .ok_or("Enter a valid IPv4 or IPv6 prefix in CIDR notation.")?;
            parse_cidr(s).map(|net| Value::String(net.trunc().to_string()))
        }
        FieldKind::Address => {
            let s = value
                .as_str()
                .ok_or("Enter a valid IPv4 or IPv6 address with a mask.")?;
            let net = parse_cidr(s)?;
            if net.prefix_len() == 0 {
                return Err("Cannot create IP address with /0 mask.".into());
            }
            Ok(Value::String(net.to_string()))
        }
        FieldKind::Mac => {
            let s = value.as_str().ok_or("Enter a valid MAC address.")?;
            parse_mac(s).map(Value::String)
        }
        FieldKind::Fk | FieldKind::Family => Err("This field cannot be set here.".into()),
    }
}

fn clean_string(field: &Field, value: &Value) -> Result<Value, String> {
    let s = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err("Not a valid string.".into()),
    };
    if s.is_empty() {
        if field.required {
            return Err("This field may not be blank.".into());
        }
        return Ok(if field.null { Value::Null } else { Value::String(s) });
    }
    if let Some(max) = field.max_length {
        if s.chars().count() > max {
            return Err(format!("Ensure this field has no more than {max} characters."));
        }
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err("Null characters and other control characters are not allowed.".into());
    }
    if let Some(re) = &field.regex {
        if !re.is_match(&s) {
            return Err(field
                .pattern_message
                .clone()
                .unwrap_or_else(|| "Enter a valid value.".into()));
        }
    }
    Ok(Value::String(s))
}

fn check_range(field: &Field, n: f64) -> Result<(), String> {
    let show = |v: f64| {
        if v.fract() == 0.0 {
            format!("{}", v as i64)
        } else {
            v.to_string()
        }
    };
    if let Some(min) = field.min.filter(|m| n < *m) {
        return Err(format!("Ensure this value is greater than or equal to {}.", show(min)));
    }
    if let Some(max) = field.max.filter(|m| n > *m) {
        return Err(format!("Ensure this value is less than or equal to {}.", show(max)));
    }
    Ok(())
}

/// An integer, or a string holding one (as DRF accepts).
pub fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => crate::validate::parse_bool(s),
        _ => None,
    }
}

/// `192.0.2.10/24` → the network it names, the address kept as given; a mask is required.
/// The errors are NetBox's.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let (addr, len) = s.split_once('/').ok_or("CIDR mask (e.g. /24) is required.")?;
    let addr: IpAddr = addr.parse().map_err(|_| format!("Invalid IP address format: {s}"))?;
    let len: u8 = len.parse().map_err(|_| format!("Invalid IP prefix length: {s}"))?;
    IpNet::new(addr, len).map_err(|_| format!("Invalid IP prefix length: {s}"))
}

/// An address in the network index: 34 hex digits, the family then 16 bytes (IPv4 in the last
/// four), so that text order is address order and the families never mix.
pub fn net_key(addr: IpAddr) -> String {
    let (family, bytes) = match addr {
        IpAddr::V4(a) => (4u8, a.to_ipv6_compatible().octets()),
        IpAddr::V6(a) => (6u8, a.octets()),
    };
    let mut out = format!("{family:02x}");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Where an address or prefix field's value sits in the network index: the first and last
/// address it covers (`host_only`: an address's host alone, whatever its mask, as NetBox nests
/// addresses) and its mask length. `None` for a value that is not a network.
pub fn net_span(value: &str, host_only: bool) -> Option<(String, String, u8)> {
    let n = parse_cidr(value).ok()?;
    let (lo, hi) = if host_only {
        (n.addr(), n.addr())
    } else {
        (n.network(), n.broadcast())
    };
    Some((net_key(lo), net_key(hi), n.prefix_len()))
}

/// 4 or 6, for an address or prefix as stored.
pub fn family(value: &str) -> Option<u8> {
    let addr = value.split('/').next()?;
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(4),
        IpAddr::V6(_) => Some(6),
    }
}

/// A key that sorts addresses and prefixes as NetBox (PostgreSQL's `inet`) orders them: IPv4
/// before IPv6, then by address, then by mask length. `None` for text that is neither.
pub fn ip_sort_key(value: &str) -> Option<Vec<u8>> {
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = value.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let mut key = Vec::with_capacity(18);
    match addr {
        IpAddr::V4(a) => {
            key.push(4);
            key.extend_from_slice(&[0; 12]);
            key.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            key.push(6);
            key.extend_from_slice(&a.octets());
        }
    }
    key.push(len);
    Some(key)
}

/// A MAC address in any common notation, as NetBox prints it: `00:1A:2B:3C:4D:5E`.
pub fn parse_mac(s: &str) -> Result<String, String> {
    let hex: String = s.chars().filter(|c| !matches!(c, ':' | '-' | '.' | ' ')).collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("Invalid MAC address format: {s}"));
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..6).map(|i| &upper[i * 2..i * 2 + 2]).collect();
    Ok(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field<'a>(catalog: &'a Catalog, ty: &str, name: &str) -> &'a Field {
        catalog.get(ty).unwrap().field(name).unwrap()
    }

    #[test]
    fn each_field_type_cleans_and_rejects() {
        let c = Catalog::builtin();
        let cases: Vec<(&str, &str, Value, Result<Value, &str>)> = vec![
            ("dcim.site", "name", json!("  Site 1 "), Ok(json!("Site 1"))),
            ("dcim.site", "name", json!(""), Err("This field may not be blank.")),
            ("dcim.site", "name", json!(null), Err("This field may not be null.")),
            ("dcim.site", "name", json!(["x"]), Err("Not a valid string.")),
            ("dcim.site", "name", json!("x".repeat(101)), Err("Ensure this field has no more than 100 characters.")),
            ("dcim.site", "slug", json!("bad slug"), Err("Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.")),
            ("dcim.site", "time_zone", json!("Europe/Amsterdam"), Ok(json!("Europe/Amsterdam"))),
            ("dcim.site", "time_zone", json!("not a zone"), Err("A valid timezone is required.")),
            ("dcim.site", "status", json!("planned"), Ok(json!("planned"))),
            ("dcim.site", "status", json!({"value": "retired", "label": "Retired"}), Ok(json!("retired"))),
            ("dcim.site", "status", json!("gone"), Err("\"gone\" is not a valid choice.")),
            ("ipam.vlan", "vid", json!("100"), Ok(json!(100))),
            ("ipam.vlan", "vid", json!(0), Err("Ensure this value is greater than or equal to 1.")),
            ("ipam.vlan", "vid", json!(4095), Err("Ensure this value is less than or equal to 4094.")),
            ("ipam.vlan", "vid", json!("ten"), Err("A valid integer is required.")),
            ("ipam.vlan", "vid", json!(1e20), Err("A valid integer is required.")),
            ("ipam.vlan", "vid", json!(100.0), Ok(json!(100))),
            ("dcim.devicetype", "u_height", json!(2), Ok(json!(2.0))),
            ("dcim.devicetype", "u_height", json!(1.25), Err("Ensure that there are no more than 1 decimal places.")),
            ("dcim.devicetype", "u_height", json!(-1), Err("Ensure this value is greater than or equal to 0.")),
            ("dcim.interface", "enabled", json!("false"), Ok(json!(false))),
            ("dcim.interface", "enabled", json!("maybe"), Err("Must be a valid boolean.")),
            ("dcim.interface", "mac_address", json!("0011.22aa.bbcc"), Ok(json!("00:11:22:AA:BB:CC"))),
            ("dcim.interface", "mac_address", json!("00:11:22"), Err("Invalid MAC address format: 00:11:22")),
            ("dcim.interface", "mtu", json!(null), Ok(json!(null))),
            ("ipam.prefix", "prefix", json!("192.0.2.77/24"), Ok(json!("192.0.2.0/24"))),
            ("ipam.prefix", "prefix", json!("2001:db8::1/64"), Ok(json!("2001:db8::/64"))),
            ("ipam.prefix", "prefix", json!("192.0.2.0"), Err("CIDR mask (e.g. /24) is required.")),
            ("ipam.ipaddress", "address", json!("192.0.2.10/24"), Ok(json!("192.0.2.10/24"))),
            ("ipam.ipaddress", "address", json!("192.0.2.300/24"), Err("Invalid IP address format: 192.0.2.300/24")),
            ("ipam.ipaddress", "address", json!("192.0.2.1/33"), Err("Invalid IP prefix length: 192.0.2.1/33")),
            ("ipam.ipaddress", "address", json!("0.0.0.0/0"), Err("Cannot create IP address with /0 mask.")),
            ("ipam.ipaddress", "dns_name", json!("edge-r1.example.net"), Ok(json!("edge-r1.example.net"))),
            ("ipam.ipaddress", "dns_name", json!("bad name!"), Err("Only alphanumeric characters, asterisks, hyphens, periods, and underscores are allowed in DNS names")),
            ("dcim.devicerole", "color", json!("zz0000"), Err("Enter a valid hexadecimal RGB color code.")),
        ];
        for (ty, name, input, want) in cases {
            let got = clean(&c, field(&c, ty, name), &input);
            assert_eq!(got, want.map_err(String::from), "{ty}.{name} <- {input}");
        }
        assert_eq!(family("2001:db8::/64"), Some(6));
        let mut ips = [
            "10.0.0.10/24",
            "2001:db8::1/64",
            "10.0.0.2/24",
            "10.0.0.2/16",
            "9.255.0.1/8",
        ];
        ips.sort_by_key(|s| ip_sort_key(s).unwrap());
        assert_eq!(
            ips,
            [
                "9.255.0.1/8",
                "10.0.0.2/16",
                "10.0.0.2/24",
                "10.0.0.10/24",
                "2001:db8::1/64"
            ]
        );
        assert_eq!(ip_sort_key("not an address"), None);
        assert_eq!(family("192.0.2.1/32"), Some(4));
    }
}
