//! The simulation's random numbers: SplitMix64, seeded per run, so that a
//! seed replays exactly.

/// SplitMix64.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(super) fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).expect("an index")
    }

    /// True `num` times in `den`.
    pub(super) fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// One of `choices`, by weight.
    pub(super) fn weighted<T: Copy>(&mut self, choices: &[(u64, T)]) -> Option<T> {
        let total: u64 = choices.iter().map(|c| c.0).sum();
        if total == 0 {
            return None;
        }
        let mut roll = self.below(total);
        for &(weight, choice) in choices {
            if roll < weight {
                return Some(choice);
            }
            roll -= weight;
        }
        None
    }
}
