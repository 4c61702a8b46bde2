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

/// A parsed permission query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Permission(String),
    /// Every part holds.
    And(Vec<Query>),
    /// At least one part holds.
    Or(Vec<Query>),
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
}

fn tokens(text: &str) -> Result<Vec<(usize, Token<'_>)>, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((i, Token::Open));
                i += 1;
            }
            b')' => {
                out.push((i, Token::Close));
                i += 1;
            }
            b if name_byte(b) => {
                let start = i;
                while bytes.get(i).copied().is_some_and(name_byte) {
                    i += 1;
                }
                let word = text.get(start..i).unwrap_or_default();
                let token = match word {
                    "AND" => Token::And,
                    "OR" => Token::Or,
                    _ if word.len() > 100 => return Err(QueryError::LongName(start)),
                    _ => Token::Name(word),
                };
                out.push((start, token));
            }
            _ => return Err(QueryError::BadCharacter(i)),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<(usize, Token<'a>)>,
    at: usize,
    end: usize,
    terms: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Token<'a>> {
        self.tokens.get(self.at).map(|(_, t)| *t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn query(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut parts = vec![self.and(depth)?];
        while self.peek() == Some(Token::Or) {
            self.at += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::Or(parts)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Query, QueryError> {
        let mut parts = vec![self.atom(depth)?];
        while self.peek() == Some(Token::And) {
            self.at += 1;
            parts.push(self.atom(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn atom(&mut self, depth: usize) -> Result<Query, QueryError> {
        let position = self.position();
        match self.peek() {
            Some(Token::Name(name)) => {
                self.at += 1;
                self.terms += 1;
                if self.terms > MAX_TERMS {
                    return Err(QueryError::TooManyTerms);
                }
                Ok(Query::Permission(name.to_owned()))
            }
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(QueryError::TooDeep);
                }
                self.at += 1;
                let inner = self.query(depth + 1)?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    Some(_) => Err(QueryError::ExpectedOperator(self.position())),
                    None => Err(QueryError::Unclosed(position)),
                }
            }
            _ => Err(QueryError::ExpectedOperand(position)),
        }
    }
}

impl Query {
    /// Parses `text`; see the module for the grammar.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        if text.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong);
        }
        let tokens = tokens(text)?;
        if tokens.is_empty() {
            return Err(QueryError::Empty);
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            end: text.len(),
            terms: 0,
        };
        let query = parser.query(0)?;
        match parser.peek() {
            None => Ok(query),
            Some(Token::Close) => Err(QueryError::Unopened(parser.position())),
            Some(_) => Err(QueryError::ExpectedOperator(parser.position())),
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

impl std::fmt::Display for Query {
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

    fn p(name: &str) -> Query {
        Query::Permission(name.into())
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
