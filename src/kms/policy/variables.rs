//! Policy variables (`${aws:username}`) in the Resource element and in String/Arn
//! condition values of identity policies, substituted per request from the request's
//! condition keys, as IAM does.
//!
//! Invariants: only identity policies with `"Version": "2012-10-17"` substitute (IAM takes
//! `${...}` literally in older policies; sealgate refuses it there instead of silently
//! matching the literal text); key policies keep `${` as plain text, so their matching is
//! unchanged. A variable is replaced by the single value of the condition key of that
//! name; a key that is absent or multivalued, with no `${key, 'default'}`, leaves the text
//! without a value, and an element without a value matches nothing (IAM's rule).
//! Substituted values are matched like the rest of the pattern (`*` and `?` in a value
//! would be wildcards): callers that let requests choose values refuse such variables
//! (see `Policy::variables`).

use std::borrow::Cow;

use super::ConditionKeys;

/// How a policy treats `${...}` in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variables {
    /// Plain text (key policies).
    Literal,
    /// Policy variables (identity policies, Version 2012-10-17).
    Substituted,
    /// Refused (identity policies without Version 2012-10-17, where IAM would match the
    /// literal text).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Lit(String),
    Var {
        name: String,
        default: Option<String>,
    },
}

/// A policy string: plain, or with variables to substitute per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Text {
    Plain(String),
    Template(Vec<Piece>),
}

impl Text {
    /// Parses `s` under `vars`; errors say what is wrong with a variable.
    pub(super) fn parse(s: &str, vars: Variables) -> Result<Text, String> {
        if !s.contains("${") || vars == Variables::Literal {
            return Ok(Text::Plain(s.to_string()));
        }
        if vars == Variables::Refused {
            return Err(format!(
                "'{s}' uses a policy variable, which IAM takes literally unless the policy has \
                 \"Version\": \"2012-10-17\"; add it"
            ));
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            lit.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("'{s}': unterminated policy variable"))?;
            let inner = &after[..end];
            rest = &after[end + 1..];
            match inner {
                "$" => lit.push('$'),
                "*" | "?" => {
                    return Err(format!(
                        "'{s}': ${{{inner}}} (a literal {inner}) is not supported by sealgate"
                    ));
                }
                _ => {
                    let (name, default) = match inner.split_once(',') {
                        Some((n, d)) => {
                            let d = d.trim();
                            let d = d
                                .strip_prefix('\'')
                                .and_then(|d| d.strip_suffix('\''))
                                .ok_or_else(|| {
                                    format!(
                                        "'{s}': the default of ${{{inner}}} must be in single quotes"
                                    )
                                })?;
                            (n.trim(), Some(d.to_string()))
                        }
                        None => (inner.trim(), None),
                    };
                    if name.is_empty() {
                        return Err(format!("'{s}': empty policy variable"));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var {
                        name: name.to_string(),
                        default,
                    });
                }
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Text::Template(pieces))
    }

    /// The text for this request; `None` when a variable has no value.
    pub(super) fn render<'a>(&'a self, keys: &dyn ConditionKeys) -> Option<Cow<'a, str>> {
        let pieces = match self {
            Text::Plain(s) => return Some(Cow::Borrowed(s)),
            Text::Template(p) => p,
        };
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var { name, default } => {
                    let values = keys.values(name).unwrap_or_default();
                    match (values.as_slice(), default) {
                        ([one], _) => out.push_str(one),
                        (_, Some(d)) => out.push_str(d),
                        _ => return None,
                    }
                }
            }
        }
        Some(Cow::Owned(out))
    }

    /// The names of the variables in this text.
    pub(super) fn variables(&self) -> impl Iterator<Item = &str> {
        let pieces: &[Piece] = match self {
            Text::Plain(_) => &[],
            Text::Template(p) => p,
        };
        pieces.iter().filter_map(|p| match p {
            Piece::Var { name, .. } => Some(name.as_str()),
            Piece::Lit(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::policy::ConditionMap;

    fn render(s: &str, keys: &ConditionMap) -> Option<String> {
        Text::parse(s, Variables::Substituted)
            .unwrap()
            .render(keys)
            .map(Cow::into_owned)
    }

    #[test]
    fn variables_are_substituted_from_the_requests_keys() {
        let keys = ConditionMap::new().with("aws:username", "bob");
        assert_eq!(
            render("arn:aws:s3:::home/${aws:username}/*", &keys).as_deref(),
            Some("arn:aws:s3:::home/bob/*")
        );
        assert_eq!(
            render("${AWS:UserName}-${aws:username}", &keys).as_deref(),
            Some("bob-bob"),
            "key names are case-insensitive"
        );
        assert_eq!(render("a${$}b", &keys).as_deref(), Some("a$b"));
        // No value: nothing matches, unless a default is given.
        assert_eq!(render("home/${aws:userid}", &keys), None);
        assert_eq!(
            render("home/${aws:userid, 'nobody'}/x", &keys).as_deref(),
            Some("home/nobody/x")
        );
        let mut multi = ConditionMap::new();
        multi.set("s3:x", ["a", "b"]);
        assert_eq!(render("${s3:x}", &multi), None, "multivalued");
        let t = Text::parse("${aws:username}/${s3:prefix,'p'}", Variables::Substituted).unwrap();
        assert_eq!(
            t.variables().collect::<Vec<_>>(),
            ["aws:username", "s3:prefix"]
        );
    }

    #[test]
    fn key_policies_keep_the_text_and_old_versions_are_refused() {
        let t = Text::parse("a/${aws:username}", Variables::Literal).unwrap();
        assert_eq!(
            t.render(&ConditionMap::new()).as_deref(),
            Some("a/${aws:username}")
        );
        let e = Text::parse("a/${aws:username}", Variables::Refused).unwrap_err();
        assert!(e.contains("\"Version\": \"2012-10-17\""), "{e}");
        for bad in ["${aws:username", "${*}", "${x, nobody}", "${}"] {
            assert!(Text::parse(bad, Variables::Substituted).is_err(), "{bad}");
        }
    }
}
