//! Affinity marks: any text unmarks to an error or an original that marks back to the same text;
//! any follow-up body is read without panic; any response passes the marker split anywhere.
#![no_main]

use tollgate::core::affinity::mark::{
    mark_content, mark_id, unmark_content, unmark_id, AffinityTag, MarkWith, Reading, Seal,
};
use tollgate::core::affinity::request::read_marks;
use tollgate::core::affinity::stream::ResponseMarker;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let seal = Seal::new(b"fuzzing secret, 32 bytes long...", "team:fuzz");
    let with = MarkWith { tag: AffinityTag::new("fuzz", "cred:FUZZ"), seal };
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(Reading::Sealed(original, found)) = unmark_id(text, &seal) {
            let again = MarkWith { tag: found, seal };
            assert_eq!(mark_id(&original, &again), text, "an id mark does not round-trip");
        }
        if let Ok(Reading::Sealed(original, found)) = unmark_content(text, &seal) {
            let again = MarkWith { tag: found, seal };
            assert_eq!(mark_content(&original, &again), text, "a content mark does not round-trip");
        }
        let marked = mark_id(text, &with);
        if marked != text {
            assert_eq!(unmark_id(&marked, &seal), Ok(Reading::Sealed(text.to_string(), with.tag)));
        }
    }
    let _ = read_marks(data, Some(&seal));
    let _ = read_marks(data, None);
    let split = data.len() / 2;
    let mut whole = ResponseMarker::new(with);
    let expected = whole.rewrite(data, true);
    let mut marker = ResponseMarker::new(with);
    let mut out = marker.rewrite(&data[..split], false);
    out.extend(marker.rewrite(&data[split..], true));
    assert_eq!(out, expected, "marking depends on where the body is split");
});
