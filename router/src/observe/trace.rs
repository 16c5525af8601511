//! W3C trace context for function calls. With the `otlp` feature the request span joins
//! the client's trace (its `traceparent` becomes the span's parent) and the function receives
//! the span's own context, so router and function spans line up in one trace. Without it, or
//! when no exporter is installed, the function gets the client's trace id and a new span id.

/// Joins `span` to the client's trace and returns the `traceparent` for the function call.
pub fn link(span: &tracing::Span, incoming: Option<&str>) -> String {
    #[cfg(feature = "otlp")]
    if let Some(tp) = otel::link(span, incoming) {
        return tp;
    }
    #[cfg(not(feature = "otlp"))]
    let _ = span;
    crate::http::client::child_traceparent(incoming)
}

#[cfg(feature = "otlp")]
mod otel {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    pub(super) fn link(span: &tracing::Span, incoming: Option<&str>) -> Option<String> {
        let propagator = TraceContextPropagator::new();
        if let Some(tp) = incoming {
            let carrier = HashMap::from([("traceparent".to_string(), tp.to_string())]);
            let parent = propagator.extract(&carrier);
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
        }
        let cx = span.context();
        if !cx.span().span_context().is_valid() {
            // No OpenTelemetry layer is installed (no exporter configured).
            return None;
        }
        let mut out = HashMap::new();
        propagator.inject_context(&cx, &mut out);
        out.remove("traceparent")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_an_exporter_the_function_gets_the_clients_trace_id() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let tp = super::link(&tracing::Span::none(), Some(incoming));
        assert!(
            tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{tp}"
        );
        assert_ne!(tp, incoming);
    }

    /// With the `otlp` feature and an OpenTelemetry layer installed, the request span takes
    /// the client's trace as its parent and the function gets the span's own context.
    #[cfg(feature = "otlp")]
    #[test]
    fn with_an_opentelemetry_layer_the_request_span_joins_the_clients_trace() {
        use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        use tracing_subscriber::layer::SubscriberExt as _;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request");
            let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let tp = super::link(&span, Some(incoming));
            assert!(
                tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                "{tp}"
            );
            let own = span.context().span().span_context().span_id().to_string();
            assert_eq!(tp, format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{own}-01"));
            assert_ne!(own, "00f067aa0ba902b7");
        });
    }
}
