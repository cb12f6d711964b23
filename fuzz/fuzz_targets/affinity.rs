//! Affinity marks: any text unmarks to an error or an original that marks back to the same text;
//! any follow-up body is read without panic; any response passes the marker split anywhere.
#![no_main]

use tollgate::policy::affinity_mark::{mark_content, mark_id, unmark_content, unmark_id, AffinityTag};
use tollgate::policy::affinity_request::read_marks;
use tollgate::policy::affinity_stream::ResponseMarker;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let tag = AffinityTag::new("fuzz", "cred:FUZZ");
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(Some((original, found))) = unmark_id(text) {
            assert_eq!(mark_id(&original, &found), text, "an id mark does not round-trip");
        }
        if let Ok(Some((original, found))) = unmark_content(text) {
            assert_eq!(mark_content(&original, &found), text, "a content mark does not round-trip");
        }
        let marked = mark_id(text, &tag);
        if marked != text {
            assert_eq!(unmark_id(&marked), Ok(Some((text.to_string(), tag))));
        }
    }
    let _ = read_marks(data);
    let split = data.len() / 2;
    let mut whole = ResponseMarker::new(tag);
    let expected = whole.rewrite(data, true);
    let mut marker = ResponseMarker::new(tag);
    let mut out = marker.rewrite(&data[..split], false);
    out.extend(marker.rewrite(&data[split..], true));
    assert_eq!(out, expected, "marking depends on where the body is split");
});
