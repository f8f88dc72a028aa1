//! Filters NetBox computes rather than compares: the IP ones (`parent`, `within`,
//! `within_include`, `contains`, `mask_length`, `children`, `depth`), regular expressions
//! (`name__regex`, `name__iregex`) and an interface's `kind`. Each reads the type's objects and
//! becomes one condition on their ids, so every backend runs it the same way.

use super::params::{Filter, Parser, Skip};
use super::{Cmp, Col, Cond, NetTest, ObjectQuery};
use crate::catalog::FieldKind;
use crate::objects::values::{net_key, parse_cidr};
use crate::objects::Obj;
use ipnet::IpNet;
use serde_json::Value;

/// Interface types NetBox counts as virtual and as wireless (`kind=`); the rest are physical.
const VIRTUAL_INTERFACES: [&str; 3] = ["virtual", "bridge", "lag"];

/// `name__regex` → (`name`, case-insensitive?).
pub fn regex_lookup(param: &str) -> Option<(&str, bool)> {
    if let Some(field) = param.strip_suffix("__iregex") {
        return Some((field, true));
    }
    param.strip_suffix("__regex").map(|field| (field, false))
}

/// The networks given (`10.0.0.0/8`, or an address, a /32 or /128).
fn networks(given: &[&str]) -> Result<Vec<IpNet>, Skip> {
    given
        .iter()
        .map(|v| {
            let v = v.trim();
            v.parse::<IpNet>()
                .map(|n| n.trunc())
                .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| Skip::Invalid(format!("\"{v}\" is not an IP network or address.")))
        })
        .collect()
}

/// The values given, as numbers no larger than `max`; `what` names one in the message.
fn numbers<T: std::str::FromStr + PartialOrd>(given: &[&str], max: T, what: &str) -> Result<Vec<T>, Skip> {
    given
        .iter()
        .map(|v| {
            v.trim()
                .parse::<T>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| Skip::Invalid(format!("\"{v}\" is not {what}.")))
        })
        .collect()
}

/// Whether `n` compares to any of `wanted` as `cmp` says (`mask_length__gte=24`).
fn compares<T: PartialOrd + Copy>(cmp: Cmp, n: T, wanted: &[T]) -> bool {
    wanted.iter().any(|w| match cmp {
        Cmp::Gt => n > *w,
        Cmp::Gte => n >= *w,
        Cmp::Lt => n < *w,
        Cmp::Lte => n <= *w,
        _ => n == *w,
    }) != (cmp == Cmp::NotIn)
}

/// The network an object's address or prefix field holds (an address keeps its host bits).
fn network_of(o: &Obj, field: &str) -> Option<IpNet> {
    o.data
        .get(field)
        .and_then(Value::as_str)
        .and_then(|s| parse_cidr(s).ok())
}

/// Whether `inner` lies inside `outer` (`strict`: and is not `outer` itself).
fn inside(inner: &IpNet, outer: &IpNet, strict: bool) -> bool {
    outer.contains(&inner.network()) && inner.prefix_len() >= outer.prefix_len() && !(strict && inner == outer)
}

