//! Permission queries: what a verification asks of a key's permissions, written as
//! `documents.read AND (documents.write OR admin)`.
//!
//! Grammar (`AND` binds tighter than `OR`; the operators are upper case, so no valid
//! permission name can be mistaken for one):
//!
//! ```text
//! query := and ("OR" and)*
//! and   := atom ("AND" atom)*
//! atom  := permission | "(" query ")"
//! permission := 1-100 of [A-Za-z0-9_.:*/-]
//! ```
//!
//! A query holds at most [`MAX_TERMS`] permissions and nests at most [`MAX_DEPTH`]
//! parentheses; a syntax error names its byte position and never echoes the query.
//! Permissions are compared exactly: `documents.*` is a permission of its own, not a
//! wildcard.

/// Longest query accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 1_000;
/// Most permission names in one query.
pub const MAX_TERMS: usize = 64;
/// Deepest nesting of parentheses.
pub const MAX_DEPTH: usize = 16;

/// A parsed permission query, borrowing its names from the text it was parsed from
/// (parsing allocates only the groups' lists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query<'a> {
    Permission(&'a str),
    /// Every part holds.
    And(Vec<Query<'a>>),
    /// At least one part holds.
    Or(Vec<Query<'a>>),
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_QUERY_LEN} bytes")]
    TooLong,
    #[error("names more than {MAX_TERMS} permissions")]
    TooManyTerms,
    #[error("nests parentheses deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("expected a permission or `(` at byte {0}")]
    ExpectedOperand(usize),
    #[error("expected AND, OR or `)` at byte {0}")]
    ExpectedOperator(usize),
    #[error("has a `(` at byte {0} that is never closed")]
    Unclosed(usize),
    #[error("has a `)` at byte {0} that closes nothing")]
    Unopened(usize),
    #[error("has a character at byte {0} that no permission name may hold")]
    BadCharacter(usize),
    #[error("has a permission name longer than 100 characters at byte {0}")]
    LongName(usize),
}

/// Whether `name` is a valid permission name: 1-100 characters of `[A-Za-z0-9_.:*/-]`,
/// and not `AND` or `OR`.
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len()) && name.bytes().all(name_byte) && !matches!(name, "AND" | "OR")
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_.:*/-".contains(&b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Name(&'a str),
    And,
    Or,
    Open,
    Close,
    End,
}

/// Reads tokens one at a time, keeping one looked-at token.
struct Parser<'a> {
    text: &'a str,
    /// Where the next token is read from.
    at: usize,
    /// The next token and where it starts, once looked at.
    peeked: Option<(usize, Token<'a>)>,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn peek(&mut self) -> Result<(usize, Token<'a>), QueryError> {
        if let Some(peeked) = self.peeked {
            return Ok(peeked);
        }
        let bytes = self.text.as_bytes();
        while bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
        let start = self.at;
        let token = match bytes.get(start) {
            None => Token::End,
            Some(b'(') => {
                self.at += 1;
                Token::Open
            }
            Some(b')') => {
                self.at += 1;
                Token::Close
            }
            Some(&b) if name_byte(b) => {
                while bytes.get(self.at).copied().is_some_and(name_byte) {
                    self.at += 1;
                }
                match self.text.get(start..self.at).unwrap_or_default() {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    word if word.len() > 100 => return Err(QueryError::LongName(start)),
                    word => Token::Name(word),
                }
            }
            Some(_) => return Err(QueryError::BadCharacter(start)),
        };
        self.peeked = Some((start, token));
        Ok((start, token))
    }

    fn take(&mut self) {
        self.peeked = None;
    }

    fn query(&mut self, depth: usize) -> Result<Query<'a>, QueryError> {
        let first = self.and(depth)?;
        if self.peek()?.1 != Token::Or {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.peek()?.1 == Token::Or {
            self.take();
            parts.push(self.and(depth)?);
        }
        Ok(Query::Or(parts))
    }

    fn and(&mut self, depth: usize) -> Result<Query<'a>, QueryError> {
        let first = self.atom(depth)?;
        if self.peek()?.1 != Token::And {
            return Ok(first);
        }
        let mut parts = vec![first];
        while self.peek()?.1 == Token::And {
            self.take();
            parts.push(self.atom(depth)?);
        }
        Ok(Query::And(parts))
    }

    fn atom(&mut self, depth: usize) -> Result<Query<'a>, QueryError> {
        let (position, token) = self.peek()?;
        match token {
            Token::Name(name) => {
                self.take();
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(QueryError::TooManyTerms);
                }
                Ok(Query::Permission(name))
            }
            Token::Open => {
                if depth >= MAX_DEPTH {
                    return Err(QueryError::TooDeep);
                }
                self.take();
                let inner = self.query(depth + 1)?;
                match self.peek()? {
                    (_, Token::Close) => {
                        self.take();
                        Ok(inner)
                    }
                    (_, Token::End) => Err(QueryError::Unclosed(position)),
                    (at, _) => Err(QueryError::ExpectedOperator(at)),
                }
            }
            _ => Err(QueryError::ExpectedOperand(position)),
        }
    }
}

