//! The state behind phase agreement: every (observer, member) pair that
//! disagrees now, and who observes whom. The logic is in the `views` module.

use coherd_model::{Kind, Time};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::ids::{MemberSlot, ServiceId};
use crate::intern::Sym;

/// An (observer, member) pair: the observer by slot, the member by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct PairKey {
    pub obs_svc: ServiceId,
    pub obs_slot: MemberSlot,
    pub tsvc: Sym,
    pub tmem: Sym,
}

/// A pair that disagrees now (pending until the agreement timeout, then open).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PairState {
    pub since: Time,
    pub deadline: Time,
    pub kind: Kind,
    pub open: bool,
    pub grew: bool,
    pub requests: u64,
    pub view: Sym,
    pub phase: Sym,
}

/// Observers and the pairs that disagree.
#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Views {
    /// Pairs that disagree now, pending or open.
    #[serde(with = "crate::checkpoint::sorted")]
    pub pairs: HashMap<PairKey, PairState>,
    /// Observers of each (service, member) by name: who views it.
    #[serde(with = "crate::checkpoint::sorted")]
    pub viewers: HashMap<(Sym, Sym), Vec<(ServiceId, MemberSlot)>>,
}
