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

#[cfg(test)]
mod tests {
    use super::*;

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
