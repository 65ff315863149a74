//! One directive is one distributed trace: a real OTLP/gRPC receiver (built from
//! opentelemetry-proto) collects the spans of all three binaries, and one non-zero trace ID
//! spans ministry → province → enterprise → the statuses coming back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isms_e2e::isms_deploy::{Options, Topology};
use isms_e2e::{TestNet, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

/// What the receiver keeps of a span.
#[derive(Clone)]
struct ReceivedSpan {
    service: String,
    trace_id: Vec<u8>,
    name: String,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("lock");
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.clone())
                .map(|v| match v {
                    Value::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        trace_id: span.trace_id,
                        name: span.name,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_directive_is_one_trace_across_all_three_binaries() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let options = Options {
        otlp_endpoint: Some(format!("http://{addr}")),
        ..Options::default()
    };
    let net = TestNet::start_with(&Topology::uniform(&["44"], 1, 1), &options);
    let id = net.issue(&["--to", "all", "--block-domain", "traced.example"]);
    net.wait_all(&id, "executed", Duration::from_secs(30));

    let wanted: BTreeSet<&str> = ["ministry-node", "province-node", "enterprise-node"].into();
    let (trace, names) = eventually(
        Duration::from_secs(30),
        "one trace across all three binaries",
        || {
            let spans = collector.0.lock().expect("lock").clone();
            let mut by_trace: BTreeMap<Vec<u8>, (BTreeSet<String>, BTreeSet<String>)> =
                BTreeMap::new();
            for span in spans {
                let e = by_trace.entry(span.trace_id).or_default();
                e.0.insert(span.service);
                e.1.insert(span.name);
            }
            by_trace.into_iter().find_map(|(trace, (services, names))| {
                let covered = wanted.iter().all(|w| services.contains(*w));
                (covered
                    && names.contains("directive.execute")
                    && names.contains("directive.status"))
                .then_some((trace, names))
            })
        },
    );
    assert_eq!(trace.len(), 16);
    assert!(trace.iter().any(|b| *b != 0), "the trace ID is zero");
    for name in [
        "directive.issue",
        "directive.receive",
        "directive.execute",
        "directive.status",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}
