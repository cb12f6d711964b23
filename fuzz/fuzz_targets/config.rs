//! Any bytes as a plugin configuration: refused with errors or compiled, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = tollgate::core::compile(data) {
        let _ = policy.summary();
    }
});
