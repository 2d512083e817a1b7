//! String interning: every name and value becomes a `u32`.
//!
//! Strings live back to back in one arena; the table maps a hash to an id.
//! A million members share a handful of facet values, and even a million
//! distinct member ids cost little more than their bytes.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

/// An interned string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Sym(u32);

/// "No value": an unreported facet, no phase.
pub(crate) const NONE: Sym = Sym(u32::MAX);

impl Sym {
    /// The lowest and highest symbols, for ranges of ordered keys.
    pub(crate) const MIN: Sym = Sym(0);
    pub(crate) const MAX: Sym = Sym(u32::MAX);
    /// "Any other value": past a bound on values kept apart.
    pub(crate) const OTHER: Sym = Sym(u32::MAX - 1);
}

/// Interns strings into [`Sym`]s.
#[derive(Clone, Default)]
pub(crate) struct Interner {
    arena: String,
    spans: Vec<(u32, u32)>,
    table: HashTable<Sym>,
    hasher: DefaultHashBuilder,
}

impl Interner {
    /// The id of `s`, adding it when new.
    pub(crate) fn intern(&mut self, s: &str) -> Sym {
        let hash = self.hasher.hash_one(s);
        let (arena, spans) = (&self.arena, &self.spans);
        let eq = |&id: &Sym| span_str(arena, spans[id.0 as usize]) == s;
        if let Some(&id) = self.table.find(hash, eq) {
            return id;
        }
        let id = Sym(u32::try_from(self.spans.len()).expect("fewer than 2^32 strings"));
        let start = self.arena.len() as u32;
        self.arena.push_str(s);
        self.spans.push((start, s.len() as u32));
        let (arena, spans, hasher) = (&self.arena, &self.spans, &self.hasher);
        self.table.insert_unique(hash, id, |&id| {
            hasher.hash_one(span_str(arena, spans[id.0 as usize]))
        });
        id
    }

    /// The id of `s` if it was interned.
    pub(crate) fn get(&self, s: &str) -> Option<Sym> {
        let hash = self.hasher.hash_one(s);
        self.table
            .find(hash, |&id| {
                span_str(&self.arena, self.spans[id.0 as usize]) == s
            })
            .copied()
    }

    /// The string behind `id`.
    pub(crate) fn resolve(&self, id: Sym) -> &str {
        span_str(&self.arena, self.spans[id.0 as usize])
    }

    /// Bytes held, for memory accounting.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.spans.capacity() * 8 + self.table.capacity() * 5
    }
}

/// The strings in id order; the lookup table is rebuilt on load.
impl Serialize for Interner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.spans.iter().map(|&span| span_str(&self.arena, span)))
    }
}

impl<'de> Deserialize<'de> for Interner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Interner, D::Error> {
        let strings = Vec::<&str>::deserialize(d)?;
        let mut interner = Interner::default();
        for s in strings {
            let before = interner.spans.len();
            interner.intern(s);
            if interner.spans.len() == before {
                return Err(serde::de::Error::custom(format!(
                    "the string {s:?} is interned twice"
                )));
            }
        }
        Ok(interner)
    }
}

fn span_str(arena: &str, (start, len): (u32, u32)) -> &str {
    &arena[start as usize..(start + len) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_string_same_id() {
        let mut i = Interner::default();
        let a = i.intern("1.4.2");
        let b = i.intern("1.4.1");
        assert_ne!(a, b);
        assert_eq!(i.intern("1.4.2"), a);
        assert_eq!(i.resolve(b), "1.4.1");
        assert_eq!(i.get("nope"), None);
        for n in 0..10_000 {
            i.intern(&format!("m-{n}"));
        }
        assert_eq!(i.get("m-9999").map(|s| i.resolve(s)), Some("m-9999"));
        assert_eq!(i.intern("1.4.2"), a);
    }
}
