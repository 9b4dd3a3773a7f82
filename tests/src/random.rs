//! Random choices in tests, replayable: each test draws from the run's seed, printed
//! with every value (shown when the test fails), and `TEST_SEED=<seed>` replays a run.

use std::cell::Cell;
use std::sync::OnceLock;

/// The run's seed: `TEST_SEED` when set, else one from the clock.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("TEST_SEED") {
        Ok(seed) => seed
            .parse()
            .unwrap_or_else(|_| panic!("TEST_SEED={seed} is not a number")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    })
}

thread_local! {
    /// How many numbers this thread (one test) has drawn.
    static DRAWS: Cell<u64> = const { Cell::new(0) };
}

/// A pseudo-random number in `0..bound`, different for each call: the next draw of this
/// test (its thread) from the run's seed, printed with the seed so a failure can be
/// replayed with `TEST_SEED`.
pub fn random_below(bound: u64) -> u64 {
    let draw = DRAWS.with(|draws| draws.replace(draws.get() + 1));
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // FNV-1a of the test's name, then splitmix64: the same seed, test and draw give the
    // same number in every run.
    let name = test.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut z = (seed() ^ name).wrapping_add((draw + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let value = (z ^ (z >> 31)) % bound.max(1);
    let seed = seed();
    eprintln!("random_below({bound}) = {value}: draw {draw} of {test}, TEST_SEED={seed}");
    value
}
