//! Label matchers, as in Alertmanager: `name=value`, `!=`, `=~` and `!~`
//! (regular expressions are anchored).

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::alert::Labels;
use crate::error::ConfigError;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Matches the regular expression.
    Re,
    /// Does not match.
    NotRe,
}

/// One label matcher; a missing label matches as the empty string.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label.
    pub name: String,
    /// The comparison.
    pub op: Op,
    /// The value or pattern.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Matcher) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    /// Parses `name=value`, `name!=value`, `name=~re` or `name!~re`.
    pub fn parse(s: &str) -> Result<Matcher, ConfigError> {
        let bad = || {
            ConfigError::Matcher(format!(
                "{s:?}: write name=value, name!=value, name=~regex or name!~regex"
            ))
        };
        let (i, op, len) = ["!~", "=~", "!=", "="]
            .iter()
            .filter_map(|t| s.find(t).map(|i| (i, *t)))
            .min_by_key(|(i, t)| (*i, std::cmp::Reverse(t.len())))
            .map(|(i, t)| {
                let op = match t {
                    "=" => Op::Eq,
                    "!=" => Op::Ne,
                    "=~" => Op::Re,
                    _ => Op::NotRe,
                };
                (i, op, t.len())
            })
            .ok_or_else(bad)?;
        let name = s[..i].trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(bad());
        }
        let raw = s[i + len..].trim();
        let value = raw.trim_matches('"').to_string();
        if !raw.starts_with('"')
            && let Some(rest) = value.strip_prefix(['=', '~'])
        {
            // `service==checkout` or `service=~~x`: a typo, not a value starting with `=`.
            return Err(ConfigError::Matcher(format!(
                "{s:?}: the value starts with {:?}; did you mean {name}{}{rest}? (quote a value that really starts with it: {name}{}\"{value}\")",
                &value[..1],
                &s[i..i + len],
                &s[i..i + len],
            )));
        }
        Matcher::new(name, op, &value)
    }

    /// A matcher from parts.
    pub fn new(name: &str, op: Op, value: &str) -> Result<Matcher, ConfigError> {
        let re = match op {
            Op::Re | Op::NotRe => Some(Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                ConfigError::Matcher(format!("{name}: invalid regular expression {value:?}: {e}"))
            })?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether `labels` satisfy this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match self.op {
            Op::Eq => v == self.value,
            Op::Ne => v != self.value,
            Op::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            Op::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// Whether every matcher matches.
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        write!(f, "{}{op}\"{}\"", self.name, self.value)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Matcher, D::Error> {
        let s = String::deserialize(d)?;
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubled_operator_is_a_typo_not_a_value() {
        let e = Matcher::parse("service==checkout").unwrap_err().to_string();
        assert!(e.contains("did you mean service=checkout"), "{e}");
        assert!(Matcher::parse("service=~~x").is_err());
        let quoted = Matcher::parse(r#"service="=checkout""#).unwrap();
        assert!(quoted.matches(&[("service".to_string(), "=checkout".to_string())].into()));
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_four_operators() {
        let l = labels(&[("kind", "drift"), ("service", "checkout")]);
        assert!(Matcher::parse("kind=drift").unwrap().matches(&l));
        assert!(Matcher::parse("kind!=silent").unwrap().matches(&l));
        assert!(Matcher::parse("service=~check.*").unwrap().matches(&l));
        assert!(
            !Matcher::parse("service=~check").unwrap().matches(&l),
            "anchored"
        );
        assert!(
            Matcher::parse("member!~.+").unwrap().matches(&l),
            "missing is empty"
        );
        assert!(Matcher::parse(r#"kind="drift""#).unwrap().matches(&l));
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse("kind=~(").is_err());
    }
}
