//! A webhook's `additional_headers`: one `Name: Value` a line. Values rendered from object data
//! can never add lines (the template refuses line breaks in what it outputs there), and the
//! headers that frame the request itself cannot be set.

/// Headers that frame the request: the HTTP client sets them, a webhook may not.
pub const FORBIDDEN: [&str; 10] = [
    "Host",
    "Content-Length",
    "Transfer-Encoding",
    "Connection",
    "Keep-Alive",
    "Upgrade",
    "TE",
    "Trailer",
    "Proxy-Connection",
    "Expect",
];

/// The header every delivery carries with its delivery id, the same on every attempt.
pub const DELIVERY: &str = "X-Herald-Delivery";

/// `Name: Value` lines: split at the first `:`, both sides trimmed, control characters removed;
/// blank lines, lines without `:` and lines with an empty name are skipped.
pub fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let clean = |s: &str| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .collect::<String>()
                    .trim()
                    .to_string()
            };
            let name = clean(name);
            (!name.is_empty()).then(|| (name, clean(value)))
        })
        .collect()
}

/// Whether `name` may be set by a webhook: a valid header name, not one that frames the
/// request.
pub fn check_name(name: &str) -> Result<(), String> {
    if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("\"{name}\" is not a valid header name."));
    }
    if FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(name)) {
        return Err(format!("{name} cannot be set: Herald's HTTP client sets it."));
    }
    Ok(())
}

/// Checks the lines of a headers template whose names hold no template syntax (the others are
/// checked when rendered).
pub fn check_source(source: &str) -> Result<(), String> {
    for line in source.lines() {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        if name.contains("{{") || name.contains("{%") || name.contains("{#") || name.contains("%}") {
            continue;
        }
        let name = name.trim();
        if !name.is_empty() {
            check_name(name)?;
        }
    }
    Ok(())
}

/// What a secret header's value is shown as to those who may not see it.
pub const MASK: &str = "********";

/// Headers whose values are secrets, by name (any case): credentials, cookies, signatures,
/// and names that say token, secret, key, password or auth.
pub fn is_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["token", "secret", "password", "key", "auth", "signature"]
        .iter()
        .any(|w| n.contains(w))
}

/// Hides the values of secret headers.
pub fn mask(headers: &mut [(String, String)]) {
    for (name, value) in headers.iter_mut() {
        if is_secret(name) {
            *value = MASK.into();
        }
    }
}

/// A headers template as shown to those who may not see secrets: a secret header's value is
/// masked, and so is every line that is not a plain `Name: Value` (its name or a block may
/// hold or build anything).
pub fn mask_source(source: &str) -> String {
    source
        .split('\n')
        .map(|line| match masked_line(line) {
            Some(m) => m,
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How `line` is shown masked, when it is.
fn masked_line(line: &str) -> Option<String> {
    if line.trim().is_empty() {
        return None;
    }
    match line.split_once(':') {
        Some((name, _)) if !is_template_text(name) && !name.trim().is_empty() => {
            is_secret(name.trim()).then(|| format!("{}: {MASK}", name.trim()))
        }
        _ => Some(MASK.into()),
    }
}

fn is_template_text(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#") || s.contains("}}") || s.contains("%}")
}

/// `incoming` (a headers template sent back) with each masked line taken back from `stored`:
/// a `Name: ********` line becomes the stored line of that name, a `********` line the stored
/// line masked whole in the same turn. What was changed stays as sent.
pub fn unmask_source(incoming: &str, stored: &str) -> String {
    if !incoming.contains(MASK) {
        return incoming.to_string();
    }
    let stored_lines: Vec<&str> = stored.split('\n').collect();
    let mut whole = stored_lines.iter().filter(|l| masked_line(l).as_deref() == Some(MASK));
    incoming
        .split('\n')
        .map(|line| {
            if line.trim() == MASK {
                return whole.next().map_or(line, |l| *l).to_string();
            }
            match line.split_once(':') {
                Some((name, value)) if value.trim() == MASK => stored_lines
                    .iter()
                    .find(|l| {
                        l.split_once(':')
                            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name.trim()))
                    })
                    .map_or(line, |l| *l)
                    .to_string(),
                _ => line.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_headers_are_masked() {
        let mut h = vec![
            ("Authorization".to_string(), "Bearer x".to_string()),
            ("X-Auth-Token".into(), "t".into()),
            ("Set-Cookie".into(), "s=1".into()),
            ("X-Api-Key".into(), "k".into()),
            ("Content-Type".into(), "application/json".into()),
        ];
        mask(&mut h);
        let values: Vec<&str> = h.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, [MASK, MASK, MASK, MASK, "application/json"]);
    }

    #[test]
    fn header_templates_are_masked_and_taken_back() {
        let stored = "Authorization: Bearer abc\nX-Site: {{ data.name }}\n{% set t = 'k' %}\nX-Secret-Thing: {{ t }}\n";
        let shown = mask_source(stored);
        assert_eq!(
            shown,
            "Authorization: ********\nX-Site: {{ data.name }}\n********\nX-Secret-Thing: ********\n"
        );
        assert!(!shown.contains("abc") && !shown.contains("'k'"));
        // Sent back as shown: what was stored.
        assert_eq!(unmask_source(&shown, stored), stored);
        // Sent back with one line changed: that line as sent, the others as stored.
        let edited = shown.replace("X-Site: {{ data.name }}", "X-Site: fixed");
        assert_eq!(
            unmask_source(&edited, stored),
            stored.replace("X-Site: {{ data.name }}", "X-Site: fixed")
        );
        let replaced = shown.replace("Authorization: ********", "Authorization: Bearer new");
        assert!(unmask_source(&replaced, stored).starts_with("Authorization: Bearer new\n"));
        assert_eq!(unmask_source("X-A: 1", stored), "X-A: 1");
    }

    #[test]
    fn header_lines() {
        let parsed = parse("A: 1\n\nno colon\n B : x:y \r\n: empty\nC:\u{7}bell");
        assert_eq!(
            parsed,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x:y".into()),
                ("C".into(), "bell".into())
            ]
        );
    }

    #[test]
    fn framing_and_invalid_names_are_refused() {
        assert!(check_name("X-Token").is_ok());
        for bad in [
            "content-length",
            "Host",
            "Transfer-Encoding",
            "connection",
            "X Bad",
            "Ä",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_source("X-A: 1\n{{ name }}: 2\nX-B: {{ v }}").is_ok());
        assert!(check_source("X-A: 1\nContent-Length: 3").is_err());
    }
}
