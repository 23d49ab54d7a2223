//! How a hub decides between the replicas of one work unit: the digest a strict majority of
//! the requested replicas returned wins; everyone who returned another digest is a cheater
//! (or broken) and gets neither pay nor the benefit of the doubt. Without a strict majority
//! there is no decision yet: the unit needs more replicas.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `digest` won; `agree` are paid, `disagree` are reported.
    Agreed {
        digest: B256,
        agree: Vec<Address>,
        disagree: Vec<Address>,
    },
    /// Not enough matching results to decide (missing replicas or a split vote).
    Undecided { best_votes: usize, needed: usize },
}

/// Decides a unit from `(miner, digest)` reports for `replicas` requested replicas. A
/// miner counts once (its first report).
pub fn decide(replicas: u16, reports: &[(Address, B256)]) -> Decision {
    let mut first: BTreeMap<Address, B256> = BTreeMap::new();
    for (miner, digest) in reports {
        first.entry(*miner).or_insert(*digest);
    }
    let mut votes: BTreeMap<B256, usize> = BTreeMap::new();
    for digest in first.values() {
        *votes.entry(*digest).or_default() += 1;
    }
    let needed = usize::from(replicas) / 2 + 1;
    let best = votes.iter().max_by_key(|(_, n)| **n);
    match best {
        Some((digest, n)) if *n >= needed => {
            let (agree, disagree) = first.iter().partition::<Vec<_>, _>(|(_, d)| *d == digest);
            Decision::Agreed {
                digest: *digest,
                agree: agree.into_iter().map(|(m, _)| *m).collect(),
                disagree: disagree.into_iter().map(|(m, _)| *m).collect(),
            }
        }
        _ => Decision::Undecided {
            best_votes: best.map_or(0, |(_, n)| *n),
            needed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: u8) -> Address {
        Address::repeat_byte(n)
    }
    fn d(n: u8) -> B256 {
        B256::repeat_byte(n)
    }

    #[test]
    fn majority_wins_and_the_minority_is_named() {
        let got = decide(3, &[(m(1), d(9)), (m(2), d(6)), (m(3), d(9))]);
        assert_eq!(
            got,
            Decision::Agreed {
                digest: d(9),
                agree: vec![m(1), m(3)],
                disagree: vec![m(2)],
            }
        );
    }

    #[test]
    fn no_strict_majority_of_the_requested_replicas_is_undecided() {
        // 2 of 4 is not a strict majority; 1 of 3 (two replicas missing) neither.
        assert_eq!(
            decide(4, &[(m(1), d(1)), (m(2), d(1)), (m(3), d(2)), (m(4), d(2))]),
            Decision::Undecided {
                best_votes: 2,
                needed: 3
            }
        );
        assert_eq!(
            decide(3, &[(m(1), d(1))]),
            Decision::Undecided {
                best_votes: 1,
                needed: 2
            }
        );
        assert_eq!(
            decide(1, &[]),
            Decision::Undecided {
                best_votes: 0,
                needed: 1
            }
        );
    }

    #[test]
    fn a_miner_reporting_twice_counts_once() {
        let got = decide(3, &[(m(1), d(1)), (m(1), d(1)), (m(1), d(1))]);
        assert_eq!(
            got,
            Decision::Undecided {
                best_votes: 1,
                needed: 2
            }
        );
    }
}
