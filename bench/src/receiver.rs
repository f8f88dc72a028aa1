//! The benchmark's receiver: the testkit's counting receiver (204 at once, every signature
//! checked, each event's arrival noted), keyed by the benchmark's secret.

pub use herald_testkit::receiver::Counter as Receiver;

/// The secret every benchmark webhook signs with.
pub const SECRET: &str = "bench-secret";

/// A receiver checking signatures by `SECRET`; holding every request when `hang`.
pub async fn start(hang: bool) -> Receiver {
    Receiver::start(SECRET, hang).await
}
