//! Who may work for the hub: only miners with at least the hub's minimum staked with
//! Verification, so a key made for free cannot take work, win votes or be paid. Stakes are
//! read from the chain and kept for a while; a miner that unstakes drops out when its
//! entry expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};

use crate::miner::chain_view::{ChainError, ChainView};

/// Most stakes kept: one per miner that asked to join.
const MAX_CACHED: usize = 4096;

/// A miner the hub does not take.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotAdmitted {
    #[error("stake of {have} wei is below this hub's minimum of {min} wei")]
    Understaked { have: U256, min: U256 },
    #[error("stake unknown: {0}")]
    Unreadable(String),
}

pub struct StakeGate {
    chain: Arc<dyn ChainView>,
    min: U256,
    ttl: Duration,
    cache: Mutex<HashMap<Address, (U256, Instant)>>,
}

impl StakeGate {
    /// `min` is in SNM wei and must be above zero (zero would admit anyone).
    pub fn new(chain: Arc<dyn ChainView>, min: U256, ttl: Duration) -> StakeGate {
        StakeGate {
            chain,
            min: min.max(U256::from(1)),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn min(&self) -> U256 {
        self.min
    }

    /// Whether `miner` has the minimum staked now (as of at most `ttl` ago).
    pub async fn admits(&self, miner: Address) -> Result<(), NotAdmitted> {
        let cached = self
            .cache
            .lock()
            .expect("stake cache lock")
            .get(&miner)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(s, _)| *s);
        let have = match cached {
            Some(s) => s,
            None => {
                let s = self
                    .chain
                    .stake_of(miner)
                    .await
                    .map_err(|e: ChainError| NotAdmitted::Unreadable(e.to_string()))?;
                let mut cache = self.cache.lock().expect("stake cache lock");
                if cache.len() >= MAX_CACHED {
                    cache.retain(|_, (_, at)| at.elapsed() < self.ttl);
                    if cache.len() >= MAX_CACHED {
                        cache.clear();
                    }
                }
                cache.insert(miner, (s, Instant::now()));
                s
            }
        };
        if have < self.min {
            return Err(NotAdmitted::Understaked {
                have,
                min: self.min,
            });
        }
        Ok(())
    }
}
