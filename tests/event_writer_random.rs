//! The one-pass spend-event writer against serde's `SpendEvent::to_json`, on many
//! random hostile strings (every ASCII control byte, quotes, backslashes, DEL, surrogate-range
//! neighbours, 2/3/4-byte UTF-8, U+2028/2029, BOM, long runs) and extreme numbers.

use tollgate::core::spend::event::{
    BudgetRef, EventMetadata, LimitRef, SpendData, SpendEvent, UsageData,
};
use tollgate::core::spend::event_writer::write_event;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn string(&mut self) -> String {
        const SPECIAL: &[char] = &[
            '"',
            '\\',
            '/',
            '\u{7f}',
            '\u{80}',
            '\u{ff}',
            '\u{2028}',
            '\u{2029}',
            '\u{feff}',
            '\u{d7ff}',
            '\u{e000}',
            '\u{fffd}',
            '\u{ffff}',
            '\u{10ffff}',
            '😀',
            'é',
            '日',
            '<',
            '>',
            '&',
            '\'',
            '%',
            'u',
        ];
        let len = match self.below(10) {
            0 => 0,
            1 => 1 + self.below(3000) as usize,
            _ => self.below(40) as usize,
        };
        let mut s = String::new();
        for _ in 0..len {
            let c = match self.below(4) {
                0 => char::from(self.below(0x20) as u8),
                1 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
                2 => char::from(0x20 + self.below(0x5f) as u8),
                _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('x'),
            };
            s.push(c);
        }
        s
    }
    fn opt(&mut self) -> Option<String> {
        (self.below(3) != 0).then(|| self.string())
    }
    fn number(&mut self) -> u64 {
        match self.below(4) {
            0 => 0,
            1 => u64::MAX - self.below(3),
            2 => self.below(1000),
            _ => self.next(),
        }
    }
    fn signed(&mut self) -> i64 {
        match self.below(4) {
            0 => i64::MIN + self.below(3) as i64,
            1 => i64::MAX - self.below(3) as i64,
            2 => -(self.below(1_000_000) as i64),
            _ => self.next() as i64,
        }
    }
}

#[test]
fn the_writer_equals_serde_on_random_hostile_events() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for round in 0..5_000 {
        let budgets = (0..rng.below(5))
            .map(|_| BudgetRef {
                budget: rng.string(),
                window_start: rng.signed(),
                window_end: (rng.below(2) == 0).then(|| rng.signed()),
                max_nano_usd: (rng.below(2) == 0).then(|| rng.number()),
            })
            .collect();
        let limits = (0..rng.below(4))
            .map(|_| LimitRef {
                limit: rng.string(),
                window_start: rng.signed(),
                window_end: rng.signed(),
                count: rng.number(),
            })
            .collect();
        let data = SpendData {
            policy_version: rng.string(),
            key_hash: rng.string(),
            key_alias: rng.opt(),
            team_id: rng.opt(),
            user_id: rng.opt(),
            end_user: rng.opt(),
            endpoint: rng.string().into(),
            requested_model: rng.string(),
            resolved_model: rng.string(),
            deployment: rng.string(),
            provider: rng.string(),
            upstream_model: rng.string(),
            stream: rng.below(2) == 0,
            usage: UsageData {
                prompt_tokens: rng.number(),
                completion_tokens: rng.number(),
                cached_tokens: rng.number(),
                cache_creation_tokens: rng.number(),
                reasoning_tokens: rng.number(),
                estimated: rng.below(2) == 0,
            },
            cost_nano_usd: rng.number(),
            cost_source: rng.string().into(),
            status: rng.string().into(),
            http_status: rng.below(65_536) as u16,
            budgets,
            limits,
            tags: (0..rng.below(4)).map(|_| rng.string()).collect(),
            metadata: EventMetadata {
                key: (0..rng.below(3))
                    .map(|_| (rng.string(), rng.string()))
                    .collect(),
                team: (0..rng.below(3))
                    .map(|_| (rng.string(), rng.string()))
                    .collect(),
            },
        };
        let id = rng.string();
        let source = rng.string();
        // ended_at comes from the wall clock in the filter; still, cover years 0..=9999 and beyond.
        let ms = match rng.below(3) {
            0 => rng.below(253_402_300_800_000) as i64,
            1 => 1_795_402_116_000 + rng.below(10_000_000_000) as i64,
            _ => rng.signed() / 1_000_000,
        };
        write_event(&mut out, &id, &source, ms, &data);
        let serde = SpendEvent::new(id.clone(), &source, ms, data).to_json();
        assert_eq!(out, serde, "round {round}");
    }
}
