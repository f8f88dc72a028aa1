//! Jinja2's `wordwrap` filter, which wraps each line of the text with Python's
//! `textwrap.wrap` (`expand_tabs` and `replace_whitespace` off, whitespace at line ends
//! dropped) and joins the pieces with the wrap string.

/// textwrap's whitespace: `\t\n\x0b\x0c\r` and space.
fn is_ws(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// A letter as textwrap's `[^\d\W]` means it: a word character that is not a digit.
fn is_letter(c: char) -> bool {
    (c.is_alphanumeric() || c == '_') && !c.is_numeric()
}

/// textwrap's "word punctuation": `[\w!"'&.,?]`.
fn is_word_punct(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || matches!(c, '!' | '"' | '\'' | '&' | '.' | ',' | '?')
}

/// Python's `str.splitlines()`.
fn split_lines(s: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\r' if chars.peek().is_some_and(|&(_, n)| n == '\n') => {
                chars.next();
                i + 2
            }
            '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{1c}' | '\u{1d}' | '\u{1e}' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                i + c.len_utf8()
            }
            _ => continue,
        };
        lines.push(&s[start..i]);
        start = end;
    }
    if start < s.len() {
        lines.push(&s[start..]);
    }
    lines
}

/// textwrap's chunks: runs of whitespace and words, words split after hyphens as its
/// `wordsep_re` does when `break_on_hyphens`.
fn chunks(text: &str, break_on_hyphens: bool) -> Vec<Vec<char>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        if is_ws(chars[i]) {
            while i < chars.len() && is_ws(chars[i]) {
                i += 1;
            }
            out.push(chars[start..i].to_vec());
            continue;
        }
        let word_end = (i..chars.len()).find(|&j| is_ws(chars[j])).unwrap_or(chars.len());
        if !break_on_hyphens {
            out.push(chars[start..word_end].to_vec());
            i = word_end;
            continue;
        }
        // An em-dash (`--` after word punctuation, before a word character) stands alone.
        let dashes = (i..word_end).take_while(|&j| chars[j] == '-').count();
        if dashes >= 2
            && i > 0
            && is_word_punct(chars[i - 1])
            && chars.get(i + dashes).is_some_and(|&c| c.is_alphanumeric() || c == '_')
        {
            out.push(chars[i..i + dashes].to_vec());
            i += dashes;
            continue;
        }
        // The shortest word piece: up to a hyphen that may break, or before an em-dash, or
        // to the end of the word.
        let mut end = word_end;
        for j in i + 1..word_end {
            let hyphen_break = chars[j] == '-'
                && j > i
                && ((j >= 2 && is_letter(chars[j - 2]) && is_letter(chars[j - 1]))
                    || (j >= 3 && is_letter(chars[j - 3]) && chars[j - 2] == '-' && is_letter(chars[j - 1])))
                && chars.get(j + 1).is_some_and(|&c| is_letter(c))
                && (chars.get(j + 2).is_some_and(|&c| is_letter(c))
                    || (chars.get(j + 2) == Some(&'-') && chars.get(j + 3).is_some_and(|&c| is_letter(c))));
            if hyphen_break {
                end = j + 1;
                break;
            }
            let em_dash = is_word_punct(chars[j - 1])
                && chars[j] == '-'
                && chars.get(j + 1) == Some(&'-')
                && (j..word_end)
                    .find(|&k| chars[k] != '-')
                    .is_some_and(|k| chars[k].is_alphanumeric() || chars[k] == '_');
            if em_dash {
                end = j;
                break;
            }
        }
        out.push(chars[start..end].to_vec());
        i = end;
    }
    out
}

/// `textwrap.wrap(line, width, ...)`.
fn wrap(line: &str, width: usize, break_long_words: bool, break_on_hyphens: bool) -> Vec<String> {
    let mut rest: Vec<Vec<char>> = chunks(line, break_on_hyphens);
    rest.reverse();
    let blank = |c: &[char]| c.iter().all(|&ch| ch.is_whitespace());
    let mut lines: Vec<String> = Vec::new();
    while !rest.is_empty() {
        let mut cur: Vec<Vec<char>> = Vec::new();
        let mut cur_len = 0;
        // Whitespace starting a line is dropped, except at the very start of the text.
        if !lines.is_empty() && rest.last().is_some_and(|c| blank(c)) {
            rest.pop();
        }
        while let Some(next) = rest.last() {
            if cur_len + next.len() <= width {
                cur_len += next.len();
                cur.push(rest.pop().unwrap_or_default());
            } else {
                break;
            }
        }
        if rest.last().is_some_and(|c| c.len() > width) {
            let space_left = if width < 1 { 1 } else { width - cur_len };
            if break_long_words {
                let Some(chunk) = rest.pop() else { break };
                let mut end = space_left.min(chunk.len());
                if break_on_hyphens && chunk.len() > space_left {
                    let hyphen = chunk[..space_left.min(chunk.len())].iter().rposition(|&c| c == '-');
                    if let Some(h) = hyphen.filter(|&h| h > 0 && chunk[..h].iter().any(|&c| c != '-')) {
                        end = h + 1;
                    }
                }
                cur.push(chunk[..end].to_vec());
                rest.push(chunk[end..].to_vec());
            } else if cur.is_empty() {
                cur.extend(rest.pop());
            }
        }
        if cur.last().is_some_and(|c| blank(c)) {
            cur.pop();
        }
        if !cur.is_empty() {
            lines.push(cur.concat().into_iter().collect());
        }
    }
    lines
}

/// Jinja2's `wordwrap(s, width, break_long_words, wrapstring, break_on_hyphens)`.
pub fn wordwrap(s: &str, width: usize, break_long_words: bool, wrapstring: &str, break_on_hyphens: bool) -> String {
    split_lines(s)
        .into_iter()
        .map(|line| wrap(line, width, break_long_words, break_on_hyphens).join(wrapstring))
        .collect::<Vec<_>>()
        .join(wrapstring)
}

#[cfg(test)]
mod tests {
    use super::wordwrap;

    #[test]
    fn wraps_as_textwrap_does() {
        assert_eq!(wordwrap("one two  three", 9, true, "\n", true), "one two\nthree");
        assert_eq!(
            wordwrap("a-very-long-hyphenated-word-that-goes-on", 8, true, "\n", true),
            "a-very-\nlong-hyp\nhenated-\nword-\nthat-\ngoes-on"
        );
        assert_eq!(wordwrap("abcdefghij", 4, false, "\n", true), "abcdefghij");
        assert_eq!(wordwrap("abcdefghij", 4, true, "|", true), "abcd|efgh|ij");
        assert_eq!(wordwrap("x\n\ny", 5, true, "\n", true), "x\n\ny");
    }
}
