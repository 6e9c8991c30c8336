//! The fuzz harness every crate's property targets share, on the stable toolchain (`cargo fuzz` needs
//! nightly, which CI does not have).
//!
//! A target is a function that must not panic, hang or misbehave on any input, run by [`run`] over a fixed
//! number of generated inputs: arbitrary ones, and ones made by mutating the seeds of the target's corpus
//! in the repository (`tests/corpus/<target>/`), which reach far deeper into a parser than random bytes do.
//! The run is deterministic (a fixed seed) so the test suite is repeatable; `TURNPIKE_FUZZ_SEED=<n>`
//! explores elsewhere and `TURNPIKE_FUZZ_SCALE=<k>` runs k times the cases, for a longer session by hand.
//! Each run prints its executions, so the notes can give them per target. A failure is shrunk to a minimal
//! input and printed; it then becomes a regression test beside the target.

pub use proptest;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Runs `target` over `cases` inputs of `strategy` (times `TURNPIKE_FUZZ_SCALE`) and returns the number of
/// executions. Panics with the shrunk input when the target fails or panics on one.
pub fn run<S>(name: &str, cases: u32, strategy: S, target: impl Fn(S::Value) -> Result<(), TestCaseError>) -> u64
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let scale: u32 = std::env::var("TURNPIKE_FUZZ_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let seed: u64 = std::env::var("TURNPIKE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases: cases.saturating_mul(scale.max(1)),
        // The regression inputs live as named tests beside each target, not in files proptest writes.
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    let executions = AtomicU64::new(0);
    let started = Instant::now();
    let result = runner.run(&strategy, |input| {
        executions.fetch_add(1, Ordering::Relaxed);
        target(input)
    });
    let n = executions.load(Ordering::Relaxed);
    println!("fuzz target {name}: {n} executions in {} ms (seed {seed})", started.elapsed().as_millis());
    match result {
        Ok(()) => n,
        Err(TestError::Fail(why, input)) => panic!("fuzz target {name} failed: {why}\nminimal input: {input:?}"),
        Err(TestError::Abort(why)) => panic!("fuzz target {name} aborted: {why}"),
    }
}

/// The seed files of a corpus directory, sorted by name. A missing directory is an error: a target whose
/// corpus vanished would quietly fuzz from nothing.
pub fn corpus(dir: impl AsRef<Path>) -> Vec<Vec<u8>> {
    let dir = dir.as_ref();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} has no seeds", dir.display());
    files.iter().map(|p| std::fs::read(p).expect("corpus file")).collect()
}

/// One byte-level edit of a seed.
#[derive(Clone, Debug)]
pub enum Edit {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    Remove {
        at: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
    /// Repeats a span: nested structures and long runs.
    Repeat {
        at: usize,
        len: usize,
        times: usize,
    },
}

/// Bytes that break parsers: Avro/zigzag varints at their extremes, UTF-8 lead bytes without their
/// continuation, NUL, CR/LF, quotes, braces.
const INTERESTING: &[u8] =
    &[0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0xc0, 0xe2, 0xf0, b'\n', b'\r', b'"', b'{', b'}', b':'];

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![proptest::sample::select(INTERESTING), any::<u8>()];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        (any::<usize>(), proptest::collection::vec(byte, 1..8)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Edit::Remove { at, len }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        (any::<usize>(), 1usize..16, 2usize..64).prop_map(|(at, len, times)| Edit::Repeat { at, len, times }),
    ]
}

/// Applies `edits` to `seed` in order; positions wrap around the current length.
pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let n = b.len();
        let pos = |at: usize| if n == 0 { 0 } else { at % n };
        match e {
            Edit::Flip { at, bit } if n > 0 => b[pos(*at)] ^= 1 << bit,
            Edit::Set { at, byte } if n > 0 => b[pos(*at)] = *byte,
            Edit::Insert { at, bytes } => {
                let p = if n == 0 { 0 } else { at % (n + 1) };
                b.splice(p..p, bytes.iter().copied());
            }
            Edit::Remove { at, len } if n > 0 => {
                let p = pos(*at);
                b.drain(p..(p + len).min(n));
            }
            Edit::Truncate { at } => b.truncate(if n == 0 { 0 } else { at % (n + 1) }),
            Edit::Repeat { at, len, times } if n > 0 => {
                let p = pos(*at);
                let span = b[p..(p + len).min(n)].to_vec();
                let copies: Vec<u8> = std::iter::repeat_n(span, *times).flatten().collect();
                b.splice(p..p, copies);
            }
            _ => {}
        }
    }
    b
}

/// Inputs for a byte-level target: a third arbitrary bytes, the rest seeds with 1-8 edits.
pub fn bytes_from(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "a byte target needs seeds");
    let mutated = (proptest::sample::select(seeds), proptest::collection::vec(edit(), 1..8))
        .prop_map(|(seed, edits)| apply(&seed, &edits));
    prop_oneof![1 => proptest::collection::vec(any::<u8>(), 0..256), 2 => mutated]
}

/// [`bytes_from`] as text (lossily: invalid UTF-8 becomes U+FFFD), for parsers of `&str`.
pub fn text_from(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = String> {
    bytes_from(seeds).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_within_bounds_and_change_the_seed() {
        let seed = b"hello".to_vec();
        assert_eq!(apply(&seed, &[Edit::Set { at: 7, byte: b'J' }]), b"heJlo");
        assert_eq!(apply(&seed, &[Edit::Truncate { at: 3 }]), b"hel");
        assert_eq!(apply(&seed, &[Edit::Remove { at: 4, len: 9 }]), b"hell");
        assert_eq!(apply(&seed, &[Edit::Repeat { at: 0, len: 2, times: 2 }]), b"hehehello");
        assert_eq!(apply(&[], &[Edit::Flip { at: 3, bit: 1 }, Edit::Insert { at: 5, bytes: vec![1] }]), [1]);
    }

    #[test]
    fn a_failing_target_is_reported_with_its_input() {
        let r = std::panic::catch_unwind(|| {
            run("always_fails_on_long", 200, proptest::collection::vec(any::<u8>(), 0..64), |v| {
                prop_assert!(v.len() < 10);
                Ok(())
            })
        });
        let msg = *r.expect_err("must fail").downcast::<String>().expect("message");
        assert!(msg.contains("always_fails_on_long failed"), "{msg}");
        // Shrunk to the shortest failing input.
        assert!(msg.contains("minimal input: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]"), "{msg}");
    }
}
