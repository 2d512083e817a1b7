//! Label sets, interned: members in one zone of one region share one set.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::ids::{IdVec, LabelSetId};
use crate::intern::Sym;

/// Every distinct set of (label, value) pairs seen, sorted by label.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct LabelSets {
    #[serde(with = "crate::checkpoint::sorted")]
    ids: HashMap<Vec<(Sym, Sym)>, LabelSetId>,
    sets: IdVec<LabelSetId, Vec<(Sym, Sym)>>,
}

impl LabelSets {
    /// The set `current` with `updates` merged in by label.
    pub(crate) fn merge(
        &mut self,
        current: LabelSetId,
        updates: impl IntoIterator<Item = (Sym, Sym)>,
    ) -> LabelSetId {
        let mut set: Vec<(Sym, Sym)> = self.get(current).to_vec();
        for (k, v) in updates {
            match set.iter_mut().find(|(kk, _)| *kk == k) {
                Some(e) => e.1 = v,
                None => set.push((k, v)),
            }
        }
        set.sort_unstable();
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.push(set.clone());
        self.ids.insert(set, id);
        id
    }

    /// The pairs of a set; none for [`LabelSetId::NONE`].
    pub(crate) fn get(&self, id: LabelSetId) -> &[(Sym, Sym)] {
        self.sets.get(id).map_or(&[], Vec::as_slice)
    }
}
