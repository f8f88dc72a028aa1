//! Batches: the events of one write that a batching webhook gets in one delivery.

use crate::events::Event;
use crate::webhooks::Firing;

/// Events of one write that a batching webhook gets in one delivery: `head` (the first, whose
/// delivery it is) and `rest`, in change order, by their places in the write's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batched {
    pub firing: Firing,
    pub head: usize,
    pub rest: Vec<usize>,
}

impl Batched {
    /// The `rest` as the JSON list of their ids that a delivery's `batch` holds.
    pub fn rest_ids(&self, ids: &[i64]) -> String {
        let rest: Vec<i64> = self.rest.iter().map(|i| ids[*i]).collect();
        serde_json::to_string(&rest).unwrap_or_else(|_| "[]".into())
    }
}

/// Takes the batching firings out of each event's, gathered into batches: one per firing
/// (webhook and rule) and request, of `max` events at most (past it, another).
pub fn gather_batches(firings: &mut [(&Event, Vec<Firing>)], max: usize) -> Vec<Batched> {
    let max = max.max(1);
    let mut batches: Vec<(Batched, usize)> = Vec::new();
    let request_ids: Vec<String> = firings.iter().map(|(e, _)| e.request_id.clone()).collect();
    for (i, (_, fs)) in firings.iter_mut().enumerate() {
        fs.retain(|f| {
            if !f.batch {
                return true;
            }
            let open = batches
                .iter_mut()
                .rev()
                .find(|(b, len)| b.firing == *f && request_ids[b.head] == request_ids[i] && *len < max);
            match open {
                Some((b, len)) => {
                    b.rest.push(i);
                    *len += 1;
                }
                None => batches.push((
                    Batched {
                        firing: *f,
                        head: i,
                        rest: Vec::new(),
                    },
                    1,
                )),
            }
            false
        });
    }
    batches.into_iter().map(|(b, _)| b).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_gather_one_requests_events_per_firing_up_to_the_most() {
        let event = |request: &str| Event {
            id: 0,
            kind: crate::events::EventKind::Created,
            timestamp: String::new(),
            object_type: "dcim.site".into(),
            username: "u".into(),
            request_id: request.into(),
            data: serde_json::json!({}),
            snapshots: serde_json::json!({}),
            request: None,
            body: None,
            batch: None,
        };
        let firing = |webhook_id, batch| Firing {
            webhook_id,
            event_rule_id: None,
            batch,
        };
        let (a, b) = (event("a"), event("b"));
        let mut fired: Vec<(&Event, Vec<Firing>)> = vec![
            (&a, vec![firing(1, true), firing(2, false)]),
            (&a, vec![firing(1, true)]),
            (&b, vec![firing(1, true)]),
            (&a, vec![firing(1, true), firing(3, true)]),
        ];
        let got = gather_batches(&mut fired, 2);
        let shape: Vec<(i64, usize, Vec<usize>)> = got
            .iter()
            .map(|b| (b.firing.webhook_id, b.head, b.rest.clone()))
            .collect();
        // Webhook 1: events 0 and 1 (full at two), 2 alone (another request), 3 starts anew.
        assert_eq!(shape, [(1, 0, vec![1]), (1, 2, vec![]), (1, 3, vec![]), (3, 3, vec![])]);
        // Only the unbatched firing stays with its event.
        assert_eq!(fired.iter().map(|(_, f)| f.len()).collect::<Vec<_>>(), [1, 0, 0, 0]);
        assert_eq!(got[0].rest_ids(&[10, 11, 12, 13]), "[11]");
    }
}
