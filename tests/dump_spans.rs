//! Each coroutine runs inside a `tracing` span `coroutine` carrying its id and spawn site, when a
//! subscriber wants it. A minimal subscriber records the spans and, for each event, the span
//! current on the emitting thread.

use std::cell::RefCell;
use std::fmt::Debug;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    /// (span id, rendered fields) of every `coroutine` span.
    spans: Mutex<Vec<(u64, String)>>,
    /// (message, current span id) of every event.
    events: Mutex<Vec<(String, Option<u64>)>>,
}

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, SeqCst) + 1;
        if attrs.metadata().name() == "coroutine" {
            let mut fields = Fields(String::new());
            attrs.record(&mut fields);
            self.spans.lock().unwrap().push((id, fields.0));
        }
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let current = STACK.with(|s| s.borrow().last().copied());
        self.events.lock().unwrap().push((fields.0, current));
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| s.borrow_mut().pop());
    }
}

#[test]
fn each_coroutine_logs_inside_its_span() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    tracing::subscriber::set_global_default(Proxy(recorder)).unwrap();
    let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
    let ids: Vec<u64> = rt.block_on(|| {
        let handles: Vec<_> = (0..3)
            .map(|i| {
                pagurus::spawn(move || {
                    tracing::info!("before {i}");
                    pagurus::yield_now();
                    tracing::info!("after {i}");
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let id = h.id();
                h.join().unwrap();
                id
            })
            .collect()
    });
    let spans = recorder.spans.lock().unwrap();
    let events = recorder.events.lock().unwrap();
    for (i, id) in ids.iter().enumerate() {
        let (span, fields) = spans
            .iter()
            .find(|(_, f)| f.contains(&format!("id={id} ")))
            .unwrap_or_else(|| panic!("no span for coroutine {id}: {spans:?}"));
        assert!(fields.contains("dump_spans.rs"), "{fields}");
        for what in ["before", "after"] {
            let message = format!("{what} {i}");
            let (_, current) = events
                .iter()
                .find(|(m, _)| m.contains(&message))
                .unwrap_or_else(|| panic!("no event {message:?}: {events:?}"));
            assert_eq!(
                *current,
                Some(*span),
                "{message} outside its coroutine's span"
            );
        }
    }
}

/// `set_global_default` takes the subscriber by value; this forwards to the leaked recorder.
struct Proxy(&'static Recorder);

impl Subscriber for Proxy {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        self.0.new_span(a)
    }
    fn record(&self, s: &Id, r: &Record<'_>) {
        self.0.record(s, r)
    }
    fn record_follows_from(&self, s: &Id, f: &Id) {
        self.0.record_follows_from(s, f)
    }
    fn event(&self, e: &Event<'_>) {
        self.0.event(e)
    }
    fn enter(&self, s: &Id) {
        self.0.enter(s)
    }
    fn exit(&self, s: &Id) {
        self.0.exit(s)
    }
}
