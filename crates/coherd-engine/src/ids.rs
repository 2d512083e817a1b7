//! Typed ids: a service, a member's slot in its service, an interned label
//! set, and a vector indexed by one of them. Each is a `u32` underneath, so a
//! million members cost what bare integers cost, but a slot cannot be used
//! where a service is meant.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Index, IndexMut};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An id that indexes an [`IdVec`].
pub(crate) trait Id: Copy {
    /// The id of position `i`.
    fn from_index(i: usize) -> Self;
    /// Its position.
    fn index(self) -> usize;
}

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
        #[serde(transparent)]
        pub(crate) struct $name(u32);

        impl Id for $name {
            fn from_index(i: usize) -> $name {
                $name(u32::try_from(i).expect("fewer than 2^32 ids"))
            }

            fn index(self) -> usize {
                self.0 as usize
            }
        }
    };
}

id!(
    /// A service, by its position in the engine's services.
    ServiceId
);
id!(
    /// A member, by its slot in its service's tables (slots of forgotten
    /// members are reused).
    MemberSlot
);
id!(
    /// An interned set of labels that members share.
    LabelSetId
);

impl MemberSlot {
    /// No member: the end of a list.
    pub(crate) const NONE: MemberSlot = MemberSlot(u32::MAX);

    /// Whether this is [`Self::NONE`].
    pub(crate) fn is_none(self) -> bool {
        self == Self::NONE
    }
}

impl LabelSetId {
    /// No labels.
    pub(crate) const NONE: LabelSetId = LabelSetId(u32::MAX);
}

/// A vector indexed by a typed id.
pub(crate) struct IdVec<I, T> {
    items: Vec<T>,
    id: PhantomData<fn(I) -> I>,
}

impl<I, T: Clone> Clone for IdVec<I, T> {
    fn clone(&self) -> IdVec<I, T> {
        IdVec {
            items: self.items.clone(),
            id: PhantomData,
        }
    }
}

impl<I, T> Default for IdVec<I, T> {
    fn default() -> IdVec<I, T> {
        IdVec {
            items: Vec::new(),
            id: PhantomData,
        }
    }
}

impl<I: Id, T> IdVec<I, T> {
    /// `n` copies of `value`.
    pub(crate) fn filled(value: T, n: usize) -> IdVec<I, T>
    where
        T: Clone,
    {
        IdVec {
            items: vec![value; n],
            id: PhantomData,
        }
    }

    /// Appends `value`; returns its id.
    pub(crate) fn push(&mut self, value: T) -> I {
        self.items.push(value);
        I::from_index(self.items.len() - 1)
    }

    /// The item at `id`, if there is one.
    pub(crate) fn get(&self, id: I) -> Option<&T> {
        self.items.get(id.index())
    }

    /// The item at `id`, if there is one, to change.
    pub(crate) fn get_mut(&mut self, id: I) -> Option<&mut T> {
        self.items.get_mut(id.index())
    }

    /// Every item with its id.
    pub(crate) fn iter_enumerated(&self) -> impl Iterator<Item = (I, &T)> {
        self.items
            .iter()
            .enumerate()
            .map(|(i, t)| (I::from_index(i), t))
    }

    /// Bytes of heap held, for memory accounting.
    pub(crate) fn capacity(&self) -> usize {
        self.items.capacity()
    }

    /// Every id.
    pub(crate) fn ids(&self) -> impl Iterator<Item = I> + use<I, T> {
        (0..self.items.len()).map(I::from_index)
    }
}

impl<I, T: Serialize> Serialize for IdVec<I, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(s)
    }
}

impl<'de, I, T: Deserialize<'de>> Deserialize<'de> for IdVec<I, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<IdVec<I, T>, D::Error> {
        Ok(IdVec {
            items: Vec::deserialize(d)?,
            id: PhantomData,
        })
    }
}

impl<I, T> Deref for IdVec<I, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

impl<I, T> DerefMut for IdVec<I, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}

impl<I: Id, T> Index<I> for IdVec<I, T> {
    type Output = T;
    fn index(&self, id: I) -> &T {
        &self.items[id.index()]
    }
}

impl<I: Id, T> IndexMut<I> for IdVec<I, T> {
    fn index_mut(&mut self, id: I) -> &mut T {
        &mut self.items[id.index()]
    }
}
