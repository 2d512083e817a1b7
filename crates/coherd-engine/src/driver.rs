//! The one way to feed the engine: inputs in time order, deadlines fired
//! between instants, events drained after each step.
//!
//! The server's ingest, `coherd replay`, the simulator and the engine's own
//! scenario tests all drive the engine through a [`Driver`], so the promise
//! that a stream posted over HTTP and the same stream replayed from a file
//! give the same divergences rests on one piece of code.

use coherd_model::{Intent, Observation, Time};

use crate::engine::{Engine, Event, ObserveError, Outcome};

/// Where a [`Driver`] sends the engine's events, with the engine that raised
/// them (an [`Event::Divergence`] points into [`Engine::divergences`]).
pub trait Sink {
    /// One event, in the order the engine raised it.
    fn event(&mut self, engine: &Engine, event: Event);
}

impl<F: FnMut(&Engine, Event)> Sink for F {
    fn event(&mut self, engine: &Engine, event: Event) {
        self(engine, event)
    }
}

/// A sink that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl Sink for Discard {
    fn event(&mut self, _: &Engine, _: Event) {}
}

/// Feeds an [`Engine`] in replay order.
///
/// When time moves past the previous input, the deadlines due at exactly that
/// input's time fire first (deadlines at an input's own time fire after the
/// input, so an input at a deadline that clears the condition wins); then the
/// new input is applied at its own time, which fires every earlier deadline
/// stamped with its own time. Reports of one instant are applied together in
/// a canonical order. After every step the engine's events go to the sink.
///
/// ```
/// use coherd_engine::{Driver, Kind};
/// use coherd_model::{Intent, Limits, Observation, Time};
///
/// let t0: Time = "2026-11-22T08:00:00Z".parse().unwrap();
/// let mut opened = Vec::new();
/// let mut driver = Driver::with_sink(Default::default(), |e: &coherd_engine::Engine, ev| {
///     if let coherd_engine::Event::Divergence { index, .. } = ev {
///         opened.push(e.divergences()[index].id.clone());
///     }
/// });
/// driver.intent_from_first_input(
///     Intent::from_yaml("services:\n  api:\n    facets:\n      version: {target: \"2\"}\n").unwrap(),
/// );
/// let obs = Observation::from_json(
///     r#"{"service":"api","member":"a","facets":{"version":"1"}}"#,
///     &Limits::default(),
/// ).unwrap();
/// driver.observe_batch(&[(t0, &obs)]);
/// assert_eq!(driver.engine().divergences()[0].kind, Kind::Drift);
/// drop(driver);
/// assert_eq!(opened, ["drift:api:a:version"]);
/// ```
pub struct Driver<S = Discard> {
    engine: Engine,
    sink: S,
    /// An intent given before any input: in force from the first input's time.
    pending: Option<Intent>,
}

impl Driver<Discard> {
    /// Drives `engine`, dropping its events.
    pub fn new(engine: Engine) -> Driver<Discard> {
        Driver::with_sink(engine, Discard)
    }
}

impl<S: Sink> Driver<S> {
    /// Drives `engine`, sending its events to `sink`.
    pub fn with_sink(engine: Engine, sink: S) -> Driver<S> {
        Driver {
            engine,
            sink,
            pending: None,
        }
    }

    /// The engine, for its getters.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for getters that refresh caches first
    /// ([`Engine::refresh_open_subjects`]); inputs go through the driver.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, to take what it gathered.
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The engine, once driving is over.
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// The engine and the sink, once driving is over.
    pub fn into_parts(self) -> (Engine, S) {
        (self.engine, self.sink)
    }

    /// Whether the engine has taken any input yet.
    pub fn started(&self) -> bool {
        self.engine.now() != Time::EPOCH
    }

    /// Sets an intent that takes effect at the time of the first input (as
    /// `coherd replay --intent` and a server given an intent before any
    /// report do). On an engine that has started, it takes effect now.
    pub fn intent_from_first_input(&mut self, intent: Intent) {
        if self.started() {
            let now = self.engine.now();
            self.set_intent(now, intent);
        } else {
            self.pending = Some(intent);
        }
    }

    /// Reports with their times, in any order: applied in time order, the
    /// reports of one instant together. One result per report, in the order given.
    pub fn observe_batch(
        &mut self,
        batch: &[(Time, &Observation)],
    ) -> Vec<Result<Outcome, ObserveError>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by_key(|&i| batch[i].0);
        let mut out: Vec<Result<Outcome, ObserveError>> = vec![Ok(Outcome::Applied); batch.len()];
        let mut instant: Vec<&Observation> = Vec::new();
        for group in order.chunk_by(|&a, &b| batch[a].0 == batch[b].0) {
            let at = batch[group[0]].0;
            if let [i] = *group {
                // One report at its instant (the common case): no grouping to do.
                self.advance(at);
                out[i] = self.engine.observe(at, batch[i].1);
                self.drain();
                continue;
            }
            instant.clear();
            instant.extend(group.iter().map(|&i| batch[i].1));
            for (&i, r) in group.iter().zip(self.observe_instant(at, &instant)) {
                out[i] = r;
            }
        }
        out
    }

    /// The reports of one instant, together (see [`Engine::observe_instant`]).
    pub fn observe_instant(
        &mut self,
        at: Time,
        batch: &[&Observation],
    ) -> Vec<Result<Outcome, ObserveError>> {
        self.advance(at);
        let out = self.engine.observe_instant(at, batch);
        self.drain();
        out
    }

    /// Replaces the intent at `at`.
    pub fn set_intent(&mut self, at: Time, intent: Intent) {
        self.advance(at);
        self.engine.set_intent(at, intent);
        self.drain();
    }

    /// Forgets a member at `at`; false when it is unknown.
    pub fn remove_member(&mut self, at: Time, service: &str, member: &str) -> bool {
        self.advance(at);
        let found = self.engine.remove_member(at, service, member);
        self.drain();
        found
    }

    /// Forgets a service and its members at `at`; false when it is unknown.
    pub fn remove_service(&mut self, at: Time, service: &str) -> bool {
        self.advance(at);
        let found = self.engine.remove_service(at, service);
        self.drain();
        found
    }

    /// Lets time pass to `at` with no input: every deadline up to it fires.
    pub fn tick(&mut self, at: Time) {
        self.advance(at);
        self.engine.handle_timeout(at);
        self.drain();
    }

    /// Before an input at `at`: the pending intent takes effect at the first
    /// input, and when time moves on, the previous instant's own deadlines fire.
    fn advance(&mut self, at: Time) {
        if let Some(intent) = self.pending.take() {
            self.engine.set_intent(at, intent);
        } else if at > self.engine.now() {
            let prev = self.engine.now();
            self.engine.handle_timeout(prev);
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            self.sink.event(&self.engine, event);
        }
    }
}
