//! The core's share of one request, natively: `cargo run --release --example core_per_request --
//! POLICY.json BODY.json RESPONSE [ITERATIONS]`, run by `./scripts/bench` on the bench's own policy,
//! body and upstream answer. Each step is timed separately over many requests; budget ledgers go
//! through an encode/decode store, as the filter's shared-data ledgers do.

use std::cell::RefCell;
use std::time::Instant;

use hashbrown::HashMap;
use tollgate::core::admission::decide::{decide_body, decide_head, HeadOutcome, Surroundings};
use tollgate::core::metering::response_meter::{EarlyEnd, ResponseMeter};
use tollgate::core::metering::stream_usage::UsageChunkStripper;
use tollgate::core::money::budget::Ledger;
use tollgate::core::money::reservation::{LedgerStore, StoreUnavailable};
use tollgate::core::money::settlement::Settlement;
use tollgate::core::spend::event::SpendEvent;
use tollgate::core::{compile, RequestHead};

/// Counts allocations, to report how many each request makes.
struct CountingAllocator;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

// SAFETY: forwards to `System` unchanged, counting calls.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract, passed through.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Ledgers kept as bytes, decoded and encoded on every update, like proxy-wasm shared data.
#[derive(Default)]
struct EncodedLedgers(RefCell<HashMap<String, Vec<u8>>>);

impl LedgerStore for EncodedLedgers {
    fn update(
        &self,
        key: &str,
        change: &mut dyn FnMut(&mut Ledger) -> bool,
    ) -> Result<bool, StoreUnavailable> {
        let mut map = self.0.borrow_mut();
        let mut ledger = Ledger::decode(map.get(key).map_or(&[][..], Vec::as_slice));
        if !change(&mut ledger) {
            return Ok(false);
        }
        map.insert(key.to_string(), ledger.encode());
        Ok(true)
    }
}

const STEPS: [&str; 7] = [
    "head (auth)",
    "body (decide)",
    "response meter",
    "usage stripper",
    "settle",
    "event json",
    "total",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, policy_path, body_path, response_path, rest @ ..] = args.as_slice() else {
        return Err("usage: core_per_request POLICY.json BODY.json RESPONSE [ITERATIONS]".into());
    };
    let iterations: u32 = rest.first().map_or(Ok(20_000), |n| n.parse())?;
    let document = std::fs::read(policy_path)?;
    let started = Instant::now();
    let policy = compile(&document).map_err(|e| e.to_string())?;
    let compile_ms = started.elapsed().as_secs_f64() * 1e3;
    let body = std::fs::read(body_path)?;
    let response = std::fs::read(response_path)?;
    let key = std::env::var("BENCH_KEY").unwrap_or_else(|_| "sk-bench-9999".into());
    let authorization = format!("Bearer {key}");
    let credentials: HashMap<String, String> = policy
        .deployments
        .iter()
        .filter_map(|d| d.credential_env.clone())
        .map(|name| (name, "secret".to_string()))
        .collect();
    let ledgers = EncodedLedgers::default();
    let now = 1_800_000_000;
    let mut spent = [0f64; 7];
    let mut allocations = [0u64; 7];
    for i in 0..iterations {
        let a0 = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        let t0 = Instant::now();
        let head = RequestHead {
            method: "POST",
            path: "/v1/chat/completions",
            authorization: Some(&authorization),
            content_length: Some(body.len() as u64),
            content_encoding: None,
            ..RequestHead::default()
        };
        let HeadOutcome::ReadBody(ticket) = decide_head(Some(&policy), &head, now) else {
            return Err("the bench key is refused".into());
        };
        let t1 = Instant::now();
        let a1 = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        let around = Surroundings {
            credentials: &credentials,
            ledgers: &ledgers,
            random: u64::from(i),
            now,
        };
        let verdict = decide_body(&policy, &ticket, &body, &around).ok_or("no verdict")?;
        let admission = verdict.outcome.map_err(|d| d.body())?;
        let requested = verdict.trace.requested.unwrap_or_default();
        let settlement = Settlement::new(&policy, ticket.key_id, requested, admission)
            .ok_or("nothing to settle")?;
        let t2 = Instant::now();
        let a2 = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        let content_type = if response.starts_with(b"data:") {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut meter = ResponseMeter::new(settlement.plan.endpoint, 200, Some(content_type));
        meter.feed(&response, true);
        let metered = meter.finish(settlement.plan.prompt_estimate, EarlyEnd::Upstream);
        let t2b = Instant::now();
        let a2b = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        if settlement.plan.strip_usage && meter.is_stream() {
            std::hint::black_box(UsageChunkStripper::new().rewrite(&response, true));
        }
        let t3 = Instant::now();
        let a3 = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        let finished = settlement.finish(&policy, &metered, &ledgers, now);
        let t4 = Instant::now();
        let a4 = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        let event = SpendEvent::new(format!("bench-{i}"), "bench", 0, finished.data).to_json();
        std::hint::black_box(event);
        let t5 = Instant::now();
        let a5 = ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed);
        for (slot, (a, b)) in allocations.iter_mut().zip([
            (a0, a1),
            (a1, a2),
            (a2, a2b),
            (a2b, a3),
            (a3, a4),
            (a4, a5),
            (a0, a5),
        ]) {
            *slot += b - a;
        }
        for (slot, (a, b)) in spent.iter_mut().zip([
            (t0, t1),
            (t1, t2),
            (t2, t2b),
            (t2b, t3),
            (t3, t4),
            (t4, t5),
            (t0, t5),
        ]) {
            *slot += (b - a).as_secs_f64();
        }
    }
    println!("core natively ({iterations} requests, policy compiled in {compile_ms:.1} ms):");
    for ((name, total), count) in STEPS.iter().zip(spent).zip(allocations) {
        println!(
            "  {name:<15} {:>6.2} us/request {:>6.1} allocations/request",
            total * 1e6 / f64::from(iterations),
            count as f64 / f64::from(iterations)
        );
    }
    Ok(())
}
