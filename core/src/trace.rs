//! W3C trace context carried in envelopes, so one directive is one trace across ministry,
//! province, enterprise and the acknowledgments coming back. Installing the pipeline that
//! exports the spans is the node process's (`isms_node::telemetry`), not the core's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Set once spans leave this process: an OTLP endpoint is configured.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported. Without export a span only labels the log lines inside it,
/// so a span made per message for its trace alone can be left out.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Called by whoever installs an exporting pipeline, once it is installed.
pub fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// The trace context of `span`, to carry in an envelope.
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    carrier
}

/// Makes `span` a child of the context carried in an envelope. Call before entering it.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.is_empty() || span.is_disabled() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    // Fails only when the span is already entered or disabled; then it stays a root.
    let _ = span.set_parent(cx);
}
