//! The spend path's hostile inputs: any bytes as a batch the accounting server reads (each valid
//! event must read back the same from the JSON it stores), any bytes as the server's answer to a
//! batch, and any sequence of outbox operations and answers: no event is ever lost or counted
//! twice, and the byte and count bounds hold.
#![no_main]

use tollgate::core::spend::accounting_api::{read_batch, BatchReply, RejectedEvent};
use tollgate::core::spend::outbox::{Outbox, Outgoing};

fn outbox_ops(data: &[u8]) {
    let mut outbox = Outbox::new(4, 12, 2_000);
    let mut pushed = 0u32;
    let mut gone: Vec<String> = Vec::new();
    let mut now = 0u64;
    let mut last_seq = None;
    for (i, op) in data.iter().enumerate() {
        now += 50;
        match op % 6 {
            0 | 1 => {
                pushed += 1;
                let size = usize::from(data.get(i + 1).copied().unwrap_or(0)) * 4;
                let event = Outgoing {
                    id: format!("e{pushed}"),
                    json: "x".repeat(size),
                    cost_nano: 1,
                    ledger_keys: vec![],
                    limit_counts: vec![],
                };
                gone.extend(outbox.push(event).into_iter().map(|e| e.id));
            }
            2 => {
                if outbox.due(now, true) {
                    last_seq = Some(outbox.take_batch(now).seq);
                }
            }
            3 => {
                // Acknowledge every other in-flight id, reject one, forge one unknown id.
                if let Some(seq) = outbox.in_flight_seq() {
                    let body: Vec<String> =
                        outbox.in_flight_events().iter().map(|e| e.id.clone()).collect();
                    let reply = BatchReply {
                        batch_id: "b".into(),
                        acknowledged: body.iter().step_by(2).cloned().chain(["forged".into()]).collect(),
                        rejected: body
                            .get(1)
                            .map(|id| RejectedEvent { id: Some(id.clone()), reason: "r".into() })
                            .into_iter()
                            .collect(),
                        ..BatchReply::default()
                    };
                    let seq = if op & 0x40 != 0 { seq + 1 } else { seq };
                    if let Some(settled) = outbox.settle(seq, &reply, now) {
                        gone.extend(settled.acknowledged.into_iter().map(|e| e.id));
                        gone.extend(settled.rejected.into_iter().map(|(e, _)| e.id));
                        gone.extend(settled.dropped.into_iter().map(|e| e.id));
                    }
                }
            }
            4 => {
                if let Some(seq) = outbox.in_flight_seq() {
                    if let Some(quarantined) = outbox.refused(seq) {
                        gone.extend(quarantined.into_iter().map(|e| e.id));
                    }
                }
            }
            _ => {
                let seq = outbox.in_flight_seq().or(last_seq).unwrap_or(0);
                if let Some(dropped) = outbox.failed(seq, now) {
                    gone.extend(dropped.into_iter().map(|e| e.id));
                }
            }
        }
        assert!(outbox.len() <= 12);
        assert!(outbox.bytes() <= 2_000 || outbox.len() <= outbox.in_flight());
    }
    gone.extend(outbox.take_all().into_iter().map(|e| e.id));
    let mut seen = gone.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), gone.len(), "an event left the outbox twice");
    assert_eq!(gone.len(), pushed as usize, "an event was lost");
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(items) = read_batch(data) {
        for (event, json) in items.into_iter().flatten() {
            // Both kinds (spend and threshold events) read back as themselves.
            let again = read_batch(format!("[{json}]").as_bytes()).map(|mut v| v.pop());
            match again {
                Ok(Some(Ok((back, _)))) => assert_eq!(back, event),
                other => panic!("a stored event does not read back: {other:?}"),
            }
        }
    }
    if let Ok(reply) = BatchReply::for_batch(data, "b-1") {
        assert_eq!(reply.batch_id, "b-1");
    }
    outbox_ops(data);
});
