//! The Zipfian rank generator of Gray et al. ("Quickly generating billion-record
//! synthetic databases", SIGMOD 1994), as YCSB uses it.
//!
//! Owns: drawing a rank in [0, n) where rank 0 is the most popular, with
//! P(rank k) proportional to 1/(k+1)^theta. Does not own: which key a rank is
//! (`workload` scatters ranks over the key space so hot keys do not cluster).
//! Hand-written because it is thirty lines and needs only the O(n) zeta sum once.

use crate::rng::SplitMix64;

/// YCSB's default skew: the few hottest keys take a large share of requests.
pub const DEFAULT_THETA: f64 = 0.99;

pub struct Zipf {
    items: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    pub fn new(items: u64, theta: f64) -> Self {
        assert!(items >= 1, "a Zipfian distribution needs at least one item");
        assert!(theta > 0.0 && theta < 1.0, "this generator needs 0 < theta < 1");
        let zeta = |n: u64| (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(items);
        let zeta2 = zeta(2.min(items));
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Self {
            items,
            theta,
            alpha,
            zetan,
            eta,
        }
    }

    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let rank = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.items - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_ranks_dominate_and_all_ranks_are_in_range() {
        let zipf = Zipf::new(10_000, DEFAULT_THETA);
        let mut rng = SplitMix64::new(1);
        let mut counts = vec![0u64; 10_000];
        for _ in 0..200_000 {
            counts[zipf.sample(&mut rng) as usize] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[1000]);
        // With theta 0.99 and 10k items the top rank takes roughly 10% of draws.
        assert!(counts[0] > 10_000, "rank 0 drew {}", counts[0]);
    }
}