impl<'a> Query<'a> {
    /// Parses `text`; see the module for the grammar.
    pub fn parse(text: &'a str) -> Result<Self, QueryError> {
        if text.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong);
        }
        let mut parser = Parser {
            text,
            at: 0,
            peeked: None,
            terms: 0,
        };
        if parser.peek()?.1 == Token::End {
            return Err(QueryError::Empty);
        }
        let query = parser.query(0)?;
        match parser.peek()? {
            (_, Token::End) => Ok(query),
            (at, Token::Close) => Err(QueryError::Unopened(at)),
            (at, _) => Err(QueryError::ExpectedOperator(at)),
        }
    }

    /// Whether permissions for which `granted` is true satisfy the query.
    pub fn holds(&self, granted: &impl Fn(&str) -> bool) -> bool {
        match self {
            Self::Permission(name) => granted(name),
            Self::And(parts) => parts.iter().all(|p| p.holds(granted)),
            Self::Or(parts) => parts.iter().any(|p| p.holds(granted)),
        }
    }

    /// The query's permissions that `granted` lacks, each once, in the order written:
    /// what a refusal reports as missing.
    pub fn missing(&self, granted: &impl Fn(&str) -> bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.each_name(&mut |name| {
            if !granted(name) && !out.iter().any(|m| m == name) {
                out.push(name.to_owned());
            }
        });
        out
    }

    fn each_name(&self, f: &mut impl FnMut(&str)) {
        match self {
            Self::Permission(name) => f(name),
            Self::And(parts) | Self::Or(parts) => parts.iter().for_each(|p| p.each_name(f)),
        }
    }
}

impl std::fmt::Display for Query<'_> {
    /// The query written back in the grammar, fully parenthesised.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (parts, op) = match self {
            Self::Permission(name) => return f.write_str(name),
            Self::And(parts) => (parts, " AND "),
            Self::Or(parts) => (parts, " OR "),
        };
        f.write_str("(")?;
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                f.write_str(op)?;
            }
            write!(f, "{part}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Query<'_> {
        Query::Permission(name)
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        assert_eq!(
            Query::parse("a OR b AND c").unwrap(),
            Query::Or(vec![p("a"), Query::And(vec![p("b"), p("c")])])
        );
        assert_eq!(
            Query::parse("documents.read AND (documents.write OR admin)").unwrap(),
            Query::And(vec![
                p("documents.read"),
                Query::Or(vec![p("documents.write"), p("admin")])
            ])
        );
        assert_eq!(Query::parse(" ((x)) ").unwrap(), p("x"));
    }

    #[test]
    fn holds_and_missing_follow_the_query() {
        let q = Query::parse("documents.read AND (documents.write OR admin)").unwrap();
        let has = |names: &'static [&'static str]| move |n: &str| names.contains(&n);
        assert!(q.holds(&has(&["documents.read", "admin"])));
        assert!(!q.holds(&has(&["documents.read"])));
        assert_eq!(
            q.missing(&has(&["documents.read"])),
            ["documents.write", "admin"]
        );
        assert!(!q.holds(&has(&["admin", "documents.write"])));
        assert_eq!(
            q.missing(&has(&["admin"])),
            ["documents.read", "documents.write"]
        );
    }

    #[test]
    fn syntax_errors_name_their_position() {
        for (text, error) in [
            ("", QueryError::Empty),
            ("   ", QueryError::Empty),
            ("a AND", QueryError::ExpectedOperand(5)),
            ("AND a", QueryError::ExpectedOperand(0)),
            ("a b", QueryError::ExpectedOperator(2)),
            ("a OR OR b", QueryError::ExpectedOperand(5)),
            ("(a OR b", QueryError::Unclosed(0)),
            ("a OR b)", QueryError::Unopened(6)),
            ("()", QueryError::ExpectedOperand(1)),
            ("a and b", QueryError::ExpectedOperator(2)),
            ("a & b", QueryError::BadCharacter(2)),
            ("a AND \"b\"", QueryError::BadCharacter(6)),
            ("é", QueryError::BadCharacter(0)),
        ] {
            assert_eq!(Query::parse(text), Err(error), "{text:?}");
        }
        assert_eq!(Query::parse(&"x".repeat(101)), Err(QueryError::LongName(0)));
        let many = vec!["p"; MAX_TERMS + 1].join(" OR ");
        assert_eq!(Query::parse(&many), Err(QueryError::TooManyTerms));
        assert!(Query::parse(&vec!["p"; MAX_TERMS].join(" OR ")).is_ok());
        let deep = format!(
            "{}p{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(Query::parse(&deep), Err(QueryError::TooDeep));
        let deep = format!("{}p{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(Query::parse(&deep).is_ok());
        assert_eq!(Query::parse(&"a ".repeat(600)), Err(QueryError::TooLong));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("documents.read"));
        assert!(valid_name("billing:*"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(101)));
        assert!(!valid_name("AND") && !valid_name("OR") && valid_name("and"));
    }
}
