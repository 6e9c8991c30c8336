//! Per-request variation, the way a hosted model varies: time to first token, token rate and reply length
//! drawn around the configured values, and a share of requests rate-limited, failing or stalling, so that
//! load tests carry the pipeline's failover and timeout paths too, not only its happy path.
//!
//! Times, rates and lengths are log-normal with the configured value as the median (a hosted model's TTFT
//! has a long right tail: most requests near the median, a few several times slower). Draws come from a
//! small generator seeded by the server's seed and the request's number, so a run is repeatable while
//! requests differ. A `[[mock:...]]` directive in the request wins over the draw.

use std::time::Duration;

use super::script::Fault;
use super::text::SplitMix64;

/// How much requests vary; all zero (the default) keeps every request at the configured values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variation {
    /// Log-normal sigma of the time to first token and the token rate, in thousandths (500 = 0.5: the
    /// slowest percent of requests ~3x the median).
    pub timing_sigma_milli: u32,
    /// Log-normal sigma of the reply length, in thousandths.
    pub length_sigma_milli: u32,
    /// Requests answered 429, per million.
    pub rate_limited_ppm: u32,
    /// Requests answered 503, per million.
    pub unavailable_ppm: u32,
    /// Streams that stall after two chunks, per million.
    pub stalled_ppm: u32,
}

/// What one request gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub ttft: Duration,
    pub tokens_per_sec: u32,
    pub reply_tokens: usize,
    pub fault: Option<Fault>,
}

impl Variation {
    pub fn is_off(&self) -> bool {
        *self == Variation::default()
    }

    /// The draw for request number `n` of a server seeded with `seed`, around the given medians.
    pub fn draw(&self, seed: u64, n: u64, ttft: Duration, tokens_per_sec: u32, reply_tokens: usize) -> Drawn {
        if self.is_off() {
            return Drawn { ttft, tokens_per_sec, reply_tokens, fault: None };
        }
        let mut rng = SplitMix64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let timing = self.timing_sigma_milli as f64 / 1000.0;
        let length = self.length_sigma_milli as f64 / 1000.0;
        let ttft = Duration::from_secs_f64(ttft.as_secs_f64() * (timing * normal(&mut rng)).exp());
        let tokens_per_sec = match tokens_per_sec {
            0 => 0,
            tps => ((tps as f64) * (timing * normal(&mut rng)).exp()).round().max(1.0) as u32,
        };
        let reply_tokens = ((reply_tokens as f64) * (length * normal(&mut rng)).exp()).round().max(1.0) as usize;
        let roll = (rng.next() % 1_000_000) as u32;
        let fault = if roll < self.rate_limited_ppm {
            Some(Fault::Status(429))
        } else if roll < self.rate_limited_ppm + self.unavailable_ppm {
            Some(Fault::Status(503))
        } else if roll < self.rate_limited_ppm + self.unavailable_ppm + self.stalled_ppm {
            Some(Fault::Stall)
        } else {
            None
        };
        Drawn { ttft, tokens_per_sec, reply_tokens, fault }
    }
}

/// Uniform in (0, 1].
fn unit(rng: &mut SplitMix64) -> f64 {
    ((rng.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// Standard normal (Box-Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let (u, v) = (unit(rng), unit(rng));
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() - 1) as f64 * p) as usize]
    }

    #[test]
    fn medians_stay_at_the_configured_values_with_a_right_tail() {
        let v = Variation { timing_sigma_milli: 500, length_sigma_milli: 400, ..Variation::default() };
        let draws: Vec<Drawn> = (0..20_000).map(|n| v.draw(7, n, Duration::from_millis(400), 60, 80)).collect();
        let ttft: Vec<f64> = draws.iter().map(|d| d.ttft.as_secs_f64() * 1000.0).collect();
        let p50 = percentile(ttft.clone(), 0.5);
        let p99 = percentile(ttft, 0.99);
        assert!((380.0..420.0).contains(&p50), "median TTFT {p50}");
        // exp(0.5 * 2.326) = 3.2: the slowest percent about three times the median.
        assert!((1100.0..1450.0).contains(&p99), "p99 TTFT {p99}");
        let tps = percentile(draws.iter().map(|d| d.tokens_per_sec as f64).collect(), 0.5);
        assert!((57.0..63.0).contains(&tps), "median tokens/s {tps}");
        let len = percentile(draws.iter().map(|d| d.reply_tokens as f64).collect(), 0.5);
        assert!((76.0..84.0).contains(&len), "median length {len}");
        assert!(draws.iter().all(|d| d.fault.is_none()));
        assert_eq!(v.draw(7, 3, Duration::from_millis(400), 60, 80), draws[3], "repeatable");
    }

    #[test]
    fn faults_come_at_their_configured_shares() {
        let v =
            Variation { rate_limited_ppm: 20_000, unavailable_ppm: 10_000, stalled_ppm: 5_000, ..Variation::default() };
        let draws: Vec<Drawn> = (0..100_000).map(|n| v.draw(1, n, Duration::ZERO, 0, 10)).collect();
        let share = |f: Fault| draws.iter().filter(|d| d.fault == Some(f)).count() as f64 / draws.len() as f64;
        assert!((0.018..0.022).contains(&share(Fault::Status(429))), "{}", share(Fault::Status(429)));
        assert!((0.008..0.012).contains(&share(Fault::Status(503))), "{}", share(Fault::Status(503)));
        assert!((0.004..0.006).contains(&share(Fault::Stall)), "{}", share(Fault::Stall));
        assert!(draws.iter().all(|d| d.ttft == Duration::ZERO && d.tokens_per_sec == 0), "instant stays instant");
        assert!(Variation::default().is_off());
    }
}
