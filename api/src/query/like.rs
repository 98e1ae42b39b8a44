//! SQL `LIKE` matching: `%` any run, `_` one character, `\` escapes; ASCII case-insensitive.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point for the last `%` (linear in practice, no
    // exponential blow-up on patterns like `%a%a%a%b`).
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    let eq = |a: char, b: char| a.eq_ignore_ascii_case(&b);
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '%' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '_' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && eq(p[pi + 1], t[ti]) => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c != '\\' && eq(c, t[ti]) => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '%')
}

/// The text every match of `pattern` starts with, compared as [`matches`] does (ASCII
/// case-insensitively): the characters before the first `%` or `_`, with `\x` read as `x`.
/// `None` when a match may start with anything.
pub fn literal_prefix(pattern: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' | '_' => break,
            '\\' => match chars.next() {
                Some(n) => out.push(n),
                None => break,
            },
            c => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::literal_prefix;
    use super::matches;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("vm-123%").as_deref(), Some("vm-123"));
        assert_eq!(literal_prefix("vm_1%").as_deref(), Some("vm"));
        assert_eq!(literal_prefix("100\\%x%").as_deref(), Some("100%x"));
        assert_eq!(literal_prefix("exact").as_deref(), Some("exact"));
        assert_eq!(literal_prefix("%vm-1%"), None);
        assert_eq!(literal_prefix("_x"), None);
        assert_eq!(literal_prefix(""), None);
    }

    #[test]
    fn wildcards_escapes_and_case() {
        assert!(matches("192.168.%", "192.168.1.20"));
        assert!(!matches("192.168.%", "10.0.0.1"));
        assert!(matches("vm-_", "VM-1"));
        assert!(!matches("vm-_", "vm-12"));
        assert!(matches("%", ""));
        assert!(matches("%a%b%", "xxaxxbxx"));
        assert!(!matches("%a%a%a%a%a%b", &"a".repeat(200)));
        assert!(matches("100\\%", "100%"));
        assert!(!matches("100\\%", "1000"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }
}
