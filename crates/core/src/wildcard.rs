//! Identifier patterns for rate-limit overrides: `*` stands for any run of characters
//! (none included), every other character for itself (`*@acme.com`, `+1555*`). No
//! escapes: a pattern cannot match a literal `*` other than by `*`.
//!
//! Matching is the greedy two-pointer walk (backtracking only to the last `*`), in time
//! at most proportional to the product of the two lengths, without recursion or
//! allocation.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen, and where in `text` it currently stops.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&byte) = t.get(ti) {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == byte => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` take one more byte, and retry from after it.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// How specific a pattern is: its characters other than `*`. Of several patterns that
/// match, the most specific applies.
pub fn specificity(pattern: &str) -> usize {
    pattern.chars().filter(|&c| c != '*').count()
}

/// Whether `pattern` has a `*` (else it matches only itself).
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains('*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_match_only_themselves() {
        assert!(matches("alice@acme.com", "alice@acme.com"));
        assert!(!matches("alice@acme.com", "alice@acme.co"));
        assert!(!matches("alice@acme.com", "alice@acme.comm"));
        assert!(!matches("a", ""));
        assert!(matches("", ""));
    }

    #[test]
    fn stars_take_any_run_including_none() {
        assert!(matches("*@acme.com", "alice@acme.com"));
        assert!(matches("*@acme.com", "@acme.com"));
        assert!(!matches("*@acme.com", "alice@acme.com.evil"));
        assert!(!matches("*@acme.com", "alice@notacme.co"));
        assert!(matches("+1555*", "+15551234"));
        assert!(matches("a*b*c", "aXXbYYc"));
        assert!(matches("a*b*c", "abc"));
        assert!(!matches("a*b*c", "acb"));
        assert!(matches("*", ""));
        assert!(matches("**", "anything"));
        assert!(matches("*a*a*a*b", "aaaaaaaaaaaaab"));
        assert!(!matches("*a*a*a*b", "aaaaaaaaaaaaaa"));
        // Bytes, not characters: a multi-byte character is matched whole or not at all.
        assert!(matches("*é", "café"));
        assert!(!matches("*e", "café"));
    }

    #[test]
    fn specificity_counts_the_literal_characters() {
        assert_eq!(specificity("*@acme.com"), 9);
        assert_eq!(specificity("*"), 0);
        assert!(specificity("alice@acme.com") > specificity("*@acme.com"));
        assert!(is_pattern("a*") && !is_pattern("a"));
    }
}
