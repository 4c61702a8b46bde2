//! Property tests for permission queries: random expressions, written out and parsed
//! back, decide every grant exactly as a reference evaluator over the expression itself;
//! `missing` names what would make a refused query hold; the parser never panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use std::collections::HashSet;

use keyhaven_core::permissions::Query;
use proptest::prelude::*;

const NAMES: &[&str] = &[
    "a",
    "b",
    "docs.read",
    "docs.write",
    "billing:*",
    "x-1",
    "and",
];

/// An expression as the test builds it, evaluated by the test's own rules.
#[derive(Debug, Clone)]
enum Expr {
    Name(&'static str),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn eval(&self, granted: &HashSet<&str>) -> bool {
        match self {
            Expr::Name(n) => granted.contains(n),
            Expr::And(parts) => parts.iter().all(|p| p.eval(granted)),
            Expr::Or(parts) => parts.iter().any(|p| p.eval(granted)),
        }
    }

    /// Written with the fewest parentheses the precedence allows, and `spaced` blanks.
    fn write(&self, spaced: &str, parent_is_and: bool) -> String {
        match self {
            Expr::Name(n) => (*n).to_owned(),
            Expr::And(parts) => parts
                .iter()
                .map(|p| p.write(spaced, true))
                .collect::<Vec<_>>()
                .join(&format!("{spaced}AND{spaced}")),
            Expr::Or(parts) => {
                let inner = parts
                    .iter()
                    .map(|p| p.write(spaced, false))
                    .collect::<Vec<_>>()
                    .join(&format!("{spaced}OR{spaced}"));
                if parent_is_and {
                    format!("({inner})")
                } else {
                    inner
                }
            }
        }
    }
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = proptest::sample::select(NAMES).prop_map(Expr::Name);
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            proptest::collection::vec(inner, 2..4).prop_map(Expr::Or),
        ]
    })
}

fn grants() -> impl Strategy<Value = HashSet<&'static str>> {
    proptest::sample::subsequence(NAMES, 0..=NAMES.len()).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn parsed_queries_decide_as_the_reference_evaluator(
        e in expr(),
        granted in grants(),
        spaced in prop_oneof![Just(" "), Just("  "), Just("\n"), Just(" \t ")],
    ) {
        let text = e.write(spaced, false);
        let query = Query::parse(&text).unwrap();
        let has = |n: &str| granted.contains(n);
        prop_assert_eq!(query.holds(&has), e.eval(&granted), "{}", text);
        // Written back fully parenthesised, it parses to the same query.
        let written = query.to_string();
        prop_assert_eq!(Query::parse(&written).unwrap(), query.clone());
        // A refused query names what it lacks, and granting that makes it hold.
        let missing = query.missing(&has);
        if !e.eval(&granted) {
            prop_assert!(!missing.is_empty());
            let mut more = granted.clone();
            for m in &missing {
                more.insert(NAMES.iter().find(|n| **n == m.as_str()).unwrap());
            }
            prop_assert!(e.eval(&more));
        }
        for m in &missing {
            prop_assert!(!granted.contains(m.as_str()));
        }
    }

    #[test]
    fn any_text_parses_or_is_refused_without_panicking(text in ".{0,200}") {
        let _ = Query::parse(&text);
    }

    #[test]
    fn operator_soup_never_panics(
        parts in proptest::collection::vec(
            prop_oneof![Just("a"), Just("AND"), Just("OR"), Just("("), Just(")"), Just(" ")],
            0..60,
        )
    ) {
        let _ = Query::parse(&parts.concat());
    }
}