impl Parser<'_> {
    /// Every object of the type, for the filters computed over them.
    async fn every_object(&self) -> Result<Vec<Obj>, Skip> {
        let all = ObjectQuery {
            order: vec![(Col::Id, false)],
            ..ObjectQuery::default()
        };
        Ok(self
            .reader
            .list_objects(self.ty.name(), &all, i64::MAX, 0)
            .await
            .map_err(|e| Skip::Failed(e.into()))?
            .items)
    }

    /// The objects `keep` accepts, as one condition on their ids.
    async fn ids_where(&self, keep: impl Fn(&Obj, &[Obj]) -> bool) -> Result<Vec<Cond>, Skip> {
        let all = self.every_object().await?;
        let ids: Vec<Value> = all
            .iter()
            .filter(|o| keep(o, &all))
            .map(|o| Value::from(o.id))
            .collect();
        Ok(vec![Cond {
            col: Col::Id,
            cmp: Cmp::In,
            negate: false,
            values: ids,
        }])
    }

    /// `name__regex=^edge-` (`__iregex` ignoring case) on a text field: the objects whose value
    /// the expression finds.
    pub async fn regex(&self, field: &str, ci: bool, given: &[&str]) -> Result<Vec<Cond>, Skip> {
        let known = self.ty.field(field).is_some_and(|f| {
            matches!(
                f.kind,
                FieldKind::String | FieldKind::Address | FieldKind::Prefix | FieldKind::Mac
            )
        });
        if !known {
            return Err(Skip::NotAFilter);
        }
        let mut patterns = Vec::new();
        for p in given {
            let re = regex::RegexBuilder::new(p)
                .case_insensitive(ci)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| Skip::Invalid(format!("\"{p}\" is not a regular expression Herald reads: {e}")))?;
            patterns.push(re);
        }
        self.ids_where(|o, _| {
            let text = o.data.get(field).and_then(Value::as_str).unwrap_or("");
            patterns.iter().any(|re| re.is_match(text))
        })
        .await
    }

    /// The computed filters of this type, or `None` when `f` is not one of them.
    pub async fn computed(&self, f: &Filter<'_>, given: &[&str]) -> Result<Option<Vec<Cond>>, Skip> {
        let ty = self.ty.name();
        let field = match ty {
            "ipam.ipaddress" => "address",
            "ipam.prefix" => "prefix",
            "dcim.interface" if f.name == "kind" => return self.kind(f, given).map(Some),
            _ => return Ok(None),
        };
        let plain = matches!(f.cmp, Cmp::In);
        let conds = match (ty, f.name) {
            // Answered by the network index (`object_nets`): ranges and probes, never a scan.
            (_, "mask_length")
                if !matches!(f.cmp, Cmp::IContains | Cmp::IExact | Cmp::IStartsWith | Cmp::IEndsWith) =>
            {
                let wanted = numbers::<u8>(given, 128, "a mask length (0 to 128)")?;
                vec![Cond::net(field, NetTest::Len(f.cmp, wanted))]
            }
            ("ipam.ipaddress", "parent") | ("ipam.prefix", "within") | ("ipam.prefix", "within_include") if plain => {
                let strict = f.name == "within";
                let spans = networks(given)?
                    .iter()
                    .map(|p| (net_key(p.network()), net_key(p.broadcast()), strict))
                    .collect();
                vec![Cond::net(field, NetTest::Inside(spans))]
            }
            ("ipam.prefix", "contains") if plain => {
                // The prefixes holding a network are its own truncations, one per mask length.
                let mut starts = Vec::new();
                for inner in networks(given)? {
                    for len in 0..=inner.prefix_len() {
                        if let Ok(outer) = IpNet::new(inner.addr(), len) {
                            starts.push((net_key(outer.network()), len));
                        }
                    }
                }
                vec![Cond::net(field, NetTest::Exactly(starts))]
            }
            ("ipam.prefix", "children" | "depth") => {
                let wanted = numbers::<usize>(given, usize::MAX, "a whole number")?;
                let children = f.name == "children";
                self.ids_where(|o, all| {
                    let Some(n) = network_of(o, field) else { return false };
                    let count = all
                        .iter()
                        .filter(|other| other.id != o.id)
                        .filter_map(|other| network_of(other, field))
                        .filter(|m| {
                            if children {
                                inside(m, &n, true)
                            } else {
                                inside(&n, m, true)
                            }
                        })
                        .count();
                    compares(f.cmp, count, &wanted)
                })
                .await?
            }
            (_, "present_in_vrf_id" | "present_in_vrf" | "vrf_id" | "vrf") => {
                return Err(Skip::Invalid(
                    "Herald has no VRFs: every address and prefix is in the global table, so no VRF can be named."
                        .into(),
                ))
            }
            _ => return Ok(None),
        };
        Ok(Some(conds))
    }

    /// An interface's `kind`: `physical`, `virtual` or `wireless`, by its type.
    fn kind(&self, f: &Filter<'_>, given: &[&str]) -> Result<Vec<Cond>, Skip> {
        if !matches!(f.cmp, Cmp::In | Cmp::NotIn) {
            return Err(Skip::Invalid(
                "An interface's kind can only be filtered by value.".into(),
            ));
        }
        let set = self
            .ty
            .field("type")
            .and_then(|t| t.choices.as_deref())
            .unwrap_or_default();
        let mut types = Vec::new();
        for k in given {
            let of_kind = |t: &str| match *k {
                "virtual" => VIRTUAL_INTERFACES.contains(&t),
                "wireless" => t.starts_with("ieee802.11"),
                "physical" => !VIRTUAL_INTERFACES.contains(&t) && !t.starts_with("ieee802.11"),
                _ => false,
            };
            if !["physical", "virtual", "wireless"].contains(k) {
                return Err(Skip::Invalid(format!(
                    "\"{k}\" is not a kind: use physical, virtual or wireless."
                )));
            }
            types.extend(
                self.catalog
                    .choices(set)
                    .iter()
                    .filter(|(v, _)| of_kind(v))
                    .map(|(v, _)| Value::from(v.as_str())),
            );
        }
        Ok(vec![Cond {
            col: Col::Field("type".into()),
            cmp: f.cmp,
            negate: false,
            values: types,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_nest_as_netbox_reads_them() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(inside(&n("10.1.0.0/16"), &n("10.0.0.0/8"), true));
        assert!(!inside(&n("10.0.0.0/8"), &n("10.0.0.0/8"), true));
        assert!(inside(&n("10.0.0.0/8"), &n("10.0.0.0/8"), false));
        assert!(!inside(&n("11.0.0.0/16"), &n("10.0.0.0/8"), false));
        assert!(!inside(&n("10.0.0.0/8"), &n("10.1.0.0/16"), false));
        assert_eq!(networks(&["192.0.2.7"]).ok().unwrap(), vec![n("192.0.2.7/32")]);
        assert_eq!(networks(&["192.0.2.7/24"]).ok().unwrap(), vec![n("192.0.2.0/24")]);
        assert!(compares(Cmp::Gte, 24u8, &[24]));
        assert!(!compares(Cmp::NotIn, 24u8, &[24]));
        assert_eq!(regex_lookup("name__iregex"), Some(("name", true)));
        assert_eq!(regex_lookup("name__ic"), None);
    }
}
